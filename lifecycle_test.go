package georoute

import (
	"testing"
	"time"
)

// A watcher stuck in file I/O (a hung network file system) must not hold
// up a reload or shutdown.
func TestStopDoesNotWaitForABusyWatcher(t *testing.T) {
	g := &GeoRoute{health: newHealthChecker(defaultHealthConfig(), nil)}
	cancelled := make(chan struct{})
	g.stopWatch = func() { close(cancelled) }
	g.watchDone = make(chan struct{}) // never closed: the watcher is stuck
	begin := time.Now()
	g.stop()
	if d := time.Since(begin); d > watchStopWait+time.Second {
		t.Fatalf("stop took %s with the watcher stuck; want at most about %s", d, watchStopWait)
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("stop did not cancel the watcher")
	}
}
