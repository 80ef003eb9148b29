package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Addresses of the pops in testdata/example.org.zone, and client subnets of
// testdata/geo.csv.
const (
	healthNYC    = "192.0.2.10"
	healthLHR    = "198.51.100.10"
	healthNRT    = "203.0.113.10"
	healthLondon = "+subnet=198.18.2.0/24"
	healthTokyo  = "+subnet=198.18.3.0/24"
)

// The checker's timing in these tests: quick, so that the suite stays short.
// rise and fall 2 still tell one probe from a run of them; the timeout
// leaves a probe that a busy machine slows most of the interval.
const (
	healthInterval = 500 * time.Millisecond
	healthTimeout  = 400 * time.Millisecond
	healthRise     = 2
	healthFall     = 2
	// healthSlack covers dig's own time and scheduling on a busy machine.
	healthSlack = 1500 * time.Millisecond
)

// healthBackend is the health endpoint of every pop: one HTTP server on
// 127.0.0.1 whose paths (/lhr, /nyc …) answer with a status the test sets,
// and count the probes they get.
type healthBackend struct {
	srv   *httptest.Server
	mu    sync.Mutex
	codes map[string]int // path → status; 200 when unset
	hits  map[string]int
	// hold, when set, runs before a request is answered.
	hold func(*http.Request)
}

func newHealthBackend(t *testing.T, hold func(*http.Request)) *healthBackend {
	t.Helper()
	b := &healthBackend{codes: map[string]int{}, hits: map[string]int{}, hold: hold}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *healthBackend) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.hits[r.URL.Path]++
	code := b.codes[r.URL.Path]
	b.mu.Unlock()
	if b.hold != nil {
		b.hold(r)
	}
	if code == 0 {
		code = http.StatusOK
	}
	w.WriteHeader(code)
}

func (b *healthBackend) set(path string, code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.codes[path] = code
}

func (b *healthBackend) probes() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.hits {
		out[k] = v
	}
	return out
}

// healthCorefile routes www.example.org between nyc, lhr and nrt; checks
// holds each pop's `check URL` (empty: none) and extra goes into the block.
func healthCorefile(checks map[string]string, extra string) string {
	pop := func(id, coords, addrs string) string {
		if checks[id] == "" {
			return fmt.Sprintf("        pop %s %s %s\n", id, coords, addrs)
		}
		return fmt.Sprintf("        pop %s %s %s {\n            check %s\n        }\n", id, coords, addrs, checks[id])
	}
	return `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    prometheus {metrics}
    georoute www.example.org {
        db {testdata}/geo.mmdb
` + pop("nyc", "40.7128 -74.0060", healthNYC+" 2001:db8:1::10") +
		pop("lhr", "51.4700 -0.4543", healthLHR+" 2001:db8:2::10") +
		pop("nrt", "35.7720 140.3929", healthNRT+" 2001:db8:3::10") +
		extra + `
    }
    file {testdata}/example.org.zone
    errors
}
`
}

// healthTiming is the block's timing: healthInterval, healthTimeout, rise
// and fall.
func healthTiming() string {
	return fmt.Sprintf("        interval %s\n        timeout %s\n        rise %d\n        fall %d", healthInterval, healthTimeout, healthRise, healthFall)
}

// healthChecks gives each pop a check at its own path of b.
func healthChecks(b *healthBackend) map[string]string {
	return map[string]string{"nyc": b.srv.URL + "/nyc", "lhr": b.srv.URL + "/lhr", "nrt": b.srv.URL + "/nrt"}
}

// healthAnswer queries www.example.org A for a client and insists on a valid
// routed answer: NOERROR and exactly one address, one of allowed.
func (s *server) healthAnswer(client string, allowed ...string) string {
	s.t.Helper()
	r := s.query(client, "www.example.org", "A")
	addrs := r.addresses()
	if r.status != "NOERROR" || len(addrs) != 1 || !slices.Contains(allowed, addrs[0]) {
		s.t.Fatalf("client %s: got %s %v, want NOERROR with one of %v:\n%s", client, r.status, addrs, allowed, r.raw)
	}
	return addrs[0]
}

