package georoute

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/miekg/dns"
	"github.com/oschwald/maxminddb-golang/v2"
)

// The merged views are checked by scopeTestChecker, which shares nothing
// with the merge: it opens the database on its own, asks the real query
// path (ServeDNS) for the answer of one address per network, and knows the
// special-purpose blocks from the design, not from ecs.go.

// scopeTestSpecial are design §5's private and unroutable networks.
var scopeTestSpecial = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.168.0.0/16", "::/128", "::1/128", "fc00::/7", "fe80::/10",
}

// scopeTestChecker decides whether a block is uniform: every address in it
// gets the same answer, and a merged view may vouch for it.
type scopeTestChecker struct {
	// reader is the first database file that covers the family.
	reader *maxminddb.Reader
	// answer is the answer addr gets.
	answer func(addr netip.Addr) string
	// fixed reports whether addr's answer does not depend on where the
	// database puts it (an override decides it alone).
	fixed func(addr netip.Addr) bool
	// edges are networks whose edges are probed besides the database's
	// (override networks).
	edges []netip.Prefix
	// byRecord, when set (no overrides), remembers the verdict of a probe
	// per record and wanted answer.
	byRecord map[recordKey]string
}

type recordKey struct {
	offset uintptr
	want   string
}

// scopeTestPlace is a record's coordinates in either layout (DB-IP flat or
// MaxMind City).
type scopeTestPlace struct {
	Latitude  *float64 `maxminddb:"latitude"`
	Longitude *float64 `maxminddb:"longitude"`
	Location  struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// located reports whether the file places addr.
func (c *scopeTestChecker) located(addr netip.Addr) bool {
	res := c.reader.Lookup(addr)
	var p scopeTestPlace
	if !res.Found() || res.Decode(&p) != nil {
		return false
	}
	lat, lon := p.Latitude, p.Longitude
	if lat == nil || lon == nil {
		lat, lon = p.Location.Latitude, p.Location.Longitude
	}
	return lat != nil && lon != nil && *lat >= -90 && *lat <= 90 && *lon >= -180 && *lon <= 180
}

// mergeable reports whether a view may hold addr at all.
func (c *scopeTestChecker) mergeable(addr netip.Addr) bool {
	for _, s := range scopeTestSpecial {
		if netip.MustParsePrefix(s).Contains(addr) {
			return false
		}
	}
	return c.located(addr) || (c.fixed != nil && c.fixed(addr))
}

// nonUniform returns why block is not uniform with answer want, or "".
func (c *scopeTestChecker) nonUniform(block netip.Prefix, want string) string {
	for _, s := range scopeTestSpecial {
		if sp := netip.MustParsePrefix(s); sp.Overlaps(block) {
			return "overlaps " + s
		}
	}
	probe := func(p netip.Prefix) string {
		for _, a := range []netip.Addr{p.Addr(), scopeTestLast(p)} {
			if !c.mergeable(a) {
				return a.String() + " is not located"
			}
			if got := c.answer(a); got != want {
				return fmt.Sprintf("%s gets %s", a, got)
			}
		}
		return ""
	}
	for res := range c.reader.NetworksWithin(block, maxminddb.IncludeNetworksWithoutData()) {
		n := res.Prefix()
		if n.Addr().Is4() != block.Addr().Is4() {
			return n.String() + " is in the IPv4 subtree"
		}
		if n.Bits() < block.Bits() {
			n = block
		}
		// Without overrides, networks that share a record share an
		// answer: a large block is probed once per place.
		if c.byRecord != nil && res.Found() {
			why, seen := c.byRecord[recordKey{res.Offset(), want}]
			if !seen {
				why = probe(n)
				c.byRecord[recordKey{res.Offset(), want}] = why
			}
			if why != "" {
				return why
			}
			continue
		}
		if why := probe(n); why != "" {
			return why
		}
	}
	for _, e := range c.edges {
		if e.Addr().Is4() != block.Addr().Is4() || !e.Overlaps(block) {
			continue
		}
		if e.Bits() > block.Bits() {
			// Design §5: a merged block never crosses an override's edge.
			return "override " + e.String() + " lies inside"
		}
		if e.Bits() < block.Bits() {
			e = block
		}
		if why := probe(e); why != "" {
			return why
		}
	}
	return ""
}

// check verifies the block a view claims for client: uniform, and its
// parent is not.
func (c *scopeTestChecker) check(t *testing.T, client netip.Addr, bits int) {
	t.Helper()
	block := netip.PrefixFrom(client, bits).Masked()
	want := c.answer(client)
	if why := c.nonUniform(block, want); why != "" {
		t.Errorf("%s: claimed block %s is not uniform (client gets %s): %s", client, block, want, why)
		return
	}
	if bits == 0 {
		return
	}
	parent := netip.PrefixFrom(client, bits-1).Masked()
	if c.nonUniform(parent, want) == "" {
		t.Errorf("%s: block %s is uniform, but so is the wider %s", client, block, parent)
	}
}

func scopeTestLast(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// scopeTestAnswer is the answer ServeDNS gives a client in addr (ECS of
// the whole address), as the sorted-by-position list of its addresses.
func scopeTestAnswer(g *GeoRoute, name string, addr netip.Addr) string {
	qtype := dns.TypeA
	if addr.Is6() {
		qtype = dns.TypeAAAA
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(4096, false)
	family := uint16(1)
	if addr.Is6() {
		family = 2
	}
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{
		Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(addr.BitLen()), Address: addr.AsSlice(),
	})
	rec := dnstest.NewRecorder(georouteTestRemote("10.240.0.1"))
	if _, err := g.ServeDNS(context.Background(), rec, m); err != nil || rec.Msg == nil {
		return fmt.Sprintf("error %v", err)
	}
	var out []string
	for _, rr := range rec.Msg.Answer {
		out = append(out, addrOf(rr).String())
	}
	return strings.Join(out, " ")
}

// scopeTestView builds the view of name's answer of family for g as its
// health stands.
func scopeTestView(t testing.TB, g *GeoRoute, rrs []dns.RR, family int, rules []scopeRule) *scopeView {
	t.Helper()
	d := &decision{lookup: netip.IPv6Unspecified()}
	if family == 4 {
		d.lookup = netip.IPv4Unspecified()
	}
	for i, rr := range rrs {
		d.cands = append(d.cands, g.candidate(rr, i))
	}
	g.readState(d)
	k, ok := scopeKeyOf(g, d)
	if !ok {
		t.Fatal("answer has anonymous sites")
	}
	spec := k.spec(g)
	spec.rules = rules
	v, err := scopeMerge(context.Background(), g.db, spec)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// scopeTestRRs is the answer of qtype name in zone z.
func scopeTestRRs(z *georouteTestZone, name string, qtype uint16) []dns.RR {
	return z.rrsets[georouteTestKey{name, qtype}]
}

func scopeTestOpen(t testing.TB, path string) *maxminddb.Reader {
	t.Helper()
	r, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// scopeTestClients are addresses of family drawn from the networks of r:
// the first and last address of up to n networks spread over the file, and
// a random one inside each.
func scopeTestClients(r *maxminddb.Reader, family, n int, rnd *rand.Rand) []netip.Addr {
	within := netip.MustParsePrefix("::/0")
	if family == 4 {
		within = netip.MustParsePrefix("0.0.0.0/0")
	}
	var nets []netip.Prefix
	for res := range r.NetworksWithin(within, maxminddb.IncludeNetworksWithoutData()) {
		if p := res.Prefix(); p.Addr().Is4() == (family == 4) {
			nets = append(nets, p)
		}
	}
	stride := max(1, len(nets)/n)
	var out []netip.Addr
	for i := rnd.IntN(stride); i < len(nets); i += stride {
		p := nets[i]
		b := p.Addr().AsSlice()
		for k := p.Bits(); k < len(b)*8; k++ {
			if rnd.IntN(2) == 1 {
				b[k/8] |= 1 << (7 - k%8)
			}
		}
		a, _ := netip.AddrFromSlice(b)
		out = append(out, p.Addr(), scopeTestLast(p), a)
	}
	return out
}

// scopeTestRun checks view against the checker for every client: a client
// the view holds gets a block that is uniform and maximal; every client the
// view may hold is held (the view is never narrower than it could be).
func scopeTestRun(t *testing.T, v *scopeView, c *scopeTestChecker, clients []netip.Addr) []int {
	t.Helper()
	var scopes []int
	for _, a := range clients {
		bits, _, ok := v.lookup(a)
		if ok != c.mergeable(a) {
			t.Errorf("%s: view holds it %v, but the checker says a view may hold it %v", a, ok, !ok)
			continue
		}
		if ok {
			c.check(t, a, bits)
			scopes = append(scopes, bits)
		}
	}
	return scopes
}

func TestScopeMergeTestDB(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props string
		down  []string
	}{
		{"every pop up, answers 1", "", nil},
		{"lhr down", "", []string{"lhr"}},
		{"answers 2", "answers 2", nil},
		{"answers 2, nyc down", "answers 2", []string{"nyc"}},
		{"every pop down fails open", "", []string{"nyc", "lhr", "nrt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := georouteTestNew(t, tc.props)
			georouteTestSetDown(t, g, tc.down...)
			z := georouteTestNewZone(t)
			g.Next = z
			r := scopeTestOpen(t, "testdata/geo.mmdb")
			for _, fam := range []struct {
				family int
				qtype  uint16
			}{{4, dns.TypeA}, {6, dns.TypeAAAA}} {
				v := scopeTestView(t, g, scopeTestRRs(z, "www.example.org.", fam.qtype), fam.family, nil)
				c := &scopeTestChecker{reader: r, answer: func(a netip.Addr) string { return scopeTestAnswer(g, "www.example.org.", a) }}
				clients := scopeTestClients(r, fam.family, 1000, rand.New(rand.NewPCG(1, uint64(fam.family))))
				if got := scopeTestRun(t, v, c, clients); len(got) == 0 {
					t.Errorf("IPv%d: no client was merged", fam.family)
				}
			}
		})
	}
}

// scopeTestRefAnswer is design §8's override rule, written out for the
// test: the listed pops that are up, in order; more by distance when N asks
// for more; the plain nearest ones when none is up.
func scopeTestRefAnswer(g *GeoRoute, rules []scopeRule, addr netip.Addr) string {
	var rule *scopeRule
	for i := range rules {
		if rules[i].prefix.Contains(addr) && (rule == nil || rules[i].prefix.Bits() > rule.prefix.Bits()) {
			rule = &rules[i]
		}
	}
	var out []int
	if rule != nil {
		out = append(out, rule.listed[:min(len(rule.listed), g.answers)]...)
	}
	if len(out) < g.answers {
		loc := g.db.locate(addr)
		if !loc.located {
			return "not located"
		}
		rest := slices.Clone(g.pops)
		slices.SortStableFunc(rest, func(a, b *pop) int { return -cmp.Compare(loc.at.closeness(a.at), loc.at.closeness(b.at)) })
		for _, p := range rest {
			if len(out) < g.answers && !slices.Contains(out, p.rank) {
				out = append(out, p.rank)
			}
		}
	}
	return fmt.Sprint(out)
}

func TestScopeMergeOverrideEdges(t *testing.T) {
	g := georouteTestNew(t, "answers 2")
	rank := map[string]int{}
	for _, p := range g.pops {
		rank[p.id] = p.rank
	}
	rules := []scopeRule{
		// Every IPv4 client to nrt and nyc: special-purpose blocks still
		// bound the blocks.
		{netip.MustParsePrefix("0.0.0.0/0"), []int{rank["nrt"], rank["nyc"]}},
		// Clients in 198.18.0.0/15 to lhr, then by distance.
		{netip.MustParsePrefix("198.18.0.0/15"), []int{rank["lhr"]}},
		// Nested: a listed pop that is down, routed as without a rule.
		{netip.MustParsePrefix("198.18.2.0/25"), nil},
		{netip.MustParsePrefix("2001:db8:200::/40"), []int{rank["tie-first"], rank["tie-second"]}},
	}
	var edges []netip.Prefix
	for _, r := range rules {
		edges = append(edges, r.prefix)
	}
	r := scopeTestOpen(t, "testdata/geo.mmdb")
	fixed := func(a netip.Addr) bool {
		best := -1
		for i, r := range rules {
			if r.prefix.Contains(a) && (best < 0 || r.prefix.Bits() > rules[best].prefix.Bits()) {
				best = i
			}
		}
		return best >= 0 && len(rules[best].listed) >= g.answers
	}
	c := &scopeTestChecker{reader: r, fixed: fixed, edges: edges, answer: func(a netip.Addr) string { return scopeTestRefAnswer(g, rules, a) }}
	var sites4 []scopeSite
	for _, p := range g.pops {
		sites4 = append(sites4, scopeSite{rank: p.rank, at: p.at})
	}
	for _, family := range []int{4, 6} {
		v, err := scopeMerge(context.Background(), g.db, scopeSpec{family: family, sites: sites4, n: g.answers, rules: rules})
		if err != nil {
			t.Fatal(err)
		}
		rnd := rand.New(rand.NewPCG(2, uint64(family)))
		clients := scopeTestClients(r, family, 1000, rnd)
		for _, e := range edges {
			if e.Addr().Is4() == (family == 4) {
				clients = append(clients, e.Addr(), scopeTestLast(e), e.Addr().Prev(), scopeTestLast(e).Next())
			}
		}
		for range 300 {
			b := make([]byte, 4)
			if family == 6 {
				b = make([]byte, 16)
				b[0], b[1], b[2] = 0x20, 0x01, 0x0d
			}
			for i := range b {
				if family == 4 || i > 2 {
					b[i] = byte(rnd.IntN(256))
				}
			}
			a, _ := netip.AddrFromSlice(b)
			clients = append(clients, a)
		}
		clients = slices.DeleteFunc(clients, func(a netip.Addr) bool { return !a.IsValid() || a.Is4() != (family == 4) })
		scopeTestRun(t, v, c, clients)
	}
}

func TestScopeViewLookupAllocatesNothing(t *testing.T) {
	g := georouteTestNew(t, "")
	z := georouteTestNewZone(t)
	v4 := scopeTestView(t, g, scopeTestRRs(z, "www.example.org.", dns.TypeA), 4, nil)
	v6 := scopeTestView(t, g, scopeTestRRs(z, "www.example.org.", dns.TypeAAAA), 6, nil)
	a4, a6 := netip.MustParseAddr("198.18.2.7"), netip.MustParseAddr("2001:db8:200::1")
	if _, _, ok := v4.lookup(a4); !ok {
		t.Fatalf("%s not in the view", a4)
	}
	if _, _, ok := v6.lookup(a6); !ok {
		t.Fatalf("%s not in the view", a6)
	}
	if n := testing.AllocsPerRun(1000, func() { v4.lookup(a4); v6.lookup(a6) }); n != 0 {
		t.Errorf("lookup allocates %v times; expected 0", n)
	}
}

// scopeTestNeedRealDB fails with one clear line when DB-IP is missing
// (`make test` installs it).
func scopeTestNeedRealDB(t testing.TB) {
	t.Helper()
	for _, p := range benchRealDB {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run `make realdb`", p)
		}
	}
}

// scopeTestLab15 is a block with the five Lab 15 pops (nyc lhr nrt syd
// gru at their airports) on DB-IP, and a zone whose answer holds all five.
func scopeTestLab15(t testing.TB, props string) (*GeoRoute, *benchZone) {
	t.Helper()
	scopeTestNeedRealDB(t)
	var cf strings.Builder
	cf.WriteString("georoute www.example.org {\n    db testdata/geo.mmdb\n    " + props + "\n")
	z := &benchZone{}
	for i, p := range []string{"nyc 40.6413 -73.7781", "lhr 51.4700 -0.4543", "nrt 35.7720 140.3929", "syd -33.9399 151.1753", "gru -23.4356 -46.4731"} {
		a4 := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		a6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:%d::10", i+1))
		fmt.Fprintf(&cf, "    pop %s %s %s\n", p, a4, a6)
		hdr := func(t uint16) dns.RR_Header {
			return dns.RR_Header{Name: "www.example.org.", Rrtype: t, Class: dns.ClassINET, Ttl: 300}
		}
		z.answer = append(z.answer, &dns.A{Hdr: hdr(dns.TypeA), A: a4.AsSlice()}, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a6.AsSlice()})
	}
	cf.WriteString("}")
	g := georouteTestNewFrom(t, cf.String())
	g.db = scopeTestRealDB(t)
	g.Next = z
	return g, z
}

var scopeTestReal *geoDB

func scopeTestRealDB(t testing.TB) *geoDB {
	if scopeTestReal == nil {
		scopeTestReal = geodbTestOpen(t, benchRealDB...)
	}
	return scopeTestReal
}

// scopeTestOfType is the records of rrs of one type.
func scopeTestOfType(rrs []dns.RR, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out
}

// scopeTestPublic24s are n random public IPv4 /24s (their first address).
func scopeTestPublic24s(n int, rnd *rand.Rand) []netip.Addr {
	var out []netip.Addr
	for len(out) < n {
		a := netip.AddrFrom4([4]byte{byte(1 + rnd.IntN(223)), byte(rnd.IntN(256)), byte(rnd.IntN(256)), 0})
		special := false
		for _, s := range scopeTestSpecial {
			special = special || netip.MustParsePrefix(s).Contains(a)
		}
		if !special {
			out = append(out, a)
		}
	}
	return out
}

func TestScopeMergeRealDB(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props string
		down  []string
	}{
		// All pops up, and lhr going down and back, are checked end to end
		// (test/scope_test.go); a merge of DB-IP takes seconds under -race.
		{"lhr down, answers 2", "answers 2", []string{"lhr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, z := scopeTestLab15(t, tc.props)
			georouteTestSetDown(t, g, tc.down...)
			rnd := rand.New(rand.NewPCG(12, 1))
			for _, fam := range []struct {
				family int
				qtype  uint16
				file   string
			}{{4, dns.TypeA, benchRealDB[0]}, {6, dns.TypeAAAA, benchRealDB[1]}} {
				v := scopeTestView(t, g, scopeTestOfType(z.answer, fam.qtype), fam.family, nil)
				r := scopeTestOpen(t, fam.file)
				c := &scopeTestChecker{reader: r, byRecord: map[recordKey]string{}, answer: func(a netip.Addr) string { return scopeTestAnswer(g, "www.example.org.", a) }}
				var clients []netip.Addr
				if fam.family == 4 {
					clients = scopeTestPublic24s(60, rnd)
				} else {
					clients = scopeTestClients(r, 6, 30, rnd)
				}
				scopes := scopeTestRun(t, v, c, clients)
				slices.Sort(scopes)
				if len(scopes) == 0 {
					t.Fatalf("IPv%d: no client merged", fam.family)
				}
				t.Logf("IPv%d: %d blocks, %d KiB; %d of %d clients merged, median SCOPE /%d", fam.family, v.blocks(), v.bytes()>>10, len(scopes), len(clients), scopes[len(scopes)/2])
			}
		})
	}
}

