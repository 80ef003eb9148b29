package georoute

import (
	"math"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/caddy/caddyfile"
)

// FuzzParse feeds arbitrary Corefile text to parse. Whatever the input, parse
// must not panic, and it returns either an error that names the file and line,
// or a GeoRoute that keeps every promise of design §2.
func FuzzParse(f *testing.F) {
	// Relative paths, so that mutations of the seeds stay meaningful; the
	// fuzz target runs in the repository root.
	paths := corefilePaths{
		db:      "testdata/geo.mmdb",
		flat:    "testdata/geo-flat-v4.mmdb",
		text:    "testdata/geo.csv",
		missing: "testdata/no-such-file.mmdb",
		pem:     testCAFile(f, "testdata/tls/ca.pem"),
	}
	for _, tc := range validCorefiles() {
		f.Add(paths.expand(tc.input))
	}
	for _, tc := range invalidCorefiles() {
		f.Add(paths.expand(tc.input))
	}

	f.Fuzz(func(t *testing.T, input string) {
		// Reading a device such as /dev/zero or /dev/stdin as a database or CA
		// would never end; that is the operator's choice, not a parser bug.
		for _, special := range []string{"/dev", "/proc", "/sys"} {
			if strings.Contains(input, special) {
				t.Skip()
			}
		}
		// CoreDNS hands setup the tokens of the directive, so the first one
		// is always georoute; anything else is not an input parse can get.
		d := caddyfile.NewDispenser("Testfile", strings.NewReader(input))
		if !d.Next() || d.Val() != pluginName {
			t.Skip()
		}
		c := caddy.NewTestController("dns", input)
		c.ServerBlockKeys = []string{"dns://example.org.:53"}
		g, err := load(c)
		if err != nil {
			if g != nil {
				t.Errorf("parse returned %v together with error %v", g, err)
			}
			if !strings.HasPrefix(err.Error(), "Testfile:") {
				t.Errorf("error %q does not name the file and line", err)
			}
			return
		}
		checkParsedGeoRoute(t, g)
	})
}

// checkParsedGeoRoute asserts what every accepted georoute block guarantees.
func checkParsedGeoRoute(t *testing.T, g *GeoRoute) {
	t.Helper()
	if g == nil {
		t.Fatal("parse returned neither a GeoRoute nor an error")
	}
	if g.db == nil || len(g.db.sources) == 0 {
		t.Fatal("accepted without a db")
	}
	for _, s := range g.db.sources {
		if s.current.Load() == nil {
			t.Errorf("db %s accepted but not loaded", s.path)
		}
	}
	if g.answers < 1 {
		t.Errorf("answers %d, want at least 1", g.answers)
	}
	if g.health == nil {
		t.Fatal("no health checker")
	}
	hc := g.health.cfg
	if hc.interval <= 0 || hc.timeout <= 0 || hc.timeout >= hc.interval {
		t.Errorf("interval %s timeout %s, want 0 < timeout < interval", hc.interval, hc.timeout)
	}
	if hc.rise < 1 || hc.fall < 1 {
		t.Errorf("rise %d fall %d, want both at least 1", hc.rise, hc.fall)
	}
	if hc.template != "" && !strings.Contains(hc.template, "{address}") {
		t.Errorf("template %q without {address}", hc.template)
	}
	if !g.fallback.all && !validDegrees(g.fallback.lat, g.fallback.lon) {
		t.Errorf("fallback at %v,%v", g.fallback.lat, g.fallback.lon)
	}
	if g.ecs.off && len(g.ecs.trusted) > 0 {
		t.Errorf("ecs both off and trusting %v", g.ecs.trusted)
	}
	for _, n := range g.ecs.trusted {
		if !n.IsValid() || n != n.Masked() {
			t.Errorf("ecs trusts %v, want a valid masked network", n)
		}
	}

	ids := map[string]bool{}
	addrs := 0
	for i, p := range g.pops {
		if !popID.MatchString(p.id) || ids[p.id] {
			t.Errorf("pop id %q bad or repeated", p.id)
		}
		ids[p.id] = true
		if p.rank != i {
			t.Errorf("pop %s rank %d, want %d", p.id, p.rank, i)
		}
		if !validDegrees(p.lat, p.lon) {
			t.Errorf("pop %s at %v,%v", p.id, p.lat, p.lon)
		}
		if len(p.addrs) == 0 {
			t.Errorf("pop %s without addresses", p.id)
		}
		if p.check != "" && (strings.Contains(p.check, "{address}") || validateCheckURL(p.check) != nil) {
			t.Errorf("pop %s check %q accepted", p.id, p.check)
		}
		for _, a := range p.addrs {
			addrs++
			if !a.addr.IsValid() || a.addr.Zone() != "" || a.addr.Is4In6() {
				t.Errorf("pop %s address %v, want a plain IPv4 or IPv6 address", p.id, a.addr)
			}
			if g.byAddr[a.addr] != a || a.pop != p {
				t.Errorf("pop %s address %v not indexed to it", p.id, a.addr)
			}
		}
	}
	if len(g.byAddr) != addrs {
		t.Errorf("byAddr holds %d addresses, pops list %d: an address is in two pops or twice in one", len(g.byAddr), addrs)
	}
	for _, tg := range g.health.targets {
		if err := validateCheckURL(tg.url); err != nil {
			t.Errorf("probe target %q of pop %s: %v", tg.url, tg.pop.id, err)
		}
	}
}

func validDegrees(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}
