package georoute

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// A Corefile reload builds new pops and a new checker while the old one
// still runs: what the old one knows of a URL carries over, a new URL
// starts down until its first probe, an unchecked address is healthy.
func TestHealthCarriesStateAcrossReload(t *testing.T) {
	var downCode atomic.Int32
	downCode.Store(http.StatusServiceUnavailable)
	down := healthHTTPServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(downCode.Load())) })
	up := healthHTTPServer(t, healthStatus(http.StatusOK))
	release := make(chan struct{})
	slow := healthHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	cfg := healthTestConfig(2 * time.Second)
	cfg.interval, cfg.rise = time.Hour, 2 // only the first round runs

	old := []*pop{healthPop("lhr", down.URL, "198.51.100.50"), healthPop("fra", up.URL, "198.51.100.51")}
	oldHC := newHealthChecker(cfg, old)
	healthStart(t, oldHC)
	if old[0].addrs[0].healthy() || !old[1].addrs[0].healthy() {
		t.Fatal("first round: want lhr down, fra up")
	}
	lhrSince := old[0].addrs[0].since.Load()
	if lhrSince == 0 || old[0].addrs[0].lastCheck.Load() == nil {
		t.Fatal("since and lastCheck not written by the first probe")
	}

	// The reload: lhr's backend has recovered, but one success is less than
	// rise; ams is new and its probe is slow; ber has no check.
	downCode.Store(http.StatusOK)
	reloaded := []*pop{
		healthPop("lhr", down.URL, "198.51.100.50"),
		healthPop("fra", up.URL, "198.51.100.51"),
		healthPop("ams", slow.URL, "198.51.100.52"),
		healthPop("ber", "", "198.51.100.53"),
	}
	lhr, fra, ams, ber := reloaded[0].addrs[0], reloaded[1].addrs[0], reloaded[2].addrs[0], reloaded[3].addrs[0]
	newHC := newHealthChecker(cfg, reloaded)
	ready := make(chan struct{})
	newHC.start(func() { close(ready) })
	t.Cleanup(newHC.stop)

	t.Run("before its first round, the new checker keeps what the old one knew", func(t *testing.T) {
		if lhr.healthy() || !fra.healthy() {
			t.Errorf("lhr healthy %v, fra healthy %v; want down and up as before the reload", lhr.healthy(), fra.healthy())
		}
		if lhr.since.Load() != lhrSince || lhr.lastCheck.Load() == nil {
			t.Errorf("lhr since %d lastCheck %v; want them carried over", lhr.since.Load(), lhr.lastCheck.Load())
		}
	})
	t.Run("a new check target is down until its first probe says up", func(t *testing.T) {
		if ams.healthy() || ams.since.Load() != 0 || ams.lastCheck.Load() != nil {
			t.Errorf("ams healthy %v since %d before any probe; want down, never probed", ams.healthy(), ams.since.Load())
		}
	})
	t.Run("an address without a check is healthy", func(t *testing.T) {
		if !ber.healthy() {
			t.Error("ber is down")
		}
	})
	close(release)
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("the new checker's first round did not finish")
	}
	t.Run("a carried target's first result goes through rise", func(t *testing.T) {
		if lhr.healthy() {
			t.Error("lhr up after one success; rise is 2")
		}
		if c := lhr.lastCheck.Load(); c == nil || !c.ok || c.at.IsZero() || c.duration <= 0 {
			t.Errorf("lhr lastCheck %+v; want the new checker's successful probe", c)
		}
	})
	t.Run("a new target's first result takes effect directly", func(t *testing.T) {
		c := ams.lastCheck.Load()
		if !ams.healthy() || c == nil || ams.since.Load() != c.at.UnixNano() {
			t.Errorf("ams healthy %v since %d lastCheck %+v; want up since its first probe", ams.healthy(), ams.since.Load(), c)
		}
	})
	t.Run("a URL no running checker uses is forgotten", func(t *testing.T) {
		oldHC.stop()
		newHC.stop()
		healthMemory.mu.Lock()
		defer healthMemory.mu.Unlock()
		for _, u := range []string{down.URL, up.URL, slow.URL} {
			if _, ok := healthMemory.byURL[u]; ok {
				t.Errorf("%s still remembered after every checker stopped", u)
			}
		}
	})
}
