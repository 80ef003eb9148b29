package georoute

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// scopeViews holds the merged views of the database: for each answer state,
// the widest blocks in which every address gets the same answer (design §5).
// A view is keyed by exactly what an answer depends on besides the client,
// so a query only ever uses one built for its own state: a change of
// health, drains, overrides or database makes the old view unusable at
// once, and the database network's own prefix is the SCOPE (always correct,
// never optimal) until the builder has merged the new one. Queries never
// build, never wait: a missing view is asked for with a non-blocking send.
type scopeViews struct {
	views atomic.Pointer[map[scopeKey]*scopeEntry]
	// want carries the requests of queries to the builder; nil until start
	// (a query then asks nobody).
	want atomic.Pointer[chan scopeKey]
	// recent is, per family, the first view a query found in the table in
	// service: nearly every query of a block is in one answer state, and
	// comparing its key is cheaper than hashing it. It is set again only
	// when the table changes, so queries in other states never write it.
	recent [2]atomic.Pointer[scopeRecent]
	stop   context.CancelFunc
	done   chan struct{}
}

// scopeMaxPops bounds the pops a view key can name; a block with more pops
// keeps the database network's SCOPE.
const scopeMaxPops = 512

// scopeKey is the input of one view: the family, the pops choosing may use
// (eligible, after fail-open and drains), `answers` N, the database
// generation, the override table the query read and whether it failed open
// (overrides do not apply then). A comparable value, so a query finds its
// view without allocating.
type scopeKey struct {
	family   uint8
	failOpen bool
	n        int
	gen      uint64
	rules    *overrideTable
	eligible [scopeMaxPops / 64]uint64
}

// scopeRecent is a view found in the table views.
type scopeRecent struct {
	views *map[scopeKey]*scopeEntry
	key   scopeKey
	entry *scopeEntry
}

// scopeEntry is a built view; used is set by queries and cleared by each
// sweep, so that a view nobody asked for since the last sweep is dropped.
type scopeEntry struct {
	view *scopeView
	used atomic.Bool
}

const (
	// scopeSweepEvery is how often views nobody used are dropped: a view
	// lives one to two periods after its last query, so a pop that flaps
	// back within that time finds its old view still there.
	scopeSweepEvery = 30 * time.Second
	// scopeMaxViews bounds the views kept (one per answer state in use and
	// family), and scopeMaxBytes their tables: DB-IP's IPv4 view is 3 MiB
	// with 5 pops, its IPv6 one 48 MiB with 100.
	scopeMaxViews = 16
	scopeMaxBytes = 256 << 20
)

// widest returns the prefix length, in the family of d.lookup, of the
// widest block around d.lookup in which every address gets d's answer, or
// false when no merged view for exactly d's inputs is ready. It never
// blocks and allocates nothing.
func (s *scopeViews) widest(g *GeoRoute, d *decision) (bits int, ok bool) {
	if !d.loc.located || d.nearest == nil || len(g.pops) > scopeMaxPops {
		// Unlocated clients and anonymous sites keep the database SCOPE.
		return 0, false
	}
	m := s.views.Load()
	if m == nil && s.want.Load() == nil {
		return 0, false // no builder (tests, or too many pops)
	}
	k, ok := scopeKeyOf(g, d)
	if !ok {
		return 0, false
	}
	if m != nil {
		if e := s.find(m, k); e != nil {
			if !e.used.Load() {
				e.used.Store(true)
			}
			b, class, ok := e.view.lookup(d.lookup)
			// The class check guards the moment a database swap lands
			// between the query's lookup and this one.
			if !ok || e.view.classes[class][0] != d.nearest.rank {
				return 0, false
			}
			return b, true
		}
	}
	if want := s.want.Load(); want != nil {
		select {
		case *want <- k:
		default: // the builder is busy and has requests queued
		}
	}
	return 0, false
}

// find returns the view of k in m, nil if there is none.
func (s *scopeViews) find(m *map[scopeKey]*scopeEntry, k scopeKey) *scopeEntry {
	slot := &s.recent[0]
	if k.family == 6 {
		slot = &s.recent[1]
	}
	r := slot.Load()
	if r != nil && r.views == m && r.key == k {
		return r.entry
	}
	e := (*m)[k]
	if e != nil && (r == nil || r.views != m) {
		slot.Store(&scopeRecent{views: m, key: k, entry: e})
	}
	return e
}

// scopeKeyOf is the key of d's view; false when the answer holds an
// anonymous site.
func scopeKeyOf(g *GeoRoute, d *decision) (scopeKey, bool) {
	k := scopeKey{family: 6, failOpen: d.failOpen, n: g.answers, gen: g.db.gen.Load(), rules: d.overrides}
	if d.lookup.Is4() {
		k.family = 4
	}
	for i := range d.cands {
		p := d.cands[i].pop
		if p == nil {
			return scopeKey{}, false
		}
		if d.eligible[i] {
			k.eligible[p.rank/64] |= 1 << (p.rank % 64)
		}
	}
	return k, true
}

