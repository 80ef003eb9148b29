package georoute

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns/caddy"
	dto "github.com/prometheus/client_model/go"
)

func TestHysteresis(t *testing.T) {
	tests := []struct {
		name    string
		healthy bool // state before the results
		results []bool
		flips   []bool // whether each result flipped the state
		want    bool
	}{
		{"fewer failures than fall keep it up", true, []bool{false, false}, []bool{false, false}, true},
		{"fall consecutive failures take it out", true, []bool{false, false, false}, []bool{false, false, true}, false},
		{"a success resets the failure streak", true, []bool{false, false, true, false, false}, []bool{false, false, false, false, false}, true},
		{"fewer successes than rise keep it out", false, []bool{true}, []bool{false}, false},
		{"rise consecutive successes bring it back", false, []bool{true, true}, []bool{false, true}, true},
		{"a failure resets the success streak", false, []bool{true, false, true}, []bool{false, false, false}, false},
		{"agreeing results change nothing", true, []bool{true, true, true}, []bool{false, false, false}, true},
		{"the streak starts over after a flip", true, []bool{false, false, false, true, false, false, false}, []bool{false, false, true, false, false, false, false}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := hysteresis{healthy: tc.healthy, rise: 2, fall: 3}
			for i, ok := range tc.results {
				if got := h.observe(ok); got != tc.flips[i] {
					t.Fatalf("result %d (%v): flipped = %v, want %v", i, ok, got, tc.flips[i])
				}
			}
			if h.healthy != tc.want {
				t.Errorf("healthy = %v, want %v", h.healthy, tc.want)
			}
		})
	}
	t.Run("rise 1 and fall 1 follow every change", func(t *testing.T) {
		h := hysteresis{healthy: true, rise: 1, fall: 1}
		for i, ok := range []bool{false, true, false, false, true} {
			flipped := h.observe(ok)
			if h.healthy != ok {
				t.Fatalf("result %d (%v): healthy = %v", i, ok, h.healthy)
			}
			if want := i != 3; flipped != want {
				t.Fatalf("result %d (%v): flipped = %v, want %v", i, ok, flipped, want)
			}
		}
	})
}

// healthPop builds a pop with the given check (empty: none) and addresses.
func healthPop(id, check string, addrs ...string) *pop {
	p := &pop{id: id, check: check}
	for _, s := range addrs {
		p.addrs = append(p.addrs, &popAddress{pop: p, addr: netip.MustParseAddr(s)})
	}
	return p
}

// healthTestConfig is a quick configuration for probing loopback servers.
func healthTestConfig(timeout time.Duration) healthConfig {
	cfg := defaultHealthConfig()
	cfg.timeout = timeout
	cfg.interval = 10 * timeout
	return cfg
}

// healthProbe runs one probe of url with cfg and says how long it took.
func healthProbe(cfg healthConfig, url string) (bool, string, time.Duration) {
	p := healthPop("probe", url, "192.0.2.1")
	hc := newHealthChecker(cfg, []*pop{p})
	begin := time.Now()
	res := hc.probe(context.Background(), hc.targets[0])
	return res.ok, res.detail, time.Since(begin)
}

