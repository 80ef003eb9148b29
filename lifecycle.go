package georoute

import (
	"context"
	"sync"
	"time"

	"github.com/coredns/caddy"
)

// start launches the health checker and the database watcher. It runs in
// OnStartup, once per (re)load of the Corefile; stop undoes it.
func (g *GeoRoute) start() error {
	// Steering first: binding the admin address is the one step that can
	// fail, and nothing else has started yet when it does.
	if err := g.steerRun.start(g.owner); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.stopWatch = cancel
	g.watchDone = make(chan struct{})
	g.db.publishBuildTimes()
	go func() {
		defer close(g.watchDone)
		g.db.watch(ctx, g.reload)
	}()
	g.health.start(func() { g.ready.Store(true) })
	g.scopes.start(g)
	running.add(g)
	return nil
}

// watchStopWait bounds how long stop waits for the database watcher. The
// watcher may be inside a read of a slow file system or the validation of
// a large file; once cancelled it swaps nothing in, so a reload or shutdown
// need not wait for it to notice.
const watchStopWait = time.Second

// stop ends every goroutine start launched and waits for them (the database
// watcher at most watchStopWait), so that a reload never leaves an old
// instance probing.
func (g *GeoRoute) stop() error {
	if g.stopWatch != nil {
		g.stopWatch()
		select {
		case <-g.watchDone:
		case <-time.After(watchStopWait):
			log.Warningf("db watcher still busy with a file after %s; not waiting for it", watchStopWait)
		}
	}
	g.health.stop()
	g.steerRun.stop()
	g.scopes.halt()
	running.remove(g)
	return nil
}

// running tracks the started instances and the Corefile load (caddy
// context) each belongs to. A reload that fails after georoute's start-up
// ran (another plugin's start-up fails, a port cannot be bound) discards the
// new instance without calling its shutdown callbacks; the old instance's
// restart-failed callback then stops what the discarded load started.
var running = &registry{owners: map[*GeoRoute]caddy.Context{}}

type registry struct {
	mu     sync.Mutex
	owners map[*GeoRoute]caddy.Context
}

func (r *registry) add(g *GeoRoute) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owners[g] = g.owner
}

func (r *registry) remove(g *GeoRoute) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.owners, g)
}

// stopOthers stops every instance that does not belong to the load owner.
func (r *registry) stopOthers(owner caddy.Context) {
	r.mu.Lock()
	var orphans []*GeoRoute
	for g, o := range r.owners {
		if o != owner {
			orphans = append(orphans, g)
		}
	}
	r.mu.Unlock()
	for _, g := range orphans {
		g.stop()
	}
}
