package georoute

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// seriesValue returns the pop_healthy value of pop and address, or -1 when
// the series does not exist.
func seriesValue(t *testing.T, pop, address string) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	popHealthy.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["pop"] == pop && labels["address"] == address {
			return d.GetGauge().GetValue()
		}
	}
	return -1
}

func TestHealthSeriesOwnership(t *testing.T) {
	kept := &pop{id: "series-kept"}
	kept.addrs = []*popAddress{{pop: kept, addr: netip.MustParseAddr("192.0.2.71")}}
	removed := &pop{id: "series-removed"}
	removed.addrs = []*popAddress{{pop: removed, addr: netip.MustParseAddr("192.0.2.72")}}

	old, reloaded := &healthChecker{}, &healthChecker{}
	healthSeries.enroll(old)
	healthSeries.set(old, healthKey(kept.addrs[0]), true)
	healthSeries.set(old, healthKey(removed.addrs[0]), true)

	// The reload starts the new instance first; the old one still probes.
	healthSeries.enroll(reloaded)
	healthSeries.set(reloaded, healthKey(kept.addrs[0]), false)
	healthSeries.set(old, healthKey(kept.addrs[0]), true)

	t.Run("the newer checker's value stands against a late write of the old one", func(t *testing.T) {
		if v := seriesValue(t, "series-kept", "192.0.2.71"); v != 0 {
			t.Errorf("pop_healthy = %v; want 0 as the reloaded checker said", v)
		}
	})

	healthSeries.release(old)
	t.Run("stopping the old checker removes only the series the reload dropped", func(t *testing.T) {
		if v := seriesValue(t, "series-removed", "192.0.2.72"); v != -1 {
			t.Errorf("the series of a removed pop is still there with %v", v)
		}
		if v := seriesValue(t, "series-kept", "192.0.2.71"); v != 0 {
			t.Errorf("the series of a kept pop is %v; want it kept at 0", v)
		}
	})

	healthSeries.release(reloaded)
	t.Run("stopping the last checker removes its series", func(t *testing.T) {
		if v := seriesValue(t, "series-kept", "192.0.2.71"); v != -1 {
			t.Errorf("the series is still there with %v", v)
		}
	})
}