// BenchmarkScopeMerge is the time one merged view of DB-IP takes to build
// (the delay from a health change to the merged SCOPE), its size, and what
// the build allocates on the way, at 5 (Lab 15) and 100 pops.
func BenchmarkScopeMerge(b *testing.B) {
	db := scopeTestRealDB(b)
	for _, family := range []int{4, 6} {
		for _, n := range []int{5, 100} {
			b.Run(fmt.Sprintf("ipv%d/pops=%d", family, n), func(b *testing.B) {
				spec := scopeSpec{family: family, n: 1}
				if n == 5 {
					g, _ := scopeTestLab15(b, "")
					for _, p := range g.pops {
						spec.sites = append(spec.sites, scopeSite{rank: p.rank, at: p.at})
					}
				} else {
					r := rand.New(rand.NewPCG(uint64(n), 7))
					for i := range n {
						spec.sites = append(spec.sites, scopeSite{rank: i, at: pointAt(r.Float64()*140-70, r.Float64()*360-180)})
					}
				}
				b.ReportAllocs()
				var v *scopeView
				for b.Loop() {
					var err error
					if v, err = scopeMerge(context.Background(), db, spec); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(v.blocks()), "blocks")
				b.ReportMetric(float64(v.bytes())/(1<<20), "MiB")
			})
		}
	}
}
