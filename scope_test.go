package georoute

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/miekg/dns"
)

// scopeTestReply asks g for name on behalf of a client in addr (ECS of the
// whole address) and returns the answer's addresses and the reply's SCOPE
// (-1: no ECS option).
func scopeTestReply(g *GeoRoute, name string, addr netip.Addr) (string, int) {
	qtype, family := dns.TypeA, uint16(1)
	if addr.Is6() {
		qtype, family = dns.TypeAAAA, 2
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(4096, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{
		Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(addr.BitLen()), Address: addr.AsSlice(),
	})
	rec := dnstest.NewRecorder(georouteTestRemote("10.240.0.1"))
	if _, err := g.ServeDNS(context.Background(), rec, m); err != nil || rec.Msg == nil {
		return "error", -1
	}
	var out []string
	for _, rr := range rec.Msg.Answer {
		out = append(out, addrOf(rr).String())
	}
	_, ecs := georouteTestECS(rec.Msg)
	if len(ecs) != 1 {
		return strings.Join(out, " "), -1
	}
	return strings.Join(out, " "), int(ecs[0].SourceScope)
}

// scopeTestEventually waits (at most 10 s) until the SCOPE of client's
// reply is want.
func scopeTestEventually(t *testing.T, g *GeoRoute, name string, client netip.Addr, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, got := scopeTestReply(g, name, client)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: SCOPE still %d after 10 s; expected the merged %d", name, client, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scopeTestTwoHalves is a database in which two halves of a /24 and of a
// /48 lie in London and Paris: both nearest lhr of the demo pops, and both
// nearest nyc once lhr is down.
func scopeTestTwoHalves(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "halves.mmdb")
	geodbTestWrite(t, path, "city", 6,
		geodbTestPlace{network: "203.0.113.0/25", lat: 51.5074, lon: -0.1278},
		geodbTestPlace{network: "203.0.113.128/25", lat: 48.8566, lon: 2.3522},
		geodbTestPlace{network: "2001:db8:500::/49", lat: 51.5074, lon: -0.1278},
		geodbTestPlace{network: "2001:db8:500:8000::/49", lat: 48.8566, lon: 2.3522},
	)
	return path
}

// scopeTestStarted is the demo block on the database files paths, serving
// zone z, with its view builder running.
func scopeTestStarted(t *testing.T, z *georouteTestZone, paths ...string) *GeoRoute {
	t.Helper()
	g := georouteTestNew(t, "")
	g.db = geodbTestOpen(t, paths...)
	g.Next = z
	g.scopes.start(g)
	t.Cleanup(g.scopes.halt)
	return g
}

func TestScopeViewFollowsHealth(t *testing.T) {
	path := scopeTestTwoHalves(t)
	g := scopeTestStarted(t, georouteTestNewZone(t), path)
	c := &scopeTestChecker{reader: scopeTestOpen(t, path), answer: func(a netip.Addr) string { return scopeTestAnswer(g, "www.example.org.", a) }}

	for _, tc := range []struct {
		client         string
		db, merged     int
		lhr, lhrDownTo string
	}{
		{"203.0.113.7", 25, 24, "198.51.100.10", "192.0.2.10"},
		{"2001:db8:500:8000::1", 49, 48, "2001:db8:2::10", "2001:db8:1::10"},
	} {
		t.Run(tc.client, func(t *testing.T) {
			client := netip.MustParseAddr(tc.client)
			georouteTestSetDown(t, g)
			if ans, scope := scopeTestReply(g, "www.example.org.", client); ans != tc.lhr || scope != tc.db {
				t.Fatalf("before any view: %s SCOPE %d; expected %s and the database network's %d", ans, scope, tc.lhr, tc.db)
			}
			scopeTestEventually(t, g, "www.example.org.", client, tc.merged)
			c.check(t, client, tc.merged)

			// The very next query after a health change may not use the
			// old view: its block was uniform for another answer.
			georouteTestSetDown(t, g, "lhr")
			if ans, scope := scopeTestReply(g, "www.example.org.", client); ans != tc.lhrDownTo || scope != tc.db {
				t.Fatalf("right after lhr went down: %s SCOPE %d; expected %s and the database network's %d", ans, scope, tc.lhrDownTo, tc.db)
			}
			scopeTestEventually(t, g, "www.example.org.", client, tc.merged)
			c.check(t, client, tc.merged)

			// Back up: the view of the first state is still there.
			georouteTestSetDown(t, g)
			if ans, scope := scopeTestReply(g, "www.example.org.", client); ans != tc.lhr || scope != tc.merged {
				t.Fatalf("lhr back up: %s SCOPE %d; expected %s and the kept view's %d", ans, scope, tc.lhr, tc.merged)
			}
		})
	}
}

func TestScopeAnonymousSitesKeepTheDatabaseScope(t *testing.T) {
	path := scopeTestTwoHalves(t)
	g := scopeTestStarted(t, georouteTestNewZone(t), path)
	client := netip.MustParseAddr("203.0.113.7")
	// www gets its view; mixed (two pops and two anonymous addresses) never.
	scopeTestEventually(t, g, "www.example.org.", client, 24)
	time.Sleep(100 * time.Millisecond)
	for range 3 {
		if _, scope := scopeTestReply(g, "mixed.example.org.", client); scope != 25 {
			t.Fatalf("mixed: SCOPE %d; expected the database network's 25", scope)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A later file is consulted only for what the first cannot place, and
// such addresses are never merged: the first file decides the blocks.
func TestScopeSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.mmdb"), filepath.Join(dir, "second.mmdb")
	geodbTestWrite(t, first, "city", 6,
		geodbTestPlace{network: "203.0.113.0/26", lat: 51.5074, lon: -0.1278},
		geodbTestPlace{network: "203.0.113.64/26", lat: 53.3498, lon: -6.2603},
		geodbTestPlace{network: "203.0.113.128/26", lat: 48.8566, lon: 2.3522},
		geodbTestPlace{network: "203.0.113.192/26", noCoords: true},
	)
	geodbTestWrite(t, second, "flat", 4, geodbTestPlace{network: "203.0.113.0/24", lat: 48.8566, lon: 2.3522})
	g := scopeTestStarted(t, georouteTestNewZone(t), first, second)
	c := &scopeTestChecker{reader: scopeTestOpen(t, first), answer: func(a netip.Addr) string { return scopeTestAnswer(g, "www.example.org.", a) }}
	scopeTestEventually(t, g, "www.example.org.", netip.MustParseAddr("203.0.113.7"), 25)
	c.check(t, netip.MustParseAddr("203.0.113.7"), 25)
	// Paris cannot merge with its neighbour, which only the second file
	// places.
	if _, scope := scopeTestReply(g, "www.example.org.", netip.MustParseAddr("203.0.113.130")); scope != 26 {
		t.Fatalf("203.0.113.130: SCOPE %d; expected 26", scope)
	}
	c.check(t, netip.MustParseAddr("203.0.113.130"), 26)
	// Placed by the second file only: the database SCOPE, the longer of
	// the two files' networks.
	time.Sleep(100 * time.Millisecond)
	if ans, scope := scopeTestReply(g, "www.example.org.", netip.MustParseAddr("203.0.113.200")); ans != "198.51.100.10" || scope != 26 {
		t.Fatalf("203.0.113.200: %s SCOPE %d; expected lhr and the database's 26", ans, scope)
	}
}

// scopeTestLondonMerged is the demo block on scopeTestTwoHalves with the
// view of www's A answer ready, and the London client it was asked for.
func scopeTestLondonMerged(t *testing.T) (*GeoRoute, *georouteTestZone, netip.Addr) {
	t.Helper()
	z := georouteTestNewZone(t)
	g := scopeTestStarted(t, z, scopeTestTwoHalves(t))
	client := netip.MustParseAddr("203.0.113.7")
	scopeTestEventually(t, g, "www.example.org.", client, 24)
	return g, z, client
}

// scopeTestDecide is the decision for an ECS client in client, answer rrs.
func scopeTestDecide(g *GeoRoute, rrs []dns.RR, client netip.Addr) *decision {
	d := &decision{lookup: client, byECS: true}
	for i, rr := range rrs {
		d.cands = append(d.cands, g.candidate(rr, i))
	}
	g.readState(d)
	d.loc = g.db.locate(client)
	g.choose(d)
	return d
}

func TestScopeWidestAllocatesNothing(t *testing.T) {
	g, z, client := scopeTestLondonMerged(t)
	d := scopeTestDecide(g, scopeTestRRs(z, "www.example.org.", dns.TypeA), client)
	if bits, ok := g.scopes.widest(g, d); !ok || bits != 24 {
		t.Fatalf("widest = %d, %v; expected 24, true", bits, ok)
	}
	if n := testing.AllocsPerRun(1000, func() { g.scopes.widest(g, d) }); n != 0 {
		t.Errorf("widest allocates %v times; expected 0", n)
	}
}

// BenchmarkServeDNSMergedScope is a routed A query with ECS on DB-IP with
// the five Lab 15 pops, without the view builder (view=none: the database
// network's SCOPE, as before merged views) and with the answer's merged
// view ready (view=ready): the cost of finding the view and the block.
func BenchmarkServeDNSMergedScope(b *testing.B) {
	for _, ready := range []bool{false, true} {
		b.Run(map[bool]string{false: "view=none", true: "view=ready"}[ready], func(b *testing.B) {
			g, _ := scopeTestLab15(b, "")
			q := ecsTestQuery(b, "www.example.org.", dns.TypeA, "81.2.69.0/24")
			w := newBenchWriter()
			ctx := context.Background()
			if ready {
				g.scopes.start(g)
				b.Cleanup(g.scopes.halt)
				scopeBenchAwaitView(b, g, q)
			}
			b.ReportAllocs()
			for b.Loop() {
				g.ServeDNS(ctx, w, q)
			}
		})
	}
}

// scopeBenchAwaitView asks q until the view of its answer is built.
func scopeBenchAwaitView(b *testing.B, g *GeoRoute, q *dns.Msg) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		g.ServeDNS(context.Background(), newBenchWriter(), q)
		if m := g.scopes.views.Load(); m != nil && len(*m) > 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("no merged view within 60 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestScopeSweepDropsViewsNobodyUsed(t *testing.T) {
	g, _, client := scopeTestLondonMerged(t)
	// Sweeps run in the builder's goroutine; calling them here, between
	// queries, stands for two periods passing.
	g.scopes.sweep()
	if _, scope := scopeTestReply(g, "www.example.org.", client); scope != 24 {
		t.Fatalf("after one sweep with use: SCOPE %d; expected the view's 24", scope)
	}
	g.scopes.sweep()
	g.scopes.sweep()
	if n := len(*g.scopes.views.Load()); n != 0 {
		t.Fatalf("%d views after two sweeps without a query; expected none", n)
	}
	if _, scope := scopeTestReply(g, "www.example.org.", client); scope != 25 {
		t.Fatalf("view dropped: SCOPE %d; expected the database network's 25 until it is rebuilt", scope)
	}
	scopeTestEventually(t, g, "www.example.org.", client, 24)
}

// BenchmarkScopeWidest is the view lookup of one query (key, table, block)
// with the view ready, on DB-IP: what merged SCOPEs add to a query.
func BenchmarkScopeWidest(b *testing.B) {
	for _, pops := range []int{5, 100} {
		b.Run(fmt.Sprintf("pops=%d", pops), func(b *testing.B) {
			g, z := benchSetup(b, pops, benchRealDB)
			g.scopes.start(g)
			b.Cleanup(g.scopes.halt)
			scopeBenchAwaitView(b, g, ecsTestQuery(b, "www.example.org.", dns.TypeA, "81.2.69.0/24"))
			client := netip.MustParseAddr("81.2.69.0")
			d := scopeTestDecide(g, z.answer, client)
			if _, ok := g.scopes.widest(g, d); !ok {
				b.Fatal("no view")
			}
			b.ReportAllocs()
			for b.Loop() {
				g.scopes.widest(g, d)
			}
		})
	}
}

func TestScopeViewFollowsDrainsAndOverrides(t *testing.T) {
	g, _, london := scopeTestLondonMerged(t)
	paris := netip.MustParseAddr("203.0.113.130")
	c := &scopeTestChecker{reader: scopeTestOpen(t, g.db.sources[0].path), answer: func(a netip.Addr) string { return scopeTestAnswer(g, "www.example.org.", a) }}
	byID := map[string]*pop{}
	for _, p := range g.pops {
		byID[p.id] = p
	}

	// Draining lhr is a new state: the database SCOPE at once, then the
	// merged view of the drained state.
	drains := &drainSet{drained: make([]bool, len(g.pops))}
	drains.drained[byID["lhr"].rank] = true
	g.steer.drains.Store(drains)
	if ans, scope := scopeTestReply(g, "www.example.org.", london); ans != "192.0.2.10" || scope != 25 {
		t.Fatalf("lhr drained: %s SCOPE %d; expected nyc and the database network's 25", ans, scope)
	}
	scopeTestEventually(t, g, "www.example.org.", london, 24)
	c.check(t, london, 24)
	g.steer.drains.Store(nil)

	// An override on the whole /24: one answer (nrt) for both halves,
	// merged up to the rule's network and not beyond.
	rule := func(cidr, id string) overrideRule {
		return overrideRule{prefix: netip.MustParsePrefix(cidr), pops: []*pop{byID[id]}}
	}
	for _, tc := range []struct {
		name     string
		table    *overrideTable
		failOpen bool
		client   netip.Addr
		want     string
		merged   int
	}{
		{"override /24 to nrt", &overrideTable{rules: []overrideRule{rule("203.0.113.0/24", "nrt")}}, false, london, "203.0.113.10", 24},
		{"nested /26 to nyc splits it", &overrideTable{rules: []overrideRule{rule("203.0.113.0/24", "nrt"), rule("203.0.113.128/26", "nyc")}}, false, london, "203.0.113.10", 25},
		{"inside the nested rule", &overrideTable{rules: []overrideRule{rule("203.0.113.0/24", "nrt"), rule("203.0.113.128/26", "nyc")}}, false, paris, "192.0.2.10", 26},
		// Every pop down: failing open, no override applies, London and
		// Paris are both lhr's again.
		{"no override while failing open", &overrideTable{rules: []overrideRule{rule("203.0.113.0/24", "nrt")}}, true, london, "198.51.100.10", 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.failOpen {
				georouteTestSetDown(t, g, "nyc", "lhr", "nrt")
				defer georouteTestSetDown(t, g)
			}
			g.steer.overrides.Store(tc.table)
			c.edges = nil
			for _, r := range tc.table.rules {
				c.edges = append(c.edges, r.prefix)
			}
			// N = 1: every rule here decides alone, located or not
			// (unless failing open).
			c.fixed = func(a netip.Addr) bool { return !tc.failOpen && tc.table.match(a) != nil }
			if ans, _ := scopeTestReply(g, "www.example.org.", tc.client); ans != tc.want {
				t.Fatalf("%s: %s; expected %s", tc.client, ans, tc.want)
			}
			scopeTestEventually(t, g, "www.example.org.", tc.client, tc.merged)
			c.check(t, tc.client, tc.merged)
		})
	}
}
