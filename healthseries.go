package georoute

import "sync"

// healthSeries decides who writes each pop_healthy series. A Corefile
// reload starts the new instance before it stops the old one, so for a
// moment two checkers may publish the same pop and address: the newer one
// (a later start) wins, and stopping a checker removes exactly the series
// no newer checker publishes — those of pops and addresses the reload
// removed.
var healthSeries = &seriesOwners{owner: map[seriesKey]*healthChecker{}}

type seriesKey struct{ pop, address string }

type seriesOwners struct {
	mu    sync.Mutex
	gen   uint64
	owner map[seriesKey]*healthChecker
}

// enroll gives a starting checker its generation.
func (s *seriesOwners) enroll(hc *healthChecker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	hc.gen = s.gen
}

// set publishes the health of a as seen by hc, unless a newer checker owns
// the series.
func (s *seriesOwners) set(hc *healthChecker, a *popAddress, healthy bool) {
	v := 0.0
	if healthy {
		v = 1
	}
	k := seriesKey{a.pop.id, a.addr.String()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.owner[k]; o != nil && o.gen > hc.gen {
		return
	}
	s.owner[k] = hc
	popHealthy.WithLabelValues(k.pop, k.address).Set(v)
}

// release deletes the series hc still owns.
func (s *seriesOwners) release(hc *healthChecker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, o := range s.owner {
		if o == hc {
			delete(s.owner, k)
			popHealthy.DeleteLabelValues(k.pop, k.address)
		}
	}
}
