package georoute

import (
	"context"
	"time"
)

// dbPollInterval is how often the database files are checked for changes;
// the design promises a change is noticed within 10 s.
const dbPollInterval = 5 * time.Second

// start launches the health checker and the database watcher. It runs in
// OnStartup, once per (re)load of the Corefile; stop undoes it.
func (g *GeoRoute) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	g.stopWatch = cancel
	g.watchDone = make(chan struct{})
	g.db.publishBuildTimes()
	go func() {
		defer close(g.watchDone)
		g.db.watch(ctx, dbPollInterval)
	}()
	g.health.start(func() { g.ready.Store(true) })
	return nil
}

// stop ends every goroutine start launched and waits for them, so that a
// reload never leaves an old instance probing.
func (g *GeoRoute) stop() error {
	if g.stopWatch != nil {
		g.stopWatch()
		<-g.watchDone
	}
	g.health.stop()
	return nil
}
