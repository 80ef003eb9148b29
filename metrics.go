package georoute

import (
	"context"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// requestCount counts the A/AAAA queries of configured names that
	// georoute routed, by the nearest chosen pop and how the client was
	// located.
	requestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "requests_total",
		Help:      "Counter of routed A/AAAA queries by nearest chosen pop and location source (ecs, remote, fallback, override, signed).",
	}, []string{"server", "pop", "source"})

	// failOpenCount counts queries answered while every candidate was down.
	failOpenCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "failopen_total",
		Help:      "Counter of queries answered while every candidate address was unhealthy.",
	}, []string{"server"})

	// distanceKmHist is the distance between a located client and its nearest
	// chosen site.
	distanceKmHist = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "distance_km",
		Help:      "Histogram of the great-circle distance between a located client and the nearest chosen site.",
		Buckets:   []float64{50, 100, 250, 500, 1000, 2000, 4000, 8000, 12000, 20000},
	}, []string{"server"})

	// ecsCount counts queries that carried an EDNS Client Subnet option.
	ecsCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "ecs_total",
		Help:      "Counter of queries with an EDNS Client Subnet option by what became of it (used, ignored, formerr).",
	}, []string{"result"})

	// ecsUsed, ecsIgnored and ecsFormerr are ecsCount's series, resolved
	// once rather than at every query.
	ecsUsed    = ecsCount.WithLabelValues("used")
	ecsIgnored = ecsCount.WithLabelValues("ignored")
	ecsFormerr = ecsCount.WithLabelValues("formerr")
)

var (
	// popHealthy is 1 while an address is in service, 0 while it is out.
	popHealthy = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "pop_healthy",
		Help:      "Gauge of each pop address's health: 1 in service, 0 taken out.",
	}, []string{"pop", "address"})

	// healthcheckCount counts probes by result.
	healthcheckCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "healthchecks_total",
		Help:      "Counter of health probes by pop and result (ok, fail).",
	}, []string{"pop", "result"})

	// healthcheckDuration is how long probes take.
	healthcheckDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "healthcheck_duration_seconds",
		Help:      "Histogram of health probe durations by pop.",
		Buckets:   []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"pop"})

	// dbReloadCount counts database swaps by result.
	dbReloadCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "db_reloads_total",
		Help:      "Counter of database file reloads by result (ok, error).",
	}, []string{"result"})

	// dbBuildTime is the build date of each database file in service.
	dbBuildTime = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "db_build_timestamp_seconds",
		Help:      "Gauge of the build time (Unix seconds) of each database file in service, by path as configured.",
	}, []string{"file"})
)

// count records a decision in the metrics: the request by pop and source,
// fail-open, and the distance to the nearest chosen site. Replies without
// an RRset to route are not requests of georoute's.
func count(ctx context.Context, d *decision) {
	if d.outcome != outcomeRouted && d.outcome != outcomeSigned {
		return
	}
	server := metrics.WithServer(ctx)
	popID := ""
	if d.nearest != nil {
		popID = d.nearest.id
	}
	requestCount.WithLabelValues(server, popID, d.source).Inc()
	if d.failOpen {
		failOpenCount.WithLabelValues(server).Inc()
	}
	if d.loc.located && d.chose {
		distanceKmHist.WithLabelValues(server).Observe(distanceKm(d.loc.at, d.nearestAt))
	}
}

// countClient records what became of a query's ECS option.
func countClient(c *client) {
	switch {
	case c.byECS:
		ecsUsed.Inc()
	case c.subnet.present, c.ignored:
		ecsIgnored.Inc()
	}
}
