package georoute

import (
	"runtime"
	"testing"
	"time"
)

// A view the sweep dropped is garbage: the table's budget (scopeMaxBytes)
// counts only the views in it, and DB-IP's IPv6 view alone is 48 MiB. The
// memo of the last view found (scopeViews.recent) must not keep it.
func TestSweptViewIsFreed(t *testing.T) {
	g, _, _ := scopeTestLondonMerged(t)
	freed := make(chan struct{})
	for _, e := range *g.scopes.views.Load() {
		runtime.SetFinalizer(e.view, func(*scopeView) { close(freed) })
	}
	g.scopes.sweep() // the query of scopeTestLondonMerged used it
	g.scopes.sweep()
	if n := len(*g.scopes.views.Load()); n != 0 {
		t.Fatalf("%d views after two sweeps without a query; expected none", n)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case <-freed:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("the swept view is still reachable 2 s later")
}
