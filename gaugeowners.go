package georoute

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// gaugeOwners decides who writes each series of a gauge that instances
// publish (pop_healthy, pop_drained). A Corefile reload starts the new
// instance before it stops the old one, so for a moment two may publish
// the same series: the newer one (a later start) wins, and stopping an
// instance removes exactly the series no newer one publishes — those of
// the pops and addresses the reload removed.
type gaugeOwners[K comparable, O interface {
	comparable
	generation() *uint64
}] struct {
	mu     sync.Mutex
	gen    uint64
	owner  map[K]O
	gauge  *prometheus.GaugeVec
	labels func(K) []string
}

func newGaugeOwners[K comparable, O interface {
	comparable
	generation() *uint64
}](gauge *prometheus.GaugeVec, labels func(K) []string) *gaugeOwners[K, O] {
	return &gaugeOwners[K, O]{owner: map[K]O{}, gauge: gauge, labels: labels}
}

// healthSeries owns pop_healthy, one series per pop address.
var healthSeries = newGaugeOwners[seriesKey, *healthChecker](popHealthy, func(k seriesKey) []string { return []string{k.pop, k.address} })

type seriesKey struct{ pop, address string }

func healthKey(a *popAddress) seriesKey { return seriesKey{a.pop.id, a.addr.String()} }

func (hc *healthChecker) generation() *uint64 { return &hc.gen }

// enroll gives a starting instance its generation.
func (s *gaugeOwners[K, O]) enroll(o O) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	*o.generation() = s.gen
}

// set publishes the series k as o sees it, unless a newer instance owns it.
func (s *gaugeOwners[K, O]) set(o O, k K, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.owner[k]; ok && *prev.generation() > *o.generation() {
		return
	}
	s.owner[k] = o
	s.gauge.WithLabelValues(s.labels(k)...).Set(v)
}

// release deletes the series o still owns.
func (s *gaugeOwners[K, O]) release(o O) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, owner := range s.owner {
		if owner == o {
			delete(s.owner, k)
			s.gauge.DeleteLabelValues(s.labels(k)...)
		}
	}
}