// healthHTTPServer serves h on 127.0.0.1 and closes when the test ends.
func healthHTTPServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// healthStatus answers every request with code.
func healthStatus(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// healthTLSServer serves 200 over TLS with the named certificate of
// testdata/tls.
func healthTLSServer(t *testing.T, name string) *httptest.Server {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join("testdata", "tls", name+".pem"), filepath.Join("testdata", "tls", name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(healthStatus(http.StatusOK))
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// healthTestCA is the pool of testdata/tls/ca.pem, read as `ca` reads it.
func healthTestCA(t *testing.T) *x509.CertPool {
	t.Helper()
	pool, err := loadCA(filepath.Join("testdata", "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// healthRawServer accepts TCP connections on 127.0.0.1 and hands each to
// serve; accepted receives one value per connection. Everything is closed
// when the test ends.
func healthRawServer(t *testing.T, serve func(net.Conn)) (addr string, accepted chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = make(chan struct{}, 100)
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
			serve(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String(), accepted
}

// healthHugeHeaders answers 200 with 1 MiB of headers, as a hostile target
// may (net/http would read up to 10 MiB by default).
func healthHugeHeaders(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	bufio.NewReader(c).ReadString('\n')
	w := bufio.NewWriter(c)
	w.WriteString("HTTP/1.1 200 OK\r\n")
	line := "X-Filler: " + strings.Repeat("x", 1000) + "\r\n"
	for range 1 << 10 {
		w.WriteString(line)
	}
	w.WriteString("Content-Length: 0\r\n\r\n")
	w.Flush()
	c.Close()
}

// healthHang keeps a connection open without ever answering.
func healthHang(net.Conn) {}

// healthReset aborts a connection with a TCP RST.
func healthReset(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// healthClosedPort returns a loopback address nothing listens on.
func healthClosedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// healthProberStacks are the goroutines on the probing side: the checker's
// own and those net/http runs for its client. The test's servers run under
// other names, so unrelated goroutines do not disturb the count.
func healthProberStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, mark := range []string{"georoute.(*healthChecker)", "net/http.(*persistConn)", "net/http.(*Transport).dialConn", "net/http.(*Transport).roundTrip"} {
			if strings.Contains(g, mark) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// healthExpectNoProbers waits (bounded) until no more prober goroutines run
// than before the test did.
func healthExpectNoProbers(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		now := healthProberStacks()
		if len(now) <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d prober goroutines left (%d before):\n%s", len(now), before, strings.Join(now, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHealthProbe(t *testing.T) {
	ca := healthTestCA(t)
	// Generous, so that a loaded machine running -race does not turn a quick
	// answer into a timeout; the two cases that wait for it cost 2s.
	const timeout = time.Second

	tests := []struct {
		name    string
		url     func(t *testing.T) string
		roots   *x509.CertPool
		wantOK  bool
		wantWhy string        // substring of the reason; "" checks nothing
		atLeast time.Duration // the probe may not give up before this
		within  time.Duration // nor take longer than this
	}{
		{
			name:   "200 is healthy",
			url:    func(t *testing.T) string { return healthHTTPServer(t, healthStatus(http.StatusOK)).URL + "/healthz" },
			wantOK: true, within: timeout,
		},
		{
			name:   "204 is healthy",
			url:    func(t *testing.T) string { return healthHTTPServer(t, healthStatus(http.StatusNoContent)).URL },
			wantOK: true, within: timeout,
		},
		{
			name:    "503 is down",
			url:     func(t *testing.T) string { return healthHTTPServer(t, healthStatus(http.StatusServiceUnavailable)).URL },
			wantWhy: "503", within: timeout,
		},
		{
			name:    "404 is down",
			url:     func(t *testing.T) string { return healthHTTPServer(t, healthStatus(http.StatusNotFound)).URL },
			wantWhy: "404", within: timeout,
		},
		{
			name: "a hanging backend is down at timeout",
			url: func(t *testing.T) string {
				addr, _ := healthRawServer(t, healthHang)
				return "http://" + addr + "/healthz"
			},
			wantWhy: "timeout", atLeast: timeout, within: timeout + time.Second,
		},
		{
			name: "response headers beyond the cap are down, unread",
			url: func(t *testing.T) string {
				addr, _ := healthRawServer(t, healthHugeHeaders)
				return "http://" + addr + "/healthz"
			},
			wantWhy: "headers exceeded", within: timeout,
		},
		{
			name: "a reset connection is down",
			url: func(t *testing.T) string {
				addr, _ := healthRawServer(t, healthReset)
				return "http://" + addr + "/healthz"
			},
			within: timeout,
		},
		{
			name: "a backend answering after timeout is down",
			url: func(t *testing.T) string {
				return healthHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-time.After(2 * timeout):
					case <-r.Context().Done():
					}
					w.WriteHeader(http.StatusOK)
				}).URL
			},
			wantWhy: "timeout", atLeast: timeout, within: timeout + time.Second,
		},
		{
			name: "an endless body is read for 64 KiB only and is healthy",
			url: func(t *testing.T) string {
				return healthHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusOK)
					chunk := make([]byte, 16<<10)
					for r.Context().Err() == nil {
						if _, err := w.Write(chunk); err != nil {
							return
						}
					}
				}).URL
			},
			wantOK: true, within: timeout,
		},
		{
			name:   "tcp to an open port is healthy",
			url:    func(t *testing.T) string { addr, _ := healthRawServer(t, healthHang); return "tcp://" + addr },
			wantOK: true, within: timeout,
		},
		{
			name:    "tcp to a closed port is down",
			url:     func(t *testing.T) string { return "tcp://" + healthClosedPort(t) },
			wantWhy: "refused", within: timeout,
		},
		{
			name: "https to localhost verifies against ca",
			url: func(t *testing.T) string {
				return strings.Replace(healthTLSServer(t, "server").URL, "127.0.0.1", "localhost", 1)
			},
			roots: ca, wantOK: true, within: timeout,
		},
		{
			name:  "https to 127.0.0.1 verifies against ca when the certificate has that IP SAN",
			url:   func(t *testing.T) string { return healthTLSServer(t, "server").URL },
			roots: ca, wantOK: true, within: timeout,
		},
		{
			name: "https to localhost with a localhost-only certificate is healthy",
			url: func(t *testing.T) string {
				return strings.Replace(healthTLSServer(t, "localhost-only").URL, "127.0.0.1", "localhost", 1)
			},
			roots: ca, wantOK: true, within: timeout,
		},
		{
			name:  "https to 127.0.0.1 is down when the certificate lacks that IP SAN",
			url:   func(t *testing.T) string { return healthTLSServer(t, "localhost-only").URL },
			roots: ca, wantWhy: "IP SAN", within: timeout,
		},
		{
			name: "https without ca is down",
			url: func(t *testing.T) string {
				return strings.Replace(healthTLSServer(t, "server").URL, "127.0.0.1", "localhost", 1)
			},
			wantWhy: "unknown authority", within: timeout,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(healthProberStacks())
			cfg := healthTestConfig(timeout)
			cfg.roots = tc.roots
			ok, why, took := healthProbe(cfg, tc.url(t))
			if ok != tc.wantOK {
				t.Fatalf("healthy = %v (%q), want %v", ok, why, tc.wantOK)
			}
			if !ok && why == "" {
				t.Error("a failed probe gave no reason")
			}
			if !strings.Contains(why, tc.wantWhy) {
				t.Errorf("reason %q, want it to contain %q", why, tc.wantWhy)
			}
			if took < tc.atLeast || took > tc.within {
				t.Errorf("probe took %s, want %s..%s", took, tc.atLeast, tc.within)
			}
			healthExpectNoProbers(t, before)
		})
	}
}

func TestHealthProbeRedirectIsDownAndNotFollowed(t *testing.T) {
	var followed atomic.Int32
	target := healthHTTPServer(t, func(w http.ResponseWriter, _ *http.Request) {
		followed.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	redirect := healthHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/healthz", http.StatusFound)
	})
	ok, why, _ := healthProbe(healthTestConfig(time.Second), redirect.URL)
	if ok || why != "302" {
		t.Errorf("healthy = %v (%q), want down with 302", ok, why)
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

func TestHealthTargets(t *testing.T) {
	cfg := defaultHealthConfig()
	cfg.template = "http://{address}:8080/healthz"
	own := healthPop("lhr", "https://lhr.example/health", "198.51.100.10", "2001:db8:2::10")
	templated := healthPop("nyc", "", "192.0.2.10", "2001:db8:1::10")
	hc := newHealthChecker(cfg, []*pop{own, templated})

	type want struct {
		url   string
		addrs []string
	}
	wants := []want{
		{"https://lhr.example/health", []string{"198.51.100.10", "2001:db8:2::10"}},
		{"http://192.0.2.10:8080/healthz", []string{"192.0.2.10"}},
		{"http://[2001:db8:1::10]:8080/healthz", []string{"2001:db8:1::10"}},
	}
	if len(hc.targets) != len(wants) {
		t.Fatalf("%d targets, want %d", len(hc.targets), len(wants))
	}
	for i, w := range wants {
		tg := hc.targets[i]
		var addrs []string
		for _, a := range tg.addrs {
			addrs = append(addrs, a.addr.String())
		}
		if tg.url != w.url || strings.Join(addrs, " ") != strings.Join(w.addrs, " ") {
			t.Errorf("target %d = %s for %v, want %s for %v", i, tg.url, addrs, w.url, w.addrs)
		}
	}

	t.Run("without any check there are no targets", func(t *testing.T) {
		hc := newHealthChecker(defaultHealthConfig(), []*pop{healthPop("nyc", "", "192.0.2.10")})
		if len(hc.targets) != 0 {
			t.Errorf("%d targets, want none", len(hc.targets))
		}
	})
}

// healthGauge reads the pop_healthy series of one address.
func healthGauge(t *testing.T, popID, addr string) float64 {
	t.Helper()
	var m dto.Metric
	if err := popHealthy.WithLabelValues(popID, addr).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// healthStart starts hc and waits (bounded) for its first round.
func healthStart(t *testing.T, hc *healthChecker) {
	t.Helper()
	done := make(chan struct{})
	hc.start(func() { close(done) })
	t.Cleanup(hc.stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the first round did not finish within 5s")
	}
}

func TestHealthTemplateProbesIPv6InBrackets(t *testing.T) {
	var mu sync.Mutex
	hosts := map[string]bool{}
	h := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts[r.Host] = true
		mu.Unlock()
	}
	l4, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l4.Addr().(*net.TCPAddr).Port
	l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port))
	if err != nil {
		l4.Close()
		t.Skipf("no IPv6 loopback on port %d: %v", port, err)
	}
	for _, l := range []net.Listener{l4, l6} {
		srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(h)}}
		srv.Start()
		t.Cleanup(srv.Close)
	}

	cfg := healthTestConfig(time.Second)
	cfg.template = fmt.Sprintf("http://{address}:%d/healthz", port)
	// Template addresses must be the pop's: loopback here, so that they reach
	// the test's servers.
	p := healthPop("lo", "", "127.0.0.1", "::1")
	healthStart(t, newHealthChecker(cfg, []*pop{p}))

	for _, a := range p.addrs {
		if !a.healthy() {
			t.Errorf("%s is down, want up", a.addr)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, host := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port)} {
		if !hosts[host] {
			t.Errorf("no probe with Host %s; got %v", host, hosts)
		}
	}
}

