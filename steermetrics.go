package georoute

import (
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

// drainSeries owns pop_drained, one series per pop (see gaugeOwners).
var drainSeries = newGaugeOwners[string, *drainControl](popDrained, func(id string) []string { return []string{id} })

func (d *drainControl) generation() *uint64 { return &d.gen }
