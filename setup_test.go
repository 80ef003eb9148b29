package georoute

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/cache"
)

// corefilePaths are the files a test Corefile names through the
// placeholders $DB, $FLAT, $TEXT, $NOFILE and $PEM.
type corefilePaths struct {
	db      string // the bundled City-layout test database
	flat    string // the bundled flat (DB-IP) IPv4 test database
	text    string // a readable file that is neither an MMDB nor PEM
	missing string // a path where no file exists
	pem     string // a PEM bundle with one CA certificate
}

// absCorefilePaths points every placeholder at an absolute path below the
// repository root, which is the working directory of `go test`.
func absCorefilePaths(t testing.TB) corefilePaths {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return corefilePaths{
		db:      filepath.Join(wd, "testdata", "geo.mmdb"),
		flat:    filepath.Join(wd, "testdata", "geo-flat-v4.mmdb"),
		text:    filepath.Join(wd, "testdata", "geo.csv"),
		missing: filepath.Join(wd, "testdata", "no-such-file.mmdb"),
		pem:     testCAFile(t, filepath.Join(wd, "testdata", "tls", "ca.pem")),
	}
}

func (p corefilePaths) expand(corefile string) string {
	return strings.NewReplacer(
		"$DB", p.db, "$FLAT", p.flat, "$TEXT", p.text, "$NOFILE", p.missing, "$PEM", p.pem,
	).Replace(corefile)
}