func TestHealthPopCheckAppliesToEveryAddress(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusServiceUnavailable)
	srv := healthHTTPServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(code.Load())) })
	cfg := healthTestConfig(100 * time.Millisecond)
	cfg.interval, cfg.rise = 200*time.Millisecond, 1
	// The template must not add probes for a pop that has its own check.
	cfg.template = "tcp://{address}:9"
	p := healthPop("popcheck", srv.URL+"/health", "198.51.100.20", "2001:db8:2::20", "198.51.100.21")
	hc := newHealthChecker(cfg, []*pop{p})
	if len(hc.targets) != 1 {
		t.Fatalf("%d targets, want 1 for the pop's own check", len(hc.targets))
	}
	healthStart(t, hc)

	for _, a := range p.addrs {
		if a.healthy() {
			t.Errorf("%s is up after a 503, want down like its pop", a.addr)
		}
		if v := healthGauge(t, "popcheck", a.addr.String()); v != 0 {
			t.Errorf("pop_healthy{pop=popcheck,address=%s} = %v, want 0", a.addr, v)
		}
	}

	code.Store(http.StatusOK)
	deadline := time.Now().Add(3 * time.Second)
	for !p.addrs[0].healthy() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, a := range p.addrs {
		if !a.healthy() {
			t.Errorf("%s is down after the pop's check passed, want up", a.addr)
		}
		if v := healthGauge(t, "popcheck", a.addr.String()); v != 1 {
			t.Errorf("pop_healthy{pop=popcheck,address=%s} = %v, want 1", a.addr, v)
		}
	}
}

