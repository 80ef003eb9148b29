package georoute

import (
	"context"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// requestCount counts the A/AAAA queries of configured names that
	// georoute routed, by the nearest chosen pop and how the client was
	// located.
	requestCount = counterVec("requests_total",
		"Counter of routed A/AAAA queries by nearest chosen pop and location source (ecs, remote, fallback, override, signed).",
		"server", "pop", "source")

	// failOpenCount counts queries answered while every candidate was down.
	failOpenCount = counterVec("failopen_total",
		"Counter of queries answered while every candidate address was unhealthy.",
		"server")

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
	ecsCount = counterVec("ecs_total",
		"Counter of queries with an EDNS Client Subnet option by what became of it (used, ignored, formerr).",
		"result")

	// ecsUsed, ecsIgnored and ecsFormerr are ecsCount's series, resolved
	// once rather than at every query.
	ecsUsed    = ecsCount.WithLabelValues("used")
	ecsIgnored = ecsCount.WithLabelValues("ignored")
	ecsFormerr = ecsCount.WithLabelValues("formerr")
)

var (
	// popHealthy is 1 while an address is in service, 0 while it is out.
	popHealthy = gaugeVec("pop_healthy",
		"Gauge of each pop address's health: 1 in service, 0 taken out.",
		"pop", "address")

	// healthcheckCount counts probes by result.
	healthcheckCount = counterVec("healthchecks_total",
		"Counter of health probes by pop and result (ok, fail).",
		"pop", "result")

	// healthcheckDuration is how long probes take.
	healthcheckDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "healthcheck_duration_seconds",
		Help:      "Histogram of health probe durations by pop.",
		Buckets:   []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"pop"})

	// dbReloadCount counts database swaps by result.
	dbReloadCount = counterVec("db_reloads_total",
		"Counter of database file reloads by result (ok, error).",
		"result")

	// dbBuildTime is the build date of each database file in service.
	dbBuildTime = gaugeVec("db_build_timestamp_seconds",
		"Gauge of the build time (Unix seconds) of each database file in service, by path as configured.",
		"file")
)

// counterVec and gaugeVec register a vector named
// coredns_georoute_NAME with CoreDNS's prometheus plugin.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return promauto.NewCounterVec(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: pluginName, Name: name, Help: help}, labels)
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return promauto.NewGaugeVec(prometheus.GaugeOpts{Namespace: plugin.Namespace, Subsystem: pluginName, Name: name, Help: help}, labels)
}

// count records a decision in the metrics: the request by pop and source,
// fail-open, and the distance to the nearest chosen site. Replies without
// an RRset to route are not requests of georoute's.
func (g *GeoRoute) count(ctx context.Context, d *decision) {
	if d.outcome != outcomeRouted && d.outcome != outcomeSigned {
		return
	}
	s := g.seriesFor(metrics.WithServer(ctx))
	s.request(d).Inc()
	if d.failOpen {
		s.failOpen.Inc()
	}
	if d.loc.located && d.chose {
		s.distance.Observe(d.nearestKm())
	}
}

// nearestKm is the distance from a located client to the first chosen
// site.
func (d *decision) nearestKm() float64 {
	if d.nearest != nil && d.loc.located && d.loc.place != nil {
		return d.loc.place.kmTo(d.nearest)
	}
	return distanceKm(d.loc.at, d.nearestAt)
}

// requestSources are the values of requests_total's source label.
var requestSources = [...]string{"ecs", "remote", "fallback", "override", "signed"}

// requestSeries are the per-query series of one server label, resolved
// once: resolving a series by its label values hashes them every time.
// The requests_total series are resolved at their first use, so that only
// series that happened appear.
type requestSeries struct {
	server   string
	failOpen prometheus.Counter
	distance prometheus.Observer
	// requests is indexed by (pop rank + 1) × sources + source; pop 0 is
	// no pop (anonymous site, fallback all, signed).
	requests []atomic.Pointer[counterSlot]
}

type counterSlot struct{ prometheus.Counter }

// seriesFor returns the series of server, made anew when the server label
// changes (a block on several listeners).
func (g *GeoRoute) seriesFor(server string) *requestSeries {
	if s := g.series.Load(); s != nil && s.server == server {
		return s
	}
	s := &requestSeries{
		server:   server,
		failOpen: failOpenCount.WithLabelValues(server),
		distance: distanceKmHist.WithLabelValues(server),
		requests: make([]atomic.Pointer[counterSlot], (len(g.pops)+1)*len(requestSources)),
	}
	g.series.Store(s)
	return s
}

// request is the requests_total series of d.
func (s *requestSeries) request(d *decision) prometheus.Counter {
	pop, popID := 0, ""
	if d.nearest != nil {
		pop, popID = d.nearest.rank+1, d.nearest.id
	}
	src := 0
	for src < len(requestSources)-1 && requestSources[src] != d.source {
		src++
	}
	slot := &s.requests[pop*len(requestSources)+src]
	if c := slot.Load(); c != nil {
		return c.Counter
	}
	c := &counterSlot{requestCount.WithLabelValues(s.server, popID, requestSources[src])}
	slot.Store(c)
	return c.Counter
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