// testCAFile returns bundled when it exists, or else the path of a fresh
// self-signed CA certificate written to a temporary directory.
func testCAFile(t testing.TB, bundled string) string {
	t.Helper()
	if _, err := os.Stat(bundled); err == nil {
		return bundled
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "georoute setup test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// validCorefile is a georoute block that must parse, and what it must give.
type validCorefile struct {
	name  string
	keys  []string // server block keys; none when nil
	root  string   // the server's root directive; none when empty
	input string
	check func(t *testing.T, g *GeoRoute, p corefilePaths)
}

func validCorefiles() []validCorefile {
	return []validCorefile{
		{
			name:  "a block with only db gets every default",
			input: "georoute {\n\tdb $DB\n}",
			check: func(t *testing.T, g *GeoRoute, p corefilePaths) {
				if g.answers != 1 || g.ttl != 30 {
					t.Errorf("answers %d ttl %d, want 1 and 30", g.answers, g.ttl)
				}
				if g.ecs.off || g.ecs.trusted != nil {
					t.Errorf("ecs %+v, want on", g.ecs)
				}
				if !g.fallback.all {
					t.Errorf("fallback %+v, want all", g.fallback)
				}
				wantHealth(t, g, healthConfig{interval: 10 * time.Second, timeout: 2 * time.Second, rise: 2, fall: 3})
				if len(g.pops) != 0 || len(g.byAddr) != 0 || len(g.health.targets) != 0 {
					t.Errorf("pops %d, addresses %d, targets %d; want none", len(g.pops), len(g.byAddr), len(g.health.targets))
				}
				wantDBPaths(t, g, p.db)
				if g.blockFile != "Testfile" || g.blockLine != 1 {
					t.Errorf("block at %s:%d, want Testfile:1", g.blockFile, g.blockLine)
				}
			},
		},
		{
			name:  "debug without networks is loopback, with them exactly those; reload sets the poll",
			input: "georoute {\n\tdb $DB\n\tdebug 192.0.2.0/24 ::ffff:198.51.100.0/120\n\treload 1s\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}
				if !slices.Equal(g.debug, want) || g.reload != time.Second {
					t.Errorf("debug %v reload %v, want %v and 1s", g.debug, g.reload, want)
				}
			},
		},
		{
			name:  "bare debug is loopback only; reload defaults to 5s",
			input: "georoute {\n\tdb $DB\n\tdebug\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if !slices.Equal(g.debug, loopback) || g.reload != 5*time.Second {
					t.Errorf("debug %v reload %v, want loopback and 5s", g.debug, g.reload)
				}
			},
		},
		{
			name:  "the block's line is the georoute line, after comments and blank lines",
			input: "# leading comment\n\ngeoroute {\n\tdb $DB\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if g.blockLine != 3 {
					t.Errorf("blockLine %d, want 3", g.blockLine)
				}
			},
		},
		{
			name:  "NAME arguments are the zones, normalized and fully qualified",
			keys:  []string{"dns://example.org.:1053"},
			input: "georoute WWW.Example.org mixed.example.org. {\n\tdb $DB\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				wantZones(t, g, "www.example.org.", "mixed.example.org.")
			},
		},
		{
			name:  "without NAME the server block keys are the zones",
			keys:  []string{"dns://example.org.:1053", "dns://example.net.:1053"},
			input: "georoute {\n\tdb $DB\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				wantZones(t, g, "example.org.", "example.net.")
			},
		},
		{
			name:  "several db paths are all loaded, in order",
			input: "georoute {\n\tdb $DB $FLAT\n}",
			check: func(t *testing.T, g *GeoRoute, p corefilePaths) {
				wantDBPaths(t, g, p.db, p.flat)
			},
		},
		{
			name:  "a relative db path is joined to the server's root",
			root:  "testdata",
			input: "georoute {\n\tdb geo-flat-v4.mmdb\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				wantDBPaths(t, g, filepath.Join("testdata", "geo-flat-v4.mmdb"))
			},
		},
		{
			name: "pops keep IPv4 and IPv6 addresses, coordinates and declaration order",
			input: `georoute {
	db $DB
	pop fra 50.1109 8.6821 192.0.2.10 2001:db8:1::10
	pop nrt-2 -35.5 -140.25 198.51.100.10 ::ffff:203.0.113.10
}`,
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if len(g.pops) != 2 {
					t.Fatalf("%d pops, want 2", len(g.pops))
				}
				fra, nrt := g.pops[0], g.pops[1]
				if fra.id != "fra" || fra.lat != 50.1109 || fra.lon != 8.6821 || fra.rank != 0 || fra.line != 3 {
					t.Errorf("fra = %+v", fra)
				}
				if nrt.id != "nrt-2" || nrt.lat != -35.5 || nrt.lon != -140.25 || nrt.rank != 1 || nrt.line != 4 {
					t.Errorf("nrt-2 = %+v", nrt)
				}
				if fra.at != pointAt(50.1109, 8.6821) {
					t.Errorf("fra.at %v, want pointAt(50.1109, 8.6821)", fra.at)
				}
				wantAddrs(t, fra, "192.0.2.10", "2001:db8:1::10")
				// An IPv4-mapped address is the IPv4 address.
				wantAddrs(t, nrt, "198.51.100.10", "203.0.113.10")
				if len(g.byAddr) != 4 {
					t.Errorf("byAddr holds %d addresses, want 4", len(g.byAddr))
				}
				for _, p := range g.pops {
					for _, a := range p.addrs {
						if g.byAddr[a.addr] != a || a.pop != p || !a.healthy() {
							t.Errorf("address %s not indexed to pop %s, or not healthy at start", a.addr, p.id)
						}
					}
				}
				if len(g.health.targets) != 0 {
					t.Errorf("%d probe targets without any check, want 0", len(g.health.targets))
				}
			},
		},
		{
			name: "a check inside a pop block probes the whole pop once",
			input: `georoute {
	db $DB
	pop fra 50.1 8.6 192.0.2.10 2001:db8:1::10 {
		check http://fra.example.net:8080/healthz
	}
	pop lhr 51.5 -0.1 198.51.100.10 {
		check tcp://lhr.example.net:443
	}
	pop nyc 40.7 -74 203.0.113.10
}`,
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if len(g.pops) != 3 {
					t.Fatalf("%d pops, want 3", len(g.pops))
				}
				if g.pops[0].check != "http://fra.example.net:8080/healthz" || g.pops[1].check != "tcp://lhr.example.net:443" || g.pops[2].check != "" {
					t.Errorf("checks %q %q %q", g.pops[0].check, g.pops[1].check, g.pops[2].check)
				}
				wantTargets(t, g, "http://fra.example.net:8080/healthz", "tcp://lhr.example.net:443")
				if got := len(g.health.targets[0].addrs); got != 2 {
					t.Errorf("fra's probe covers %d addresses, want 2", got)
				}
			},
		},
		{
			name: "a top-level check is one probe per address, IPv6 in brackets",
			input: `georoute {
	db $DB
	check http://{address}:8080/healthz
	pop fra 50.1 8.6 192.0.2.10 2001:db8:1::10
	pop lhr 51.5 -0.1 198.51.100.10 {
		check https://lhr.example.net/healthz
	}
}`,
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if g.health.cfg.template != "http://{address}:8080/healthz" {
					t.Errorf("template %q", g.health.cfg.template)
				}
				wantTargets(t, g,
					"http://192.0.2.10:8080/healthz",
					"http://[2001:db8:1::10]:8080/healthz",
					"https://lhr.example.net/healthz")
			},
		},
		{
			name:  "a top-level tcp check template is accepted",
			input: "georoute {\n\tdb $DB\n\tcheck tcp://{address}:443\n\tpop fra 50.1 8.6 192.0.2.10\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				wantTargets(t, g, "tcp://192.0.2.10:443")
			},
		},
		{
			name:  "ecs off turns ECS off",
			input: "georoute {\n\tdb $DB\n\tecs off\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if !g.ecs.off || g.ecs.trusted != nil {
					t.Errorf("ecs %+v, want off", g.ecs)
				}
			},
		},
		{
			name:  "ecs on is the default spelled out",
			input: "georoute {\n\tdb $DB\n\tecs on\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if g.ecs.off || g.ecs.trusted != nil {
					t.Errorf("ecs %+v, want on", g.ecs)
				}
			},
		},
		{
			name:  "ecs trust keeps the resolver networks, masked",
			input: "georoute {\n\tdb $DB\n\tecs trust 192.0.2.0/24 2001:db8::/32 198.51.100.7/24\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				want := []netip.Prefix{
					netip.MustParsePrefix("192.0.2.0/24"),
					netip.MustParsePrefix("2001:db8::/32"),
					netip.MustParsePrefix("198.51.100.0/24"),
				}
				if g.ecs.off || !slices.Equal(g.ecs.trusted, want) {
					t.Errorf("ecs %+v, want trust %v", g.ecs, want)
				}
			},
		},
		{
			name:  "ecs trust of an IPv4-mapped network trusts the IPv4 resolvers in it",
			input: "georoute {\n\tdb $DB\n\tecs trust ::ffff:127.0.0.0/104\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}; !slices.Equal(g.ecs.trusted, want) {
					t.Errorf("trust %v, want %v", g.ecs.trusted, want)
				}
				if !g.ecs.honours(netip.MustParseAddr("127.0.0.1")) {
					t.Error("127.0.0.1 is not trusted")
				}
			},
		},
		{
			name:  "fallback LAT LON puts unlocated clients there",
			input: "georoute {\n\tdb $DB\n\tfallback 50.1 8.6\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				f := g.fallback
				if f.all || f.lat != 50.1 || f.lon != 8.6 || f.at != pointAt(50.1, 8.6) {
					t.Errorf("fallback %+v, want 50.1 8.6", f)
				}
			},
		},
		{
			name:  "fallback all is the default spelled out",
			input: "georoute {\n\tdb $DB\n\tfallback all\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if !g.fallback.all {
					t.Errorf("fallback %+v, want all", g.fallback)
				}
			},
		},
		{
			name:  "ca loads a PEM bundle for https probes",
			input: "georoute {\n\tdb $DB\n\tca $PEM\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if g.health.cfg.roots == nil {
					t.Error("roots nil, want the PEM bundle")
				}
			},
		},
		{
			name: "every property set at once",
			input: `georoute example.org {
	db $DB
	check https://{address}/healthz
	interval 30s
	timeout 29s
	rise 1
	fall 7
	answers 2
	ttl 0
	ecs trust 192.0.2.0/24
	fallback -33.9 151.2
	ca $PEM
	pop syd -33.9 151.2 192.0.2.1
}`,
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				if g.answers != 2 || g.ttl != 0 {
					t.Errorf("answers %d ttl %d, want 2 and 0", g.answers, g.ttl)
				}
				wantHealth(t, g, healthConfig{template: "https://{address}/healthz", interval: 30 * time.Second, timeout: 29 * time.Second, rise: 1, fall: 7})
				if g.health.cfg.roots == nil {
					t.Error("roots nil, want the PEM bundle")
				}
				if g.fallback.all || g.fallback.lat != -33.9 || g.fallback.lon != 151.2 {
					t.Errorf("fallback %+v", g.fallback)
				}
			},
		},
		{
			name:  "interval alone may be longer than the default",
			input: "georoute {\n\tdb $DB\n\tinterval 1m30s\n}",
			check: func(t *testing.T, g *GeoRoute, _ corefilePaths) {
				wantHealth(t, g, healthConfig{interval: 90 * time.Second, timeout: 2 * time.Second, rise: 2, fall: 3})
			},
		},
	}
}