func TestHealthFirstRoundAppliesDirectlyThenHysteresis(t *testing.T) {
	var (
		code atomic.Int32
		mu   sync.Mutex
		seen []time.Time
	)
	code.Store(http.StatusServiceUnavailable)
	srv := healthHTTPServer(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		seen = append(seen, time.Now())
		mu.Unlock()
		w.WriteHeader(int(code.Load()))
	})
	probes := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	const interval = 250 * time.Millisecond
	cfg := healthTestConfig(200 * time.Millisecond)
	cfg.interval, cfg.rise, cfg.fall = interval, 2, 3
	p := healthPop("hyst", srv.URL, "198.51.100.30")
	a := p.addrs[0]
	probesRun := func() float64 {
		var n float64
		for _, result := range []string{"ok", "fail"} {
			var m dto.Metric
			if err := healthcheckCount.WithLabelValues("hyst", result).Write(&m); err != nil {
				t.Fatal(err)
			}
			n += m.GetCounter().GetValue()
		}
		return n
	}
	ranBefore := probesRun()
	healthStart(t, newHealthChecker(cfg, []*pop{p}))

	// One failure, though fall is 3: the first result takes effect directly.
	if a.healthy() {
		t.Fatal("up after a failed first round, want down at once")
	}
	if n := probes(); n != 1 {
		t.Errorf("%d probes in the first round, want 1", n)
	}

	// Back after rise successes, not after one.
	code.Store(http.StatusOK)
	from := probes()
	waitFor := func(want bool) int {
		t.Helper()
		deadline := time.Now().Add(20 * interval)
		for a.healthy() != want {
			if time.Now().After(deadline) {
				t.Fatalf("healthy did not become %v within %s", want, 20*interval)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return probes()
	}
	if n := waitFor(true) - from; n < cfg.rise {
		t.Errorf("up after %d successes, want %d", n, cfg.rise)
	}

	code.Store(http.StatusServiceUnavailable)
	from = probes()
	if n := waitFor(false) - from; n < cfg.fall {
		t.Errorf("down after %d failures, want %d", n, cfg.fall)
	}

	// Two probes of one target are never more than one interval apart (plus
	// scheduling slack). The gaps are measured at the server, so they only
	// say something when every probe reached it: on a loaded machine one may
	// time out before it is accepted.
	ran := probesRun() - ranBefore
	mu.Lock()
	defer mu.Unlock()
	if int(ran) > len(seen) {
		t.Logf("%v probes ran, %d reached the server: gaps not checked", ran, len(seen))
		return
	}
	for i := 1; i < len(seen); i++ {
		if gap := seen[i].Sub(seen[i-1]); gap > interval+250*time.Millisecond {
			t.Errorf("probes %d and %d are %s apart, want at most %s", i-1, i, gap, interval)
		}
	}
}

func TestHealthStartReportsReadyAfterFirstRound(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	srv := healthHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	db, err := filepath.Abs(filepath.Join("testdata", "geo.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	c := caddy.NewTestController("dns", fmt.Sprintf(`georoute example.org {
		db %s
		pop lhr 51.47 -0.45 198.51.100.10 {
			check %s/slow
		}
		pop nyc 40.71 -74.01 192.0.2.10 {
			check %s/down
		}
		interval 10s
		timeout 5s
		fall 3
	}`, db, srv.URL, srv.URL))
	g, err := load(c)
	if err != nil {
		t.Fatal(err)
	}
	if g.Ready() {
		t.Fatal("ready before start")
	}
	if err := g.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.stop() })

	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the first probe did not arrive within 5s")
	}
	// The lhr probe is held by the backend: the first round is not done.
	time.Sleep(50 * time.Millisecond)
	if g.Ready() {
		t.Fatal("ready while a probe of the first round is in flight")
	}
	releaseOnce.Do(func() { close(release) })
	deadline := time.Now().Add(3 * time.Second)
	for !g.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("not ready within 3s after the first round finished")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Results of the first round apply as soon as ready is reported.
	if !g.byAddr[netip.MustParseAddr("198.51.100.10")].healthy() {
		t.Error("lhr down after its check passed")
	}
	if g.byAddr[netip.MustParseAddr("192.0.2.10")].healthy() {
		t.Error("nyc up after its first check failed (fall 3 must not delay the first result)")
	}
}

func TestHealthStopEndsProbeInFlight(t *testing.T) {
	before := len(healthProberStacks())
	addr, accepted := healthRawServer(t, healthHang)
	cfg := healthTestConfig(5 * time.Second)
	// An http probe that hangs and a tcp probe that connects at once: stop
	// must end the hanging one and the idle prober of the other.
	pops := []*pop{
		healthPop("hang", "http://"+addr+"/healthz", "198.51.100.40"),
		healthPop("hangtcp", "tcp://"+addr, "198.51.100.41"),
	}
	hc := newHealthChecker(cfg, pops)
	var ready atomic.Bool
	hc.start(func() { ready.Store(true) })

	for range len(pops) {
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			hc.stop()
			t.Fatal("the probes did not reach the hanging server within 5s")
		}
	}
	time.Sleep(50 * time.Millisecond)
	if ready.Load() {
		t.Error("ready while a probe of the first round hangs")
	}
	begin := time.Now()
	stopped := make(chan struct{})
	go func() { hc.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("stop did not return within 2s with a probe in flight (timeout is 5s)")
	}
	if took := time.Since(begin); took > time.Second {
		t.Errorf("stop took %s, want it to cancel the probe in flight", took)
	}
	healthExpectNoProbers(t, before)
	// A second stop is harmless.
	hc.stop()
}

func TestHealthStopWithoutTargets(t *testing.T) {
	hc := newHealthChecker(defaultHealthConfig(), []*pop{healthPop("none", "", "192.0.2.50")})
	done := make(chan struct{})
	hc.start(func() { close(done) })
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("without targets the first round must be done at once")
	}
	hc.stop()
}
