package georoute

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// steerRuntime runs the steering of one georoute instance: it follows the
// overrides and state files and serves the admin endpoint, publishing into
// the steering inputs the decision reads.
type steerRuntime struct {
	overrides *overrideSet
	drains    *drainControl
	// admin is nil without `admin`.
	admin *adminAPI
	// reload is how often the files are checked for changes.
	reload time.Duration

	stopPoll chan struct{}
	pollDone chan struct{}
	started  atomic.Bool
}

// buildSteering resolves the steering config against the pops and loads
// the files, so that a bad one stops start-up with its file and line.
// explain answers the admin endpoint's GET /explain.
func buildSteering(cfg steerConfig, pops []*pop, st *steering, blockFile string, reload time.Duration, explain func(explainRequest) (any, error)) (*steerRuntime, error) {
	if err := (&cfg).checkMinUp(blockFile, len(pops)); err != nil {
		return nil, err
	}
	byID := map[string]*pop{}
	for _, p := range pops {
		byID[p.id] = p
	}
	o, err := newOverrideSet(cfg.overrideLines, cfg.overridesPath, byID, &st.overrides)
	if err != nil {
		return nil, err
	}
	if err := o.load(); err != nil {
		return nil, fmt.Errorf("%s:%d - Error during parsing: %v", blockFile, cfg.overridesLine, err)
	}
	var store textStore = memoryStore{key: cfg.memoryKey}
	if cfg.statePath != "" {
		// A missing file is fine (nothing drained yet), a missing folder is
		// a typo: the first drain could never be written.
		if st, err := os.Stat(filepath.Dir(cfg.statePath)); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s:%d - Error during parsing: state %s: folder %s does not exist; expected a path in an existing folder", blockFile, cfg.stateLine, cfg.statePath, filepath.Dir(cfg.statePath))
		}
		store = fileStore{path: cfg.statePath}
	}
	d := newDrainControl(pops, store, &st.drains)
	if err := d.load(); err != nil {
		return nil, fmt.Errorf("%s:%d - Error during parsing: %v", blockFile, cfg.stateLine, err)
	}
	r := &steerRuntime{overrides: o, drains: d, reload: reload}
	if cfg.admin != nil {
		r.admin = &adminAPI{addr: cfg.admin.addr, token: cfg.admin.token, pops: pops, drains: d, minUp: cfg.minUp, explain: explain}
	}
	return r, nil
}

// start (nil-safe, for an instance built without open) binds the admin
// endpoint, or takes it over from the instance of an earlier Corefile load
// (load) that this one replaces, and starts following the files.
func (r *steerRuntime) start(load any) error {
	if r == nil {
		return nil
	}
	if r.admin != nil {
		r.admin.load = load
		if err := r.admin.start(); err != nil {
			return err
		}
	}
	r.drains.start()
	r.stopPoll, r.pollDone = make(chan struct{}), make(chan struct{})
	r.started.Store(true)
	go func() {
		defer close(r.pollDone)
		pollEvery(r.reload, r.stopPoll, func() {
			r.overrides.poll()
			r.drains.poll()
		})
	}()
	return nil
}

// stop undoes start and waits for the poller; calling it twice, or without
// start, is harmless.
func (r *steerRuntime) stop() {
	if r == nil {
		return
	}
	if r.started.CompareAndSwap(true, false) {
		close(r.stopPoll)
		<-r.pollDone
	}
	if r.admin != nil {
		r.admin.stop()
	}
	r.drains.stop()
}
