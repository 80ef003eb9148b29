package georoute

import (
	"sync"

	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// popDrained is 1 while a pop is drained by hand, 0 otherwise.
	popDrained = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "pop_drained",
		Help:      "Gauge of each pop's drain: 1 drained by an operator, 0 in service.",
	}, []string{"pop"})

	// adminRequestCount counts admin endpoint requests by method and status.
	adminRequestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "admin_requests_total",
		Help:      "Counter of admin endpoint requests by method and HTTP status code.",
	}, []string{"method", "code"})

	// overridesReloadCount counts reads of the overrides file by result.
	overridesReloadCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "overrides_reloads_total",
		Help:      "Counter of overrides file reloads by result (ok, error).",
	}, []string{"result"})

	// stateReloadCount counts reads of the state file by result.
	stateReloadCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "state_reloads_total",
		Help:      "Counter of state file reloads by result (ok, error).",
	}, []string{"result"})

	// The series of both reload counters exist from the start, so that
	// rate() and increase() see the first event.
	overridesReloadOK    = overridesReloadCount.WithLabelValues("ok")
	overridesReloadError = overridesReloadCount.WithLabelValues("error")
	stateReloadOK        = stateReloadCount.WithLabelValues("ok")
	stateReloadError     = stateReloadCount.WithLabelValues("error")
)

// drainSeries decides who writes each pop_drained series, as healthSeries
// does for pop_healthy: during a Corefile reload the new instance publishes
// before the old one stops, the newer one wins, and stopping an instance
// removes only the series of pops no newer instance publishes.
var drainSeries = &drainSeriesOwners{owner: map[string]*drainControl{}}

type drainSeriesOwners struct {
	mu    sync.Mutex
	gen   uint64
	owner map[string]*drainControl
}

func (s *drainSeriesOwners) enroll(d *drainControl) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	d.gen = s.gen
}

func (s *drainSeriesOwners) set(d *drainControl, id string, drained bool) {
	v := 0.0
	if drained {
		v = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.owner[id]; o != nil && o.gen > d.gen {
		return
	}
	s.owner[id] = d
	popDrained.WithLabelValues(id).Set(v)
}

func (s *drainSeriesOwners) release(d *drainControl) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, o := range s.owner {
		if o == d {
			delete(s.owner, id)
			popDrained.DeleteLabelValues(id)
		}
	}
}
