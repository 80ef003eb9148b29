package georoute

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// drainControl keeps the drains of one georoute block: it reads them from
// the state file (or memory, without `state`), follows changes other
// servers or people make to it, writes the admin endpoint's changes, and
// publishes the set of drained pops that the decision reads.
type drainControl struct {
	pops   []*pop
	byID   map[string]*pop
	target *atomic.Pointer[drainSet]
	// gen orders instances by start, for the pop_drained series.
	gen uint64

	mu    sync.Mutex
	watch *textWatch
	// active holds the drains of this block's pops as last read, by rank;
	// over ones included (they end on time without a file change).
	active []*drainEntry
	// warned holds the unknown ids already logged.
	warned map[string]bool
	expiry *time.Timer
	// live is set between start and stop: only a started instance writes
	// the pop_drained series (one whose load is discarded never does).
	live    bool
	stopped bool
}

// errStateBroken wraps a state file that does not parse when the admin
// endpoint is about to change it: writing would lose what a person wrote.
var errStateBroken = errors.New("the state file does not parse")

// newDrainControl prepares the drains of pops. store is the state file, or
// the memory of the server block without `state`.
func newDrainControl(pops []*pop, store textStore, target *atomic.Pointer[drainSet]) *drainControl {
	d := &drainControl{pops: pops, byID: map[string]*pop{}, target: target, watch: &textWatch{store: store}, warned: map[string]bool{}}
	for _, p := range pops {
		d.byID[p.id] = p
	}
	d.active = make([]*drainEntry, len(pops))
	return d
}

// load reads the drains at start-up: a state file that cannot be read or
// does not parse is a config error then (there is nothing to keep); a
// missing one means nothing is drained yet.
func (d *drainControl) load() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.rereadLocked(); err != nil {
		stateReloadError.Inc()
		return fmt.Errorf("state: %v", err)
	}
	d.publishLocked(time.Now())
	return nil
}

// start makes the instance the writer of its pops' pop_drained series (the
// newest started instance wins during a reload).
func (d *drainControl) start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	drainSeries.enroll(d)
	d.live = true
	d.publishLocked(time.Now())
}

// poll follows the store: a change within `reload`; a file that cannot be
// read or does not parse keeps the drains in force.
func (d *drainControl) poll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if err := d.rereadLocked(); err != nil && d.watch.fail(err) {
		log.Errorf("state: %v; keeping the drains in force", err)
		stateReloadError.Inc()
	}
}

// stop ends the expiry timer and drops the instance's pop_drained series
// (those no newer instance publishes).
func (d *drainControl) stop() {
	d.mu.Lock()
	d.stopped, d.live = true, false
	if d.expiry != nil {
		d.expiry.Stop()
	}
	d.mu.Unlock()
	drainSeries.release(d)
}

func (d *drainControl) rereadLocked() error {
	data, _, changed, err := d.watch.changed()
	if err != nil || !changed {
		return err
	}
	s, err := parseState(d.watch.store.name(), data)
	if err != nil {
		return err
	}
	d.adoptLocked(s)
	d.watch.ok()
	stateReloadOK.Inc()
	return nil
}

// adoptLocked takes the drains of s into force.
func (d *drainControl) adoptLocked(s *stateFile) {
	active := make([]*drainEntry, len(d.pops))
	for _, e := range s.entries {
		p := d.byID[e.id]
		if p == nil {
			if !d.warned[e.id] {
				d.warned[e.id] = true
				log.Warningf("state: %s lists %q, which is not a pop of this block; ignored", d.watch.store.name(), e.id)
			}
			continue
		}
		active[p.rank] = &e
	}
	d.active = active
	d.publishLocked(time.Now())
}

// publishLocked swaps in the set of pops drained at now and arms a timer
// for the earliest end, so that an expiring drain ends on time even when
// nothing else changes.
func (d *drainControl) publishLocked(now time.Time) {
	var set *drainSet
	var next time.Time
	for rank, e := range d.active {
		on := e != nil && e.activeAt(now)
		if on {
			if set == nil {
				set = &drainSet{drained: make([]bool, len(d.pops))}
			}
			set.drained[rank] = true
			if !e.until.IsZero() && (next.IsZero() || e.until.Before(next)) {
				next = e.until
			}
		}
		if d.live {
			drainSeries.set(d, d.pops[rank].id, on)
		}
	}
	d.target.Store(set)
	if d.expiry != nil {
		d.expiry.Stop()
		d.expiry = nil
	}
	if !next.IsZero() && !d.stopped {
		d.expiry = time.AfterFunc(next.Sub(now), d.expire)
	}
}

func (d *drainControl) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		d.publishLocked(time.Now())
	}
}

// drained reports whether p is drained now, and how.
func (d *drainControl) drained(p *pop) (drainEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drainedLocked(p, time.Now())
}

func (d *drainControl) drainedLocked(p *pop, now time.Time) (drainEntry, bool) {
	e := d.active[p.rank]
	if e == nil || !e.activeAt(now) {
		return drainEntry{}, false
	}
	return *e, true
}

// change drains p (e non-nil) or restores it (e nil). It re-reads the
// store just before writing, so that a change another server or a person
// made since the last poll is kept; guard, when set, sees the drains as
// they are then and may refuse. The store is rewritten atomically.
func (d *drainControl) change(p *pop, e *drainEntry, guard func(isDrained func(*pop) bool) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, stamp, _, err := d.watch.store.load()
	if err != nil {
		return fmt.Errorf("cannot read the state file: %v", err)
	}
	s, err := parseState(d.watch.store.name(), data)
	if err != nil {
		return fmt.Errorf("%w (%v); fix it first", errStateBroken, err)
	}
	if stamp != d.watch.stamp {
		d.watch.stamp = stamp
		d.adoptLocked(s)
		d.watch.ok()
		stateReloadOK.Inc()
	}
	now := time.Now()
	if guard != nil {
		if err := guard(func(q *pop) bool { _, on := d.drainedLocked(q, now); return on }); err != nil {
			return err
		}
	}
	content := s.with(p.id, e, now)
	stamp, err = d.watch.store.save(content)
	if err != nil {
		return fmt.Errorf("cannot write the state file: %v", err)
	}
	written, err := parseState(d.watch.store.name(), content)
	if err != nil {
		return err // what with wrote is lines that parsed and one it formatted
	}
	d.watch.stamp = stamp
	d.adoptLocked(written)
	return nil
}
