package georoute

import "sync"

// healthMemory carries the state of each check target across Corefile
// reloads. A reload starts the new instance before it stops the old one:
// the new checker starts every target whose URL a running checker already
// probes from the state that checker last observed (healthy, the streak of
// disagreeing results, when it last changed), so a pop known to be down
// stays out of answers through the reload. Targets new to the process start
// from their first probe. A URL is forgotten when no checker uses it.
var healthMemory = &targetMemory{byURL: map[string]*targetRecord{}}

// targetRecord is the last observed state of one check URL.
type targetRecord struct {
	healthy bool
	streak  int
	since   int64
	last    *checkResult // nil: not probed yet
	users   int          // targets of running checkers with this URL
}

type targetMemory struct {
	mu    sync.Mutex
	byURL map[string]*targetRecord
}

// join enrolls a starting target and returns what is known of its URL;
// known is false when no probe of it has been observed yet.
func (m *targetMemory) join(url string) (rec targetRecord, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.byURL[url]
	if r == nil {
		r = &targetRecord{}
		m.byURL[url] = r
	}
	r.users++
	return *r, r.last != nil
}

// leave undoes join when a checker stops.
func (m *targetMemory) leave(url string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.byURL[url]; r != nil {
		if r.users--; r.users <= 0 {
			delete(m.byURL, url)
		}
	}
}

// remember records the state a checker observed after a probe of url.
func (m *targetMemory) remember(url string, h hysteresis, since int64, last *checkResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.byURL[url]; r != nil {
		r.healthy, r.streak, r.since, r.last = h.healthy, h.streak, since, last
	}
}