// invalidCorefile is a georoute block that must be refused with an error
// that names the line and says what is wrong.
type invalidCorefile struct {
	name  string
	input string
	line  int      // the line the error must name
	want  []string // fragments the error must contain
}

func invalidCorefiles() []invalidCorefile {
	return []invalidCorefile{
		// The block as a whole.
		{"an unknown property is refused", "georoute {\n\tdb $DB\n\tanswer 2\n}", 3, []string{`unknown property "answer"`, "expected one of db, pop"}},
		{"a block without db names the georoute line", "# demo\ngeoroute example.org {\n\tttl 10\n}", 2, []string{"missing db", "expected db PATH"}},
		{"a bare georoute line has no db", "georoute", 1, []string{"missing db"}},
		{"georoute twice in one server block is refused", "georoute {\n\tdb $DB\n}\ngeoroute {\n\tdb $DB\n}", 4, []string{"only once per server block"}},
		{"a property given twice is refused", "georoute {\n\tdb $DB\n\tttl 10\n\tttl 20\n}", 4, []string{`"ttl" given twice`}},
		{"db given twice is refused", "georoute {\n\tdb $DB\n\tdb $FLAT\n}", 3, []string{`"db" given twice`}},
		{"two top-level checks are refused", "georoute {\n\tdb $DB\n\tcheck http://{address}/\n\tcheck tcp://{address}:80\n}", 4, []string{`"check" given twice`}},

		// debug and reload.
		{"debug with host bits is refused", "georoute {\n\tdb $DB\n\tdebug 10.0.0.1/8\n}", 3, []string{`debug "10.0.0.1/8"`, "host bits", "10.0.0.0/8"}},
		{"debug with something not a CIDR is refused", "georoute {\n\tdb $DB\n\tdebug everyone\n}", 3, []string{`debug "everyone"`, "not a CIDR"}},
		{"reload 0s is refused", "georoute {\n\tdb $DB\n\treload 0s\n}", 3, []string{`reload "0s"`, "positive duration"}},
		{"a typo after db costs no database load and names its line", "georoute {\n\tdb $NOFILE\n\tanwsers 2\n}", 3, []string{`unknown property "anwsers"`}},

		// db.
		{"db without a path is refused", "georoute {\n\tdb\n}", 2, []string{"db needs at least one PATH"}},
		{"a missing db file is refused", "georoute {\n\tdb $NOFILE\n}", 2, []string{"db:", "no-such-file.mmdb", "no such file"}},
		{"a missing second db file is refused", "georoute {\n\tdb $DB $NOFILE\n}", 2, []string{"db:", "no such file"}},
		{"a db that is not an MMDB is refused", "georoute {\n\tttl 10\n\tdb $TEXT\n}", 3, []string{"db:", "geo.csv"}},

		// pop.
		{"a latitude of 91 is refused", "georoute {\n\tdb $DB\n\tpop fra 91 8.6 192.0.2.1\n}", 3, []string{`latitude "91" out of range`, "-90..90"}},
		{"a latitude of -90.5 is refused", "georoute {\n\tdb $DB\n\tpop fra -90.5 8.6 192.0.2.1\n}", 3, []string{`latitude "-90.5"`, "-90..90"}},
		{"a longitude of -181 is refused", "georoute {\n\tdb $DB\n\tpop fra 50 -181 192.0.2.1\n}", 3, []string{`longitude "-181" out of range`, "-180..180"}},
		{"a longitude of 180.01 is refused", "georoute {\n\tdb $DB\n\tpop fra 50 180.01 192.0.2.1\n}", 3, []string{`longitude "180.01"`, "-180..180"}},
		{"a latitude of NaN is refused", "georoute {\n\tdb $DB\n\tpop fra NaN 8.6 192.0.2.1\n}", 3, []string{`latitude "NaN"`, "decimal degrees"}},
		{"a longitude of NaN is refused", "georoute {\n\tdb $DB\n\tpop fra 50 nan 192.0.2.1\n}", 3, []string{`longitude "nan"`, "decimal degrees"}},
		{"a latitude of Inf is refused", "georoute {\n\tdb $DB\n\tpop fra Inf 8.6 192.0.2.1\n}", 3, []string{`latitude "Inf"`}},
		{"a latitude with a decimal comma is not a number", "georoute {\n\tdb $DB\n\tpop fra 50,0379 8.6 192.0.2.1\n}", 3, []string{`latitude "50,0379" is not a number`, "expected decimal degrees -90..90", "such as 50.0379"}},
		{"a longitude with a decimal comma is not a number", "georoute {\n\tdb $DB\n\tpop fra 50 8,5622 192.0.2.1\n}", 3, []string{`longitude "8,5622" is not a number`, "such as 8.5622"}},
		{"a pop block opened on the next line names the cause", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1\n\t{\n\t\tcheck http://fra.example.net/\n\t}\n}", 4, []string{"'{' must end the line it opens", "pop fra 50 8.6 192.0.2.1 {"}},
		{"a latitude of abc is refused", "georoute {\n\tdb $DB\n\tpop fra abc 8.6 192.0.2.1\n}", 3, []string{`latitude "abc"`, "decimal degrees"}},
		{"a longitude of abc is refused", "georoute {\n\tdb $DB\n\tpop fra 50 abc 192.0.2.1\n}", 3, []string{`longitude "abc"`, "decimal degrees"}},
		{"a pop without an address is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6\n}", 3, []string{"pop needs ID LAT LON ADDRESS", "got 3"}},
		{"a pop with only an id is refused", "georoute {\n\tdb $DB\n\tpop fra\n}", 3, []string{"pop needs ID LAT LON ADDRESS", "got 1"}},
		{"an uppercase pop id is refused", "georoute {\n\tdb $DB\n\tpop FRA 50 8.6 192.0.2.1\n}", 3, []string{`pop id "FRA"`, "lowercase letters, digits and '-'"}},
		{"a pop id with an underscore is refused", "georoute {\n\tdb $DB\n\tpop fra_1 50 8.6 192.0.2.1\n}", 3, []string{`pop id "fra_1"`, "lowercase letters"}},
		{"a duplicate pop id names both lines", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1\n\tpop fra 51 8.6 192.0.2.2\n}", 4, []string{`pop id "fra" already used on line 3`, "unique"}},
		{"an address in two pops is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1\n\tpop lhr 51 0 192.0.2.2 192.0.2.1\n}", 4, []string{`192.0.2.1 already belongs to pop "fra"`, "at most one pop"}},
		{"an IPv6 address in two pops is refused however it is written", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 2001:db8::1\n\tpop lhr 51 0 2001:DB8:0:0::1\n}", 4, []string{`2001:db8::1 already belongs to pop "fra"`}},
		{"an IPv4-mapped address in two pops is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1\n\tpop lhr 51 0 ::ffff:192.0.2.1\n}", 4, []string{`192.0.2.1 already belongs to pop "fra"`}},
		{"an address twice in one pop is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 192.0.2.1\n}", 3, []string{"pop fra lists address 192.0.2.1 twice"}},
		{"a bad IPv4 address is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.300\n}", 3, []string{`pop fra address "192.0.2.300"`, "IPv4 or IPv6"}},
		{"a host name as address is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 fra.example.net\n}", 3, []string{`address "fra.example.net"`}},
		{"a CIDR as address is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.0/24\n}", 3, []string{`address "192.0.2.0/24"`}},
		{"an IPv6 address with a zone is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 fe80::1%eth0\n}", 3, []string{`address "fe80::1%eth0"`}},

		// check.
		{"an ftp check in a pop is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck ftp://fra.example.net/\n\t}\n}", 4, []string{`check "ftp://fra.example.net/"`, `scheme "ftp"`, "expected http, https or tcp"}},
		{"an ftp check template is refused", "georoute {\n\tdb $DB\n\tcheck ftp://{address}/\n}", 3, []string{`scheme "ftp"`}},
		{"a check without scheme is refused", "georoute {\n\tdb $DB\n\tcheck {address}:80\n}", 3, []string{"check"}},
		{"a tcp check without port is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck tcp://fra.example.net\n\t}\n}", 4, []string{"expected tcp://HOST:PORT"}},
		{"a tcp check template without port is refused", "georoute {\n\tdb $DB\n\tcheck tcp://{address}\n}", 3, []string{"expected tcp://HOST:PORT"}},
		{"a tcp check with a path is refused", "georoute {\n\tdb $DB\n\tcheck tcp://{address}:80/healthz\n}", 3, []string{"expected tcp://HOST:PORT"}},
		{"a tcp check with port 65536 is refused", "georoute {\n\tdb $DB\n\tcheck tcp://{address}:65536\n}", 3, []string{`port "65536"`, "1..65535"}},
		{"a tcp check with port 0 is refused", "georoute {\n\tdb $DB\n\tcheck tcp://{address}:0\n}", 3, []string{`port "0"`, "1..65535"}},
		{"an http check without host is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck http:///healthz\n\t}\n}", 4, []string{"no host", "http://HOST"}},
		{"an unparsable check is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck http://[::1/healthz\n\t}\n}", 4, []string{"not a URL", "expected http://, https:// or tcp://HOST:PORT"}},
		{"an unparsable check template is refused", "georoute {\n\tdb $DB\n\tcheck http://{address}/%zz\n}", 3, []string{"not a URL"}},
		{"a check template that breaks for IPv6 pops is refused", "georoute {\n\tdb $DB\n\tcheck http://x{address}/healthz\n\tpop fra 50 8.6 2001:db8::1\n}", 3, []string{`check "http://x{address}/healthz"`}},
		{"a check template without {address} is refused", "georoute {\n\tdb $DB\n\tcheck http://192.0.2.1/healthz\n}", 3, []string{"has no {address}", "expected a URL template"}},
		{"a check template without URL is refused", "georoute {\n\tdb $DB\n\tcheck\n}", 3, []string{"Wrong argument count"}},
		{"a pop check with {address} is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck http://{address}/healthz\n\t}\n}", 4, []string{"{address} only belongs in the top-level template"}},
		{"two checks in a pop are refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck http://a.example.net/\n\t\tcheck http://b.example.net/\n\t}\n}", 5, []string{"pop fra has two checks", "expected one"}},
		{"a pop check without URL is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck\n\t}\n}", 4, []string{"Wrong argument count"}},
		{"an unknown property in a pop block is refused", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tinterval 5s\n\t}\n}", 4, []string{`unknown property "interval" in pop fra`, "expected check"}},
		{"an unclosed pop block names the pop", "georoute {\n\tdb $DB\n\tpop fra 50 8.6 192.0.2.1 {\n\t\tcheck http://fra.example.net/\n", 3, []string{"pop fra block is not closed", "expected '}'"}},

		// interval, timeout, rise, fall.
		{"timeout at interval is refused on the timeout line, timeout first", "georoute {\n\tdb $DB\n\ttimeout 10s\n\tinterval 5s\n}", 3, []string{"timeout 10s is not below interval 5s", "expected timeout < interval"}},
		{"timeout at interval is refused on the timeout line, interval first", "georoute {\n\tdb $DB\n\tinterval 5s\n\ttimeout 5s\n}", 4, []string{"timeout 5s is not below interval 5s"}},
		{"timeout alone at the default interval is refused", "georoute {\n\tdb $DB\n\ttimeout 10s\n}", 3, []string{"timeout 10s is not below interval 10s"}},
		{"interval alone at the default timeout is refused on the interval line", "georoute {\n\tdb $DB\n\tinterval 2s\n}", 3, []string{"timeout 2s is not below interval 2s"}},
		{"an interval of 0s is refused", "georoute {\n\tdb $DB\n\tinterval 0s\n}", 3, []string{`interval "0s"`, "positive duration"}},
		{"an interval of abc is refused", "georoute {\n\tdb $DB\n\tinterval abc\n}", 3, []string{`interval "abc"`, "positive duration"}},
		{"an interval without unit is refused", "georoute {\n\tdb $DB\n\tinterval 10\n}", 3, []string{`interval "10"`}},
		{"a negative timeout is refused", "georoute {\n\tdb $DB\n\ttimeout -1s\n}", 3, []string{`timeout "-1s"`, "positive duration"}},
		{"interval with two values is refused", "georoute {\n\tdb $DB\n\tinterval 5s 10s\n}", 3, []string{"Wrong argument count"}},
		{"rise 0 is refused", "georoute {\n\tdb $DB\n\trise 0\n}", 3, []string{`rise "0"`, "at least 1"}},
		{"fall 0 is refused", "georoute {\n\tdb $DB\n\tfall 0\n}", 3, []string{`fall "0"`, "at least 1"}},
		{"rise x is refused", "georoute {\n\tdb $DB\n\trise x\n}", 3, []string{`rise "x"`}},

		// answers, ttl.
		{"answers 0 is refused", "georoute {\n\tdb $DB\n\tanswers 0\n}", 3, []string{`answers "0"`, "at least 1"}},
		{"answers x is refused", "georoute {\n\tdb $DB\n\tanswers x\n}", 3, []string{`answers "x"`, "whole number"}},
		{"answers without N is refused", "georoute {\n\tdb $DB\n\tanswers\n}", 3, []string{"Wrong argument count"}},
		{"ttl -1 is refused", "georoute {\n\tdb $DB\n\tttl -1\n}", 3, []string{`ttl "-1"`, "0..4294967295"}},
		{"ttl x is refused", "georoute {\n\tdb $DB\n\tttl x\n}", 3, []string{`ttl "x"`, "seconds"}},
		{"ttl beyond 32 bits is refused", "georoute {\n\tdb $DB\n\tttl 4294967296\n}", 3, []string{`ttl "4294967296"`}},
		{"ttl with a unit is refused", "georoute {\n\tdb $DB\n\tttl 30s\n}", 3, []string{`ttl "30s"`}},

		// ecs.
		{"ecs with a bad mode is refused", "georoute {\n\tdb $DB\n\tecs maybe\n}", 3, []string{"ecs maybe", "expected on, off or trust CIDR"}},
		{"ecs without a mode is refused", "georoute {\n\tdb $DB\n\tecs\n}", 3, []string{"ecs needs on, off or trust"}},
		{"ecs on with extra arguments is refused", "georoute {\n\tdb $DB\n\tecs on 192.0.2.0/24\n}", 3, []string{"ecs on 192.0.2.0/24", "expected on, off or trust"}},
		{"ecs trust without CIDR is refused", "georoute {\n\tdb $DB\n\tecs trust\n}", 3, []string{"ecs trust needs at least one CIDR"}},
		{"ecs trust with a bad CIDR is refused", "georoute {\n\tdb $DB\n\tecs trust 192.0.2.0/24 192.0.2.0/33\n}", 3, []string{`ecs trust "192.0.2.0/33" is not a CIDR`}},
		{"ecs trust with a bare address is refused", "georoute {\n\tdb $DB\n\tecs trust 192.0.2.1\n}", 3, []string{`ecs trust "192.0.2.1" is not a CIDR`}},

		// fallback.
		{"fallback with one coordinate is refused", "georoute {\n\tdb $DB\n\tfallback 50.1\n}", 3, []string{"fallback 50.1", "expected all or LAT LON"}},
		{"fallback without arguments is refused", "georoute {\n\tdb $DB\n\tfallback\n}", 3, []string{"expected all or LAT LON"}},
		{"fallback with three arguments is refused", "georoute {\n\tdb $DB\n\tfallback 50.1 8.6 0\n}", 3, []string{"expected all or LAT LON"}},
		{"fallback with a latitude of 91 is refused", "georoute {\n\tdb $DB\n\tfallback 91 8.6\n}", 3, []string{`fallback latitude "91"`, "-90..90"}},
		{"fallback with a longitude of abc is refused", "georoute {\n\tdb $DB\n\tfallback 50.1 abc\n}", 3, []string{`fallback longitude "abc"`, "-180..180"}},
		{"fallback with a NaN longitude is refused", "georoute {\n\tdb $DB\n\tfallback 50.1 NaN\n}", 3, []string{`fallback longitude "NaN"`}},

		// ca.
		{"a missing ca file is refused", "georoute {\n\tdb $DB\n\tca $NOFILE\n}", 3, []string{"ca:", "no such file"}},
		{"a ca file without PEM certificate is refused", "georoute {\n\tdb $DB\n\tca $TEXT\n}", 3, []string{"ca:", "holds no PEM certificate"}},
		{"ca without a path is refused", "georoute {\n\tdb $DB\n\tca\n}", 3, []string{"Wrong argument count"}},
	}
}

// parseTestCorefile parses input as the only georoute block of a server
// block with the given keys and root.
func parseTestCorefile(input string, keys []string, root string) (*GeoRoute, error) {
	c := caddy.NewTestController("dns", input)
	c.ServerBlockKeys = keys
	dnsserver.GetConfig(c).Root = root
	return load(c)
}

func TestParseValidCorefiles(t *testing.T) {
	paths := absCorefilePaths(t)
	for _, tc := range validCorefiles() {
		t.Run(tc.name, func(t *testing.T) {
			g, err := parseTestCorefile(paths.expand(tc.input), tc.keys, tc.root)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if g.health == nil || g.db == nil {
				t.Fatalf("health %v db %v, want both set", g.health, g.db)
			}
			tc.check(t, g, paths)
		})
	}
}

func TestParseRefusesBadCorefiles(t *testing.T) {
	paths := absCorefilePaths(t)
	for _, tc := range invalidCorefiles() {
		t.Run(tc.name, func(t *testing.T) {
			g, err := parseTestCorefile(paths.expand(tc.input), nil, "")
			if err == nil {
				t.Fatalf("parse accepted\n%s", paths.expand(tc.input))
			}
			if g != nil {
				t.Errorf("parse returned %v with the error, want nil", g)
			}
			msg := err.Error()
			if want := fmt.Sprintf("Testfile:%d - ", tc.line); !strings.HasPrefix(msg, want) {
				t.Errorf("error %q does not start with %q", msg, want)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestSetupAddsOneHandler(t *testing.T) {
	paths := absCorefilePaths(t)
	c := caddy.NewTestController("dns", paths.expand("georoute example.org {\n\tdb $DB\n}"))
	if err := setup(c); err != nil {
		t.Fatalf("setup: %v", err)
	}
	if n := len(dnsserver.GetConfig(c).Plugin); n != 1 {
		t.Fatalf("%d plugins after setup, want 1", n)
	}
}

func TestSetupErrorNamesPluginFileAndLine(t *testing.T) {
	paths := absCorefilePaths(t)
	c := caddy.NewTestController("dns", paths.expand("georoute {\n\tdb $DB\n\trise 0\n}"))
	err := setup(c)
	if err == nil {
		t.Fatal("setup accepted rise 0")
	}
	if want := "plugin/georoute: Testfile:3 - Error during parsing: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
	if n := len(dnsserver.GetConfig(c).Plugin); n != 0 {
		t.Errorf("%d plugins after a failed setup, want 0", n)
	}
}

// TestCachePosition builds the server block's handler chain the way CoreDNS
// does (setup, then dnsserver.NewServer, which registers every handler by
// name) with the real cache plugin, under a directive order with georoute
// inserted where a build would put it.
func TestCachePosition(t *testing.T) {
	compiled := dnsserver.Directives
	t.Cleanup(func() { dnsserver.Directives = compiled })
	if slices.Contains(compiled, pluginName) {
		t.Fatalf("georoute already in the compiled directives %v; the test inserts it itself", compiled)
	}
	afterACL := slices.Insert(slices.Clone(compiled), slices.Index(compiled, "acl")+1, pluginName)
	atTheEnd := append(slices.Clone(compiled), pluginName) // where COREDNS_PLUGINS would put it

	paths := absCorefilePaths(t)
	for _, tc := range []struct {
		name       string
		directives []string
		withCache  bool
		wantErr    bool
	}{
		{"georoute right after acl starts with cache", afterACL, true, false},
		{"georoute below cache refuses to start when cache is used", atTheEnd, true, true},
		{"georoute below cache starts when the block has no cache", atTheEnd, false, false},
		{"georoute right after acl starts without cache", afterACL, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := dnsserver.SetDirectives(tc.directives); err != nil {
				t.Fatal(err)
			}
			c := caddy.NewTestController("dns", paths.expand("# server block\n\ngeoroute {\n\tdb $DB\n}"))
			if err := setup(c); err != nil {
				t.Fatalf("setup: %v", err)
			}
			config := dnsserver.GetConfig(c)
			if tc.withCache {
				config.AddPlugin(func(next plugin.Handler) plugin.Handler {
					ca := cache.New()
					ca.Next = next
					return ca
				})
			}
			if _, err := dnsserver.NewServer("dns://:0", []*dnsserver.Config{config}); err != nil {
				t.Fatalf("NewServer: %v", err)
			}
			g, ok := config.Handler(pluginName).(*GeoRoute)
			if !ok {
				t.Fatalf("no georoute handler registered, got %T", config.Handler(pluginName))
			}
			if tc.withCache && config.Handler("cache") == nil {
				t.Fatal("no cache handler registered")
			}

			err := g.checkCachePosition(config)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("checkCachePosition: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("checkCachePosition accepted georoute below cache")
			}
			for _, w := range []string{"Testfile:3 - ", "below cache", "remove cache"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func wantHealth(t *testing.T, g *GeoRoute, want healthConfig) {
	t.Helper()
	got := g.health.cfg
	got.roots = nil
	if got != want {
		t.Errorf("health config %+v, want %+v", got, want)
	}
}

func wantDBPaths(t *testing.T, g *GeoRoute, want ...string) {
	t.Helper()
	var got []string
	for _, s := range g.db.sources {
		if s.current.Load() == nil {
			t.Errorf("db %s not loaded", s.path)
		}
		got = append(got, s.path)
	}
	if !slices.Equal(got, want) {
		t.Errorf("db paths %q, want %q", got, want)
	}
}

func wantZones(t *testing.T, g *GeoRoute, want ...string) {
	t.Helper()
	if !slices.Equal([]string(g.zones), want) {
		t.Errorf("zones %q, want %q", g.zones, want)
	}
}

func wantAddrs(t *testing.T, p *pop, want ...string) {
	t.Helper()
	var got []string
	for _, a := range p.addrs {
		got = append(got, a.addr.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("pop %s addresses %q, want %q", p.id, got, want)
	}
}

func wantTargets(t *testing.T, g *GeoRoute, want ...string) {
	t.Helper()
	var got []string
	for _, tg := range g.health.targets {
		got = append(got, tg.url)
	}
	if !slices.Equal(got, want) {
		t.Errorf("probe targets %q, want %q", got, want)
	}
}