// spec turns a key back into the merge's input.
func (k scopeKey) spec(g *GeoRoute) scopeSpec {
	spec := scopeSpec{family: int(k.family), n: k.n}
	for _, p := range g.pops {
		if k.has(p.rank) {
			spec.sites = append(spec.sites, scopeSite{rank: p.rank, at: p.at})
		}
	}
	if k.rules != nil {
		for _, r := range k.rules.rules {
			// A rule serves its eligible pops in the listed order
			// (chooseOverride), duplicates and all; none while failing
			// open. Its edges bound the blocks either way.
			sr := scopeRule{prefix: r.prefix}
			for _, p := range r.pops {
				if k.has(p.rank) && !k.failOpen {
					sr.listed = append(sr.listed, p.rank)
				}
			}
			spec.rules = append(spec.rules, sr)
		}
	}
	return spec
}

func (k scopeKey) has(rank int) bool { return k.eligible[rank/64]&(1<<(rank%64)) != 0 }

// start launches the builder; stop ends it and waits.
func (s *scopeViews) start(g *GeoRoute) {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	want := make(chan scopeKey, 8)
	s.want.Store(&want)
	go func() {
		defer close(s.done)
		s.run(ctx, g, want)
	}()
}

func (s *scopeViews) halt() {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
}

// run builds the views queries ask for, one at a time, and sweeps.
func (s *scopeViews) run(ctx context.Context, g *GeoRoute, want <-chan scopeKey) {
	t := time.NewTicker(scopeSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweep()
		case k := <-want:
			s.build(ctx, g, k)
		}
	}
}

// build merges the view of k unless it is there already, belongs to a
// database generation no longer in service, or the table is full.
func (s *scopeViews) build(ctx context.Context, g *GeoRoute, k scopeKey) {
	if k.gen != g.db.gen.Load() {
		return
	}
	if old := s.views.Load(); old != nil && (*old)[k] != nil {
		return
	}
	s.dropOlder(k.gen)
	if m := s.views.Load(); m != nil && len(*m) >= scopeMaxViews {
		return
	}
	began := time.Now()
	spec := k.spec(g)
	v, err := scopeMerge(ctx, g.db, spec)
	if ctx.Err() != nil {
		return // stopping
	}
	if err != nil {
		log.Errorf("SCOPE view not built, keeping the database networks' SCOPE: %v", err)
		return
	}
	if k.gen != g.db.gen.Load() {
		return // a new database came in while merging
	}
	log.Infof("SCOPE view (IPv%d, %d eligible pops, answers %d) built in %s: %d blocks, %d KiB",
		k.family, len(spec.sites), k.n, time.Since(began).Round(time.Millisecond), v.blocks(), v.bytes()>>10)
	e := &scopeEntry{view: v}
	e.used.Store(true) // asked for: it survives the next sweep
	s.publish(func(m map[scopeKey]*scopeEntry) {
		total := v.bytes()
		for _, o := range m {
			total += o.view.bytes()
		}
		// Over budget, views nobody used since the last sweep go first;
		// if that is not enough the new view is not kept.
		for o, oe := range m {
			if total > scopeMaxBytes && !oe.used.Load() {
				total -= oe.view.bytes()
				delete(m, o)
			}
		}
		if total <= scopeMaxBytes {
			m[k] = e
		}
	})
	// A merge of DB-IP leaves about a hundred megabytes of garbage (its
	// stack and record table); hand it back now rather than let the heap
	// keep that headroom for good. Builds are rare: one per state change.
	debug.FreeOSMemory()
}

// dropOlder drops the views of database generations before gen, which
// can never be used again: at the first build after a swap, before the
// merge's own garbage peaks, not a sweep later (DB-IP's IPv6 view is tens
// of MiB).
func (s *scopeViews) dropOlder(gen uint64) {
	m := s.views.Load()
	if m == nil {
		return
	}
	for o := range *m {
		if o.gen != gen {
			s.publish(func(m map[scopeKey]*scopeEntry) {
				for o := range m {
					if o.gen != gen {
						delete(m, o)
					}
				}
			})
			return
		}
	}
}

// sweep drops the views nobody used since the last sweep.
func (s *scopeViews) sweep() {
	s.publish(func(m map[scopeKey]*scopeEntry) {
		for k, e := range m {
			if !e.used.Swap(false) {
				delete(m, k)
			}
		}
	})
}

// publish swaps in a copy of the views changed by edit: queries read the
// table without a lock, so it is never changed in place. Only the builder
// goroutine calls it.
func (s *scopeViews) publish(edit func(map[scopeKey]*scopeEntry)) {
	m := map[scopeKey]*scopeEntry{}
	if old := s.views.Load(); old != nil {
		for k, e := range *old {
			m[k] = e
		}
	}
	edit(m)
	s.views.Store(&m)
	// The views found in the old table may be gone from the new one: the
	// next query finds its own again, and no dropped view stays reachable.
	for i := range s.recent {
		s.recent[i].Store(nil)
	}
}