// healthAwaitAnswer queries in a loop (every 100ms, each answer valid) until
// the client gets want, and says how long that took; it fails after within.
func (s *server) healthAwaitAnswer(client, want string, within time.Duration, allowed ...string) time.Duration {
	s.t.Helper()
	begin := time.Now()
	for {
		if got := s.healthAnswer(client, allowed...); got == want {
			return time.Since(begin)
		}
		if time.Since(begin) > within {
			s.t.Fatalf("client %s did not get %s within %s:\n%s", client, want, within, s.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// healthSeries sums the samples of metric name whose labels include every
// k=v of labels (in any order); -1 when there is none.
func healthSeries(t testing.TB, text, name string, labels ...string) float64 {
	if v, ok := parseExposition(t, text).sum(name, labels...); ok {
		return v
	}
	return -1
}

// healthAwaitMetric waits (bounded) until the series' value is want.
func (s *server) healthAwaitMetric(within time.Duration, want float64, name string, labels ...string) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := healthSeries(s.t, s.scrape(), name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s%v = %v after %s, want %v", name, labels, got, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthLogLines returns the server's log lines that match re.
func (s *server) healthLogLines(re string) []string {
	var out []string
	rx := regexp.MustCompile(re)
	for _, line := range strings.Split(s.out.String(), "\n") {
		if rx.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

func TestHealthFailoverRecoveryAndFailOpen(t *testing.T) {
	t.Parallel()
	b := newHealthBackend(t, nil)
	s := startServer(t, healthCorefile(healthChecks(b), healthTiming()), nil)

	if got := s.healthAnswer(healthLondon, healthLHR); got != healthLHR {
		t.Fatalf("London got %s, want lhr", got)
	}
	m := s.scrape()
	for _, series := range [][]string{
		{"pop=lhr", "address=" + healthLHR}, {"pop=lhr", "address=2001:db8:2::10"},
		{"pop=nyc", "address=" + healthNYC}, {"pop=nrt", "address=" + healthNRT},
	} {
		if v := healthSeries(t, m, "coredns_georoute_pop_healthy", series...); v != 1 {
			t.Errorf("pop_healthy%v = %v, want 1", series, v)
		}
	}

	t.Run("a pop failing fall probes is taken out for the next-nearest", func(t *testing.T) {
		b.set("/lhr", http.StatusServiceUnavailable)
		limit := healthInterval*(healthFall+1) + healthSlack
		took := s.healthAwaitAnswer(healthLondon, healthNYC, limit, healthLHR, healthNYC)
		t.Logf("London moved to nyc %s after lhr began failing", took.Round(time.Millisecond))

		m := s.scrape()
		for _, addr := range []string{healthLHR, "2001:db8:2::10"} {
			if v := healthSeries(t, m, "coredns_georoute_pop_healthy", "pop=lhr", "address="+addr); v != 0 {
				t.Errorf("pop_healthy{pop=lhr,address=%s} = %v, want 0", addr, v)
			}
		}
		if v := healthSeries(t, m, "coredns_georoute_pop_healthy", "pop=nyc", "address="+healthNYC); v != 1 {
			t.Errorf("pop_healthy{pop=nyc} = %v, want 1", v)
		}
		ok := healthSeries(t, m, "coredns_georoute_healthchecks_total", "pop=lhr", "result=ok")
		fail := healthSeries(t, m, "coredns_georoute_healthchecks_total", "pop=lhr", "result=fail")
		if ok < 1 || fail < healthFall {
			t.Errorf("healthchecks_total{pop=lhr}: ok %v, fail %v; want ok ≥ 1 and fail ≥ %d", ok, fail, healthFall)
		}
		// The duration is observed just before the result is counted: a
		// scrape may fall between the two.
		if n := healthSeries(t, m, "coredns_georoute_healthcheck_duration_seconds_count", "pop=lhr"); n < ok+fail || n > ok+fail+1 {
			t.Errorf("healthcheck_duration_seconds_count{pop=lhr} = %v, want %v (ok + fail)", n, ok+fail)
		}
		if sum := healthSeries(t, m, "coredns_georoute_healthcheck_duration_seconds_sum", "pop=lhr"); sum < 0 || sum > healthTimeout.Seconds()*(ok+fail) {
			t.Errorf("healthcheck_duration_seconds_sum{pop=lhr} = %v, want between 0 and timeout × probes", sum)
		}
		if v := healthSeries(t, m, "coredns_georoute_healthcheck_duration_seconds_bucket", "pop=nyc", "le=+Inf"); v < 1 {
			t.Errorf("healthcheck_duration_seconds_bucket{pop=nyc,le=+Inf} = %v, want ≥ 1", v)
		}

		// One line for the change of state, none per probe.
		down := s.healthLogLines(`pop lhr \S+ down: 503 after 2 failures`)
		if len(down) != 1 {
			t.Errorf("%d log lines for lhr going down, want 1:\n%s", len(down), s.out.String())
		}
		if all := s.healthLogLines(`plugin/georoute: pop `); len(all) != 1 {
			t.Errorf("%d georoute health log lines after %v probes, want only the state change:\n%s", len(all), ok+fail, strings.Join(all, "\n"))
		}
	})

	t.Run("it comes back after rise successes", func(t *testing.T) {
		b.set("/lhr", http.StatusOK)
		limit := healthInterval*(healthRise+1) + healthSlack
		took := s.healthAwaitAnswer(healthLondon, healthLHR, limit, healthLHR, healthNYC)
		t.Logf("London back on lhr %s after it recovered", took.Round(time.Millisecond))
		if v := healthSeries(t, s.scrape(), "coredns_georoute_pop_healthy", "pop=lhr", "address="+healthLHR); v != 1 {
			t.Errorf("pop_healthy{pop=lhr} = %v, want 1", v)
		}
		if up := s.healthLogLines(`pop lhr \S+ up: after 2 successes`); len(up) != 1 {
			t.Errorf("%d log lines for lhr coming back, want 1:\n%s", len(up), s.out.String())
		}
	})

	t.Run("with every pop down clients still get their nearest pop", func(t *testing.T) {
		for _, p := range []string{"/nyc", "/lhr", "/nrt"} {
			b.set(p, http.StatusServiceUnavailable)
		}
		limit := healthInterval*(healthFall+1) + healthSlack
		deadline := time.Now().Add(limit)
		// The sum over every pop's addresses is 0 once all are down.
		for healthSeries(t, s.scrape(), "coredns_georoute_pop_healthy") != 0 {
			// Every answer meanwhile is still a valid address.
			s.healthAnswer(healthLondon, healthLHR, healthNYC, healthNRT)
			if time.Now().After(deadline) {
				t.Fatalf("not every pop down within %s:\n%s", limit, s.scrape())
			}
			time.Sleep(100 * time.Millisecond)
		}
		before := max(healthSeries(t, s.scrape(), "coredns_georoute_failopen_total"), 0)
		if got := s.healthAnswer(healthLondon, healthLHR, healthNYC, healthNRT); got != healthLHR {
			t.Errorf("London got %s with every pop down, want its nearest, lhr", got)
		}
		if got := s.healthAnswer(healthTokyo, healthLHR, healthNYC, healthNRT); got != healthNRT {
			t.Errorf("Tokyo got %s with every pop down, want its nearest, nrt", got)
		}
		if after := healthSeries(t, s.scrape(), "coredns_georoute_failopen_total"); after != before+2 {
			t.Errorf("failopen_total went from %v to %v over 2 queries, want +2", before, after)
		}
	})
}

// healthTCPServer accepts and closes connections on 127.0.0.1 until the
// test ends; it returns its address.
func healthTCPServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func TestHealthTCPCheckOfClosedPortIsDownAtStartup(t *testing.T) {
	t.Parallel()
	// A port no server of this run is given: nothing listens there.
	closedAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	checks := map[string]string{
		"lhr": "tcp://" + closedAddr,
		"nyc": "tcp://" + healthTCPServer(t),
		// nrt has no check: always in service.
	}
	s := startServer(t, healthCorefile(checks, healthTiming()), nil)

	// startServer returned on the first /ready 200: the very first answer
	// already avoids lhr, though fall is 2.
	if got := s.healthAnswer(healthLondon, healthNYC); got != healthNYC {
		t.Errorf("London got %s, want nyc", got)
	}
	r := s.query(healthLondon, "www.example.org", "AAAA")
	if got := r.addresses(); len(got) != 1 || got[0] != "2001:db8:1::10" {
		t.Errorf("London AAAA got %v, want [2001:db8:1::10] (the pop's check covers its IPv6 address too)", got)
	}
	m := s.scrape()
	for _, tc := range []struct {
		pop, addr string
		want      float64
	}{{"lhr", healthLHR, 0}, {"lhr", "2001:db8:2::10", 0}, {"nyc", healthNYC, 1}, {"nrt", healthNRT, 1}} {
		if v := healthSeries(t, m, "coredns_georoute_pop_healthy", "pop="+tc.pop, "address="+tc.addr); v != tc.want {
			t.Errorf("pop_healthy{pop=%s,address=%s} = %v, want %v", tc.pop, tc.addr, v, tc.want)
		}
	}
	if v := healthSeries(t, m, "coredns_georoute_healthchecks_total", "pop=lhr", "result=fail"); v < 1 {
		t.Errorf("healthchecks_total{pop=lhr,result=fail} = %v, want ≥ 1", v)
	}
	if v := healthSeries(t, m, "coredns_georoute_healthchecks_total", "pop=nyc", "result=ok"); v < 1 {
		t.Errorf("healthchecks_total{pop=nyc,result=ok} = %v, want ≥ 1", v)
	}
	if lines := s.healthLogLines(`pop lhr tcp://` + regexp.QuoteMeta(closedAddr) + ` down: .* at start-up`); len(lines) != 1 {
		t.Errorf("%d start-up log lines for lhr, want 1:\n%s", len(lines), s.out.String())
	}
}

func TestHealthReadyWaitsForFirstRound(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	release := make(chan struct{})
	var arriveOnce, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	b := newHealthBackend(t, func(r *http.Request) {
		if r.URL.Path != "/lhr" {
			return
		}
		arriveOnce.Do(func() { close(arrived) })
		// The lhr backend holds its first probe until the test lets go
		// (bounded, and never past the probe's own end).
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(8 * time.Second):
		}
	})
	// timeout 9s (below interval 10s): the held probe cannot time out while
	// the test looks at /ready.
	s := newServer(t, healthCorefile(healthChecks(b), "        interval 10s\n        timeout 9s"), nil)
	s.start()

	select {
	case <-arrived:
	case <-s.exited:
		t.Fatalf("coredns exited:\n%s", s.out.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("no probe reached lhr's backend within 10s:\n%s", s.out.String())
	}
	// The ready plugin registered georoute before georoute's start-up ran,
	// and that start-up sent the probe that is now held: /ready must say 503.
	readyStatus := func() (int, string) {
		resp, err := http.Get(s.ready)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(5 * time.Second)
	code, body := readyStatus()
	for code == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		code, body = readyStatus()
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "georoute") {
		t.Fatalf("/ready = %d %q while the first round is in flight, want 503 naming georoute", code, body)
	}
	time.Sleep(200 * time.Millisecond)
	if code, body := readyStatus(); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready = %d %q while the first round is still in flight, want 503", code, body)
	}

	released := time.Now()
	releaseOnce.Do(func() { close(release) })
	s.waitUp(true)
	t.Logf("/ready 200 %s after the held probe was answered", time.Since(released).Round(time.Millisecond))
	if got := s.healthAnswer(healthLondon, healthLHR); got != healthLHR {
		t.Errorf("London got %s, want lhr", got)
	}
}

func TestHealthReloadsStopOldCheckers(t *testing.T) {
	t.Parallel()
	const reloads = 20
	b := newHealthBackend(t, nil)
	checks := healthChecks(b)
	targets := len(checks)
	s := startServer(t, healthCorefile(checks, healthTiming()), nil)

	// Let the first probes of every target and the first scrape settle.
	time.Sleep(healthInterval + 200*time.Millisecond)
	s.scrape()
	baseline := healthSeries(t, s.scrape(), "go_goroutines")
	if baseline <= 0 {
		t.Fatalf("go_goroutines = %v; is prometheus in the Corefile?", baseline)
	}

	begin := time.Now()
	for i := range reloads {
		done := strings.Count(s.out.String(), "Reloading complete")
		s.signal(syscall.SIGUSR1)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(s.out.String(), "Reloading complete") == done {
			if strings.Contains(s.out.String(), "Restart failed") || time.Now().After(deadline) {
				t.Fatalf("reload %d did not complete within 10s:\n%s", i+1, s.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		// DNS keeps answering between reloads; the answer may be any pop
		// only if health said so, and every pop is healthy here.
		if got := s.healthAnswer(healthLondon, healthLHR, healthNYC, healthNRT); got != healthLHR {
			t.Errorf("after reload %d London got %s, want lhr", i+1, got)
		}
	}
	t.Logf("%d reloads took %s", reloads, time.Since(begin).Round(time.Millisecond))

	// Give the last instance's first round and the old connections time to
	// finish, then count.
	time.Sleep(healthInterval)
	// The slack covers what legitimately comes and goes: a probe in flight
	// (its dial and connection goroutines, about 3 per target at once) and
	// HTTP server connections of the scrapes. A checker left running per
	// reload would add at least one goroutine per target per reload, 60 here.
	const slack = 10
	var after float64
	for range 20 {
		after = healthSeries(t, s.scrape(), "go_goroutines")
		if after <= baseline+slack {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("go_goroutines: %v before the reloads, %v after", baseline, after)
	if after > baseline+slack {
		t.Errorf("go_goroutines = %v after %d reloads, was %v; want at most %v", after, reloads, baseline, baseline+slack)
	}

	// One probe per target per interval: old checkers are stopped.
	const intervals = 3
	from := b.probes()
	time.Sleep(intervals * healthInterval)
	to := b.probes()
	total := 0
	for path := range checks {
		n := to["/"+path] - from["/"+path]
		total += n
		// A window of whole intervals holds one probe per interval, give or
		// take the one on its edge.
		if n < intervals-1 || n > intervals+1 {
			t.Errorf("%s got %d probes in %d intervals, want %d", path, n, intervals, intervals)
		}
	}
	t.Logf("%d probes of %d targets in %d intervals", total, targets, intervals)
}

func TestHealthFailedReloadLeavesNoChecker(t *testing.T) {
	t.Parallel()
	b := newHealthBackend(t, nil)
	checks := healthChecks(b)
	corefile := healthCorefile(checks, healthTiming())
	s := startServer(t, corefile, nil)

	// A reload that fails after georoute's start-up ran: the new Corefile
	// adds a server on a port the test holds, so CoreDNS cannot listen and
	// keeps the old instance.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	broken := corefile + fmt.Sprintf("example.net:%d {\n    bind 127.0.0.1\n    whoami\n}\n", busy.Addr().(*net.TCPAddr).Port)
	if err := os.WriteFile(filepath.Join(s.dir, "Corefile"), []byte(s.expand(broken)), 0o644); err != nil {
		t.Fatal(err)
	}
	const failedReloads = 2
	for i := range failedReloads {
		failed := strings.Count(s.out.String(), "Restart failed")
		s.signal(syscall.SIGUSR1)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(s.out.String(), "Restart failed") == failed {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d did not fail within 10s:\n%s", i+1, s.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := s.healthAnswer(healthLondon, healthLHR); got != healthLHR {
		t.Errorf("after the failed reloads London got %s, want lhr", got)
	}

	// Only the instance in service probes: one probe per target per interval.
	// A checker started by a failed reload and never stopped would add one
	// per target per interval for each failed reload, forever.
	time.Sleep(healthInterval)
	const intervals = 3
	from := b.probes()
	time.Sleep(intervals * healthInterval)
	to := b.probes()
	for path := range checks {
		if n := to["/"+path] - from["/"+path]; n < intervals-1 || n > intervals+1 {
			t.Errorf("%s got %d probes in %d intervals after %d failed reloads, want %d", path, n, intervals, failedReloads, intervals)
		}
	}
}
