package georoute

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// georouteTestNames are the names the handler tests route. alias and static
// are deliberately absent, as in the demo.
const georouteTestNames = "www.example.org mixed.example.org anon.example.org dark.example.org signed.example.org tie.example.org short.example.org golias.example.org"

// georouteTestNewFrom builds a configured GeoRoute from a Corefile block,
// the way CoreDNS does at start-up (without starting probes or the watcher).
func georouteTestNewFrom(tb testing.TB, corefile string) *GeoRoute {
	tb.Helper()
	g, err := load(caddy.NewTestController("dns", corefile))
	if err != nil {
		tb.Fatalf("parse:\n%s\n%v", corefile, err)
	}
	return g
}

// georouteTestNew is the demo's three pops plus two equidistant ones for
// ties, with props added to the block.
func georouteTestNew(tb testing.TB, props string) *GeoRoute {
	tb.Helper()
	return georouteTestNewFrom(tb, fmt.Sprintf(`georoute %s {
    db testdata/geo.mmdb
    pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
    pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
    pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
    pop tie-first 48.0 2.0 192.0.2.31
    pop tie-second 48.0 2.0 192.0.2.32
    %s
}`, georouteTestNames, props))
}

// georouteTestSetDown marks the addresses of the given pops down and every
// other one up.
func georouteTestSetDown(tb testing.TB, g *GeoRoute, ids ...string) {
	tb.Helper()
	for _, p := range g.pops {
		for _, a := range p.addrs {
			a.down.Store(slices.Contains(ids, p.id))
		}
	}
	for _, id := range ids {
		if !slices.ContainsFunc(g.pops, func(p *pop) bool { return p.id == id }) {
			tb.Fatalf("no pop %q", id)
		}
	}
}

const georouteTestZoneText = `
example.org.        300 IN SOA   ns1.example.org. hostmaster.example.org. 2026112201 3600 600 604800 300
example.org.        300 IN NS    ns1.example.org.
ns1.example.org.    300 IN A     192.0.2.53
www.example.org.    300 IN A     192.0.2.10
www.example.org.    300 IN A     198.51.100.10
www.example.org.    300 IN A     203.0.113.10
www.example.org.    300 IN AAAA  2001:db8:1::10
www.example.org.    300 IN AAAA  2001:db8:2::10
www.example.org.    300 IN AAAA  2001:db8:3::10
www.example.org.    300 IN MX    10 mail.example.org.
www.example.org.    300 IN TXT   "served by the nearest pop"
alias.example.org.  300 IN CNAME www.example.org.
golias.example.org. 300 IN CNAME static.example.org.
mixed.example.org.  300 IN A     192.0.2.10
mixed.example.org.  300 IN A     198.51.100.10
mixed.example.org.  300 IN A     192.0.2.200
mixed.example.org.  300 IN A     203.0.113.200
anon.example.org.   300 IN A     198.51.100.99
anon.example.org.   300 IN A     192.0.2.200
anon.example.org.   300 IN A     203.0.113.200
dark.example.org.   300 IN A     198.51.100.98
dark.example.org.   300 IN A     198.51.100.99
signed.example.org. 300 IN A     192.0.2.10
signed.example.org. 300 IN A     198.51.100.10
signed.example.org. 300 IN A     203.0.113.10
signed.example.org. 300 IN RRSIG A 13 3 300 20300101000000 20260101000000 12345 example.org. c2lnbmF0dXJlIGJ5dGVz
tie.example.org.    300 IN A     192.0.2.32
tie.example.org.    300 IN A     192.0.2.31
short.example.org.  10  IN A     192.0.2.10
short.example.org.  10  IN A     198.51.100.10
short.example.org.  10  IN A     203.0.113.10
static.example.org. 300 IN A     192.0.2.10
static.example.org. 300 IN A     198.51.100.10
static.example.org. 300 IN A     203.0.113.10
`

type georouteTestKey struct {
	name  string
	qtype uint16
}

// georouteTestZone is the next plugin of the handler tests. Like file, it
// answers with the record slices of its own zone, so a georoute that edits
// them in place (filtering, TTL capping) corrupts the zone and is caught.
type georouteTestZone struct {
	rrsets   map[georouteTestKey][]dns.RR
	snapshot map[georouteTestKey][]dns.RR
	// opt, when set, is the OPT RR the zone adds to replies to EDNS queries
	// (shared between replies, like the zone's records).
	opt *dns.OPT

	calls int
	// sent is the last reply written and sentCopy a deep copy of it taken
	// before it was handed to georoute; sections are its section slices as
	// handed over (answer, authority, additional).
	sent, sentCopy *dns.Msg
	sections       [3][]dns.RR
}

func georouteTestNewZone(tb testing.TB) *georouteTestZone {
	tb.Helper()
	z := &georouteTestZone{rrsets: map[georouteTestKey][]dns.RR{}, snapshot: map[georouteTestKey][]dns.RR{}}
	for _, line := range strings.Split(georouteTestZoneText, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			tb.Fatalf("%q: %v", line, err)
		}
		k := georouteTestKey{rr.Header().Name, rr.Header().Rrtype}
		if s, ok := rr.(*dns.RRSIG); ok {
			k.qtype = s.TypeCovered
		}
		z.rrsets[k] = append(z.rrsets[k], rr)
	}
	for k, set := range z.rrsets {
		z.rrsets[k] = slices.Clip(set)
		for _, rr := range set {
			z.snapshot[k] = append(z.snapshot[k], dns.Copy(rr))
		}
	}
	return z
}

func (z *georouteTestZone) Name() string { return "zone" }

func (z *georouteTestZone) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	z.calls++
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative, m.RecursionAvailable = true, true
	if len(r.Question) > 0 {
		z.answer(m, r.Question[0])
	}
	if z.opt != nil && r.IsEdns0() != nil {
		m.Extra = append(slices.Clip(m.Extra), z.opt)
	}
	z.sent, z.sentCopy = m, m.Copy()
	z.sections = [3][]dns.RR{m.Answer, m.Ns, m.Extra}
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

func (z *georouteTestZone) answer(m *dns.Msg, q dns.Question) {
	name := strings.ToLower(q.Name)
	var chain []dns.RR
	for range 8 {
		c, ok := z.rrsets[georouteTestKey{name, dns.TypeCNAME}]
		if !ok || q.Qtype == dns.TypeCNAME {
			break
		}
		chain = append(chain, c...)
		name = strings.ToLower(c[0].(*dns.CNAME).Target)
	}
	set, ok := z.rrsets[georouteTestKey{name, q.Qtype}]
	switch {
	case ok && chain == nil:
		m.Answer = set // the zone's own slice, as file hands it out
	case ok:
		m.Answer = append(chain, set...)
	default:
		m.Answer = chain
	}
	if len(m.Answer) > 0 {
		m.Ns = z.rrsets[georouteTestKey{"example.org.", dns.TypeNS}]
		m.Extra = z.rrsets[georouteTestKey{"ns1.example.org.", dns.TypeA}]
		return
	}
	m.Ns = z.rrsets[georouteTestKey{"example.org.", dns.TypeSOA}]
	exists := false
	for k := range z.rrsets {
		exists = exists || k.name == name
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
}

// checkUnmutated fails the test when the zone's records, or the header,
// records and section slices of the reply the zone wrote, changed after it
// was handed over. Like loadbalance, georoute may give the message new
// section slices; it must never write into the ones it was handed.
func (z *georouteTestZone) checkUnmutated(tb testing.TB) {
	tb.Helper()
	for k, set := range z.rrsets {
		if !georouteTestSameRRs(set, z.snapshot[k]) {
			tb.Fatalf("the next plugin's records of %s/%s changed:\n%v\nwere\n%v", k.name, dns.TypeToString[k.qtype], set, z.snapshot[k])
		}
	}
	if z.sent != nil {
		handed := *z.sent
		handed.Answer, handed.Ns, handed.Extra = z.sections[0], z.sections[1], z.sections[2]
		if d := georouteTestDiffMsg(&handed, z.sentCopy); d != "" {
			tb.Fatalf("the next plugin's reply was mutated: %s", d)
		}
	}
}

// georouteTestDiffMsg describes how got differs from want, field by field
// and record by record; "" when they are equal.
func georouteTestDiffMsg(got, want *dns.Msg) string {
	if got.MsgHdr != want.MsgHdr {
		return fmt.Sprintf("header %+v, was %+v", got.MsgHdr, want.MsgHdr)
	}
	if !slices.Equal(got.Question, want.Question) {
		return fmt.Sprintf("question %v, was %v", got.Question, want.Question)
	}
	for _, sec := range []struct {
		name      string
		got, want []dns.RR
	}{{"answer", got.Answer, want.Answer}, {"authority", got.Ns, want.Ns}, {"additional", got.Extra, want.Extra}} {
		if len(sec.got) != len(sec.want) {
			return fmt.Sprintf("%s has %d records, had %d", sec.name, len(sec.got), len(sec.want))
		}
		for i := range sec.got {
			if !georouteTestSameRR(sec.got[i], sec.want[i]) {
				return fmt.Sprintf("%s record %d is %v, was %v", sec.name, i, sec.got[i], sec.want[i])
			}
		}
	}
	return ""
}

// georouteTestSameRR compares records field by field, or failing that by
// header and presentation: dns.Copy turns some nil slices into empty ones
// (an OPT's options, an HTTPS record's values).
func georouteTestSameRR(a, b dns.RR) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	return a != nil && b != nil && *a.Header() == *b.Header() && a.String() == b.String()
}

func georouteTestSameRRs(a, b []dns.RR) bool {
	return slices.EqualFunc(a, b, georouteTestSameRR)
}

// georouteTestWriter is a ResponseWriter whose client is at a chosen address.
type georouteTestWriter struct {
	test.ResponseWriter
	remote net.Addr
}

func (w *georouteTestWriter) RemoteAddr() net.Addr { return w.remote }

// georouteTestRemote is a writer for a query from s: an address (UDP),
// "tcp:ADDRESS", or "none" for a writer without a usable remote address.
func georouteTestRemote(s string) *georouteTestWriter {
	switch {
	case s == "none":
		return &georouteTestWriter{}
	case strings.HasPrefix(s, "tcp:"):
		return &georouteTestWriter{remote: &net.TCPAddr{IP: net.ParseIP(strings.TrimPrefix(s, "tcp:")), Port: 40212}}
	}
	return &georouteTestWriter{remote: &net.UDPAddr{IP: net.ParseIP(s), Port: 40212}}
}

func georouteTestServe(tb testing.TB, g *GeoRoute, z *georouteTestZone, remote string, q *dns.Msg) *dns.Msg {
	tb.Helper()
	g.Next = z
	rec := dnstest.NewRecorder(georouteTestRemote(remote))
	if _, err := g.ServeDNS(context.Background(), rec, q); err != nil {
		tb.Fatalf("ServeDNS: %v", err)
	}
	if rec.Msg == nil {
		tb.Fatal("no reply written")
	}
	return rec.Msg
}

func georouteTestFormat(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

// georouteTestWant lists records of one RRset in the format of
// georouteTestFormat.
func georouteTestWant(name string, ttl int, typ string, rdata ...string) []string {
	out := []string{}
	for _, r := range rdata {
		out = append(out, fmt.Sprintf("%s %d IN %s %s", name, ttl, typ, r))
	}
	return out
}

// georouteTestECS returns the OPT RRs of m and the ECS options in them.
func georouteTestECS(m *dns.Msg) (opts []*dns.OPT, ecs []*dns.EDNS0_SUBNET) {
	for _, rr := range m.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			opts = append(opts, o)
			for _, e := range o.Option {
				if s, ok := e.(*dns.EDNS0_SUBNET); ok {
					ecs = append(ecs, s)
				}
			}
		}
	}
	return opts, ecs
}

func georouteTestCount(tb testing.TB, c prometheus.Counter) float64 { return geodbTestCounter(tb, c) }

// georouteTestCheckContract checks what holds for every reply that is not a
// FORMERR (design §1): header, question, authority and additional as the
// next plugin made them (but OPT/ECS), the other options of its OPT kept,
// and no address that the next plugin did not give.
func georouteTestCheckContract(tb testing.TB, z *georouteTestZone, reply *dns.Msg) {
	tb.Helper()
	sent := z.sentCopy
	if reply.MsgHdr != sent.MsgHdr {
		tb.Errorf("header %+v, the next plugin's was %+v", reply.MsgHdr, sent.MsgHdr)
	}
	if !slices.Equal(reply.Question, sent.Question) {
		tb.Errorf("question %v, the next plugin's was %v", reply.Question, sent.Question)
	}
	if !georouteTestSameRRs(reply.Ns, sent.Ns) {
		tb.Errorf("authority %v, the next plugin's was %v", reply.Ns, sent.Ns)
	}
	noOPT := func(rrs []dns.RR) []dns.RR {
		return slices.DeleteFunc(slices.Clone(rrs), func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	}
	if got, want := noOPT(reply.Extra), noOPT(sent.Extra); !georouteTestSameRRs(got, want) {
		tb.Errorf("additional %v, the next plugin's was %v", got, want)
	}
	if sentOPT := sent.IsEdns0(); sentOPT != nil {
		var kept []dns.EDNS0
		if o := reply.IsEdns0(); o != nil {
			kept = slices.DeleteFunc(slices.Clone(o.Option), func(e dns.EDNS0) bool { return e.Option() == dns.EDNS0SUBNET })
		}
		want := slices.DeleteFunc(slices.Clone(sentOPT.Option), func(e dns.EDNS0) bool { return e.Option() == dns.EDNS0SUBNET })
		if len(kept) != len(want) || (len(kept) > 0 && !reflect.DeepEqual(kept, want)) {
			tb.Errorf("OPT options %v, the next plugin's were %v", kept, want)
		}
	}
	for _, rr := range reply.Answer {
		if t := rr.Header().Rrtype; t != dns.TypeA && t != dns.TypeAAAA {
			continue
		}
		if !slices.ContainsFunc(sent.Answer, func(s dns.RR) bool { return dns.IsDuplicate(rr, s) }) {
			tb.Errorf("answer %v was not in the next plugin's answer: an invented address", rr)
		}
		if rr.Header().Ttl > 300 {
			tb.Errorf("answer %v has a TTL above the zone's", rr)
		}
	}
}

type georouteTestCase struct {
	name   string
	props  string // added to the georoute block
	remote string // the query's source; default 10.240.0.1, which the db does not know
	qname  string // default www.example.org.
	qtype  uint16 // default A
	qclass uint16 // default IN
	ecs    string // see ecsTestQuery
	wire   []byte // a hand-made query instead of qname/qtype/ecs
	down   []string
	// zoneOPT makes the next plugin put its own OPT in replies: "cookie",
	// or "cookie+ecs" (as a plugin that echoes ECS itself would).
	zoneOPT string
	// want is the answer section; nil: the next plugin's, untouched.
	want []string
	// scope is the ECS SCOPE the reply must carry; -1: no ECS in the reply.
	scope int
	// formErr expects a FORMERR with OPT, without asking the next plugin.
	formErr bool
	// counter, when set, must grow by one.
	counter prometheus.Counter
}

func TestServeDNS(t *testing.T) {
	www := func(addrs ...string) []string { return georouteTestWant("www.example.org.", 30, "A", addrs...) }
	www6 := func(addrs ...string) []string { return georouteTestWant("www.example.org.", 30, "AAAA", addrs...) }
	const (
		nyc, lhr, nrt    = "192.0.2.10", "198.51.100.10", "203.0.113.10"
		nyc6, lhr6, nrt6 = "2001:db8:1::10", "2001:db8:2::10", "2001:db8:3::10"
		frankfurtServer  = "192.0.2.200"
		sydneyServer     = "203.0.113.200"
		// noMatch is the SCOPE of an unlocated 8.8.8.0: the database's
		// no-match block around it in testdata/geo.mmdb is 8.0.0.0/5 (see
		// geodb_test.go), but that holds 10.0.0.0/8, whose ECS clients are
		// answered by their resolver's location: 8.0.0.0/7 is the widest
		// block that does not.
		noMatch = 7
	)
	malformedScope := ecsTestWire(ecsTestSubnet(1, 24, 24, 198, 18, 2))
	tests := []georouteTestCase{
		// Located by ECS.
		{name: "client in New York by ECS gets nyc", ecs: "198.18.1.0/24", want: www(nyc), scope: 24},
		{name: "client in London by ECS gets lhr", ecs: "198.18.2.0/24", want: www(lhr), scope: 24},
		{name: "client in Tokyo by ECS gets nrt", ecs: "198.18.3.0/24", want: www(nrt), scope: 24},
		{name: "client in Paris gets London", ecs: "198.18.4.0/24", want: www(lhr), scope: 24},
		{name: "client in Sydney gets Tokyo", ecs: "198.18.5.0/24", want: www(nrt), scope: 24},
		{name: "client in Sao Paulo gets New York", ecs: "198.18.6.0/24", want: www(nyc), scope: 24},
		{name: "client in San Francisco gets New York with SCOPE 25", ecs: "198.18.8.0/25", want: www(nyc), scope: 25},
		{name: "client in Frankfurt gets London", ecs: "198.18.9.0/24", want: www(lhr), scope: 24},
		{name: "ECS /32 inside a /24 network gets SCOPE 24", ecs: "198.18.2.77/32", want: www(lhr), scope: 24},
		{name: "ECS /23 gets SCOPE 24, longer than SOURCE", ecs: "198.18.2.0/23", want: www(lhr), scope: 24},
		{name: "IPv6 client in Tokyo by ECS gets nrt's AAAA", qtype: dns.TypeAAAA, ecs: "2001:db8:300::/48", want: www6(nrt6), scope: 48},
		{name: "IPv6 ECS /56 inside a /48 network gets SCOPE 48", qtype: dns.TypeAAAA, ecs: "2001:db8:200::/56", want: www6(lhr6), scope: 48},
		{name: "IPv4-mapped FAMILY 2 ECS is located as IPv4 with SCOPE 24+96", ecs: "::ffff:198.18.2.0/120", want: www(lhr), scope: 120},
		{name: "documentation-range ECS is located, not treated as private", ecs: "192.0.2.128/25", want: www(lhr), scope: 25},
		{name: "IPv6 client gets A records routed too", ecs: "2001:db8:300::/48", want: www(nrt), scope: 48},
		{name: "query name in capitals is routed", qname: "WWW.Example.ORG.", ecs: "198.18.3.0/24", want: www(nrt), scope: 24},

		// Located by the source address.
		{name: "client in Tokyo by source address gets nrt without ECS", remote: "127.0.0.3", want: www(nrt), scope: -1},
		{name: "client in London by source address gets lhr", remote: "127.0.0.2", want: www(lhr), scope: -1},
		{name: "TCP source address is used too", remote: "tcp:127.0.0.3", want: www(nrt), scope: -1},
		{name: "IPv6 source address ::1 is located in Tokyo", remote: "::1", qtype: dns.TypeAAAA, want: www6(nrt6), scope: -1},
		{name: "IPv4-mapped source address is looked up as IPv4", remote: "::ffff:127.0.0.4", want: www(nyc), scope: -1},
		{name: "EDNS query without ECS gets no ECS back", remote: "127.0.0.2", ecs: "opt", want: www(lhr), scope: -1},
		{name: "ECS SOURCE 0 locates by source address with SCOPE 0", remote: "127.0.0.4", ecs: "0.0.0.0/0", want: www(nyc), scope: 0},
		{name: "FAMILY 2 SOURCE 0 locates by source address with SCOPE 0", remote: "127.0.0.3", ecs: "::/0", want: www(nrt), scope: 0},
		{name: "private ECS 10.1.2.0/24 locates by source address with SCOPE 8", remote: "127.0.0.2", ecs: "10.1.2.0/24", want: www(lhr), scope: 8},
		{name: "ECS in 100.64.0.0/10 gives SCOPE 10", remote: "127.0.0.3", ecs: "100.64.1.0/24", want: www(nrt), scope: 10},
		{name: "ECS in 192.168.0.0/16 gives SCOPE 16", remote: "127.0.0.3", ecs: "192.168.7.0/24", want: www(nrt), scope: 16},
		{name: "ECS in fc00::/7 gives SCOPE 7", remote: "127.0.0.3", qtype: dns.TypeAAAA, ecs: "fd00::/8", want: www6(nrt6), scope: 7},
		{name: "ECS ::1/128 gives SCOPE 128 and the source address decides", remote: "127.0.0.2", ecs: "::1/128", want: www(lhr), scope: 128},
		{name: "IPv4-mapped private ECS gives SCOPE 8+96", remote: "127.0.0.2", ecs: "::ffff:10.0.0.0/104", want: www(lhr), scope: 104},
		{name: "private ECS from a source the db does not know falls back to all", ecs: "10.1.2.0/24", want: www(nyc, lhr, nrt), scope: 8},

		// answers N.
		{name: "answers 2: client in Paris gets London then New York", props: "answers 2", ecs: "198.18.4.0/24", want: www(lhr, nyc), scope: 24},
		{name: "answers 2: client in Tokyo gets Tokyo then London", props: "answers 2", ecs: "198.18.3.0/24", want: www(nrt, lhr), scope: 24},
		{name: "answers 5 keeps the three pops nearest first", props: "answers 5", ecs: "198.18.5.0/24", want: www(nrt, nyc, lhr), scope: 24},
		{name: "answers 2 for AAAA", props: "answers 2", qtype: dns.TypeAAAA, ecs: "2001:db8:100::/48", want: www6(nyc6, lhr6), scope: 48},
		{name: "equidistant pops: the first declared wins whatever the answer order", qname: "tie.example.org.", ecs: "198.18.2.0/24",
			want: georouteTestWant("tie.example.org.", 30, "A", "192.0.2.31"), scope: 24},
		{name: "answers 2: equidistant pops in declaration order", props: "answers 2", qname: "tie.example.org.", ecs: "198.18.2.0/24",
			want: georouteTestWant("tie.example.org.", 30, "A", "192.0.2.31", "192.0.2.32"), scope: 24},

		// ttl.
		{name: "ttl 600 keeps the zone's TTL of 300", props: "ttl 600", ecs: "198.18.2.0/24",
			want: georouteTestWant("www.example.org.", 300, "A", lhr), scope: 24},
		{name: "a TTL below the cap is kept", qname: "short.example.org.", ecs: "198.18.2.0/24",
			want: georouteTestWant("short.example.org.", 10, "A", lhr), scope: 24},
		{name: "ttl 0 gives TTL 0", props: "ttl 0", ecs: "198.18.2.0/24", want: georouteTestWant("www.example.org.", 0, "A", lhr), scope: 24},
		{name: "fallback answers are TTL-capped too", ecs: "8.8.8.0/24", want: www(nyc, lhr, nrt), scope: noMatch},

		{name: "a SCOPE never holds a special-purpose block whose clients are answered by the resolver", remote: "127.0.0.3", ecs: "100.1.2.0/24",
			want: www(nyc, lhr, nrt), scope: 10},
		// Fallbacks.
		{name: "client not in the db gets every address with the no-match SCOPE", ecs: "8.8.8.0/24", want: www(nyc, lhr, nrt), scope: noMatch},
		{name: "client whose record has no coordinates is not at 0,0: every address", ecs: "198.18.7.0/24", want: www(nyc, lhr, nrt), scope: 24},
		{name: "fallback LAT LON: unlocated client stands in Tokyo", props: "fallback 35.6762 139.6503", ecs: "8.8.8.0/24", want: www(nrt), scope: noMatch},
		{name: "fallback LAT LON with answers 2", props: "fallback 35.6762 139.6503\nanswers 2", ecs: "8.8.8.0/24", want: www(nrt, lhr), scope: noMatch},
		{name: "fallback LAT LON for an unknown source address", props: "fallback 51.5 0", want: www(lhr), scope: -1},
		{name: "source address the db does not know falls back to all", want: www(nyc, lhr, nrt), scope: -1},
		{name: "a writer without a source address falls back to all", remote: "none", want: www(nyc, lhr, nrt), scope: -1},

		// Health.
		{name: "unhealthy pop is skipped: client in London gets New York", ecs: "198.18.2.0/24", down: []string{"lhr"}, want: www(nyc), scope: 24},
		{name: "answers 2 skips the unhealthy pop", props: "answers 2", ecs: "198.18.2.0/24", down: []string{"lhr"}, want: www(nyc, nrt), scope: 24},
		{name: "unhealthy pops are dropped from the fallback too", ecs: "8.8.8.0/24", down: []string{"nyc"}, want: www(lhr, nrt), scope: noMatch},
		{name: "all down: fail open, client in London still gets London", ecs: "198.18.2.0/24", down: []string{"nyc", "lhr", "nrt"},
			want: www(lhr), scope: 24, counter: failOpenCount.WithLabelValues("")},
		{name: "all down and the client not located: every address", ecs: "8.8.8.0/24", down: []string{"nyc", "lhr", "nrt"}, want: www(nyc, lhr, nrt), scope: noMatch},
		{name: "one healthy pop left gives SCOPE 0: the answer is the same everywhere", ecs: "198.18.2.0/24", down: []string{"nyc", "lhr"}, want: www(nrt), scope: 0},

		// Addresses of no pop.
		{name: "client in Frankfurt gets the Frankfurt server no pop claims", qname: "mixed.example.org.", ecs: "198.18.9.0/24",
			want: georouteTestWant("mixed.example.org.", 30, "A", frankfurtServer), scope: 24},
		{name: "client in Sydney gets the Sydney server no pop claims", qname: "mixed.example.org.", ecs: "198.18.5.0/24",
			want: georouteTestWant("mixed.example.org.", 30, "A", sydneyServer), scope: 24},
		{name: "client in New York gets the pop among anonymous servers", qname: "mixed.example.org.", ecs: "198.18.1.0/24",
			want: georouteTestWant("mixed.example.org.", 30, "A", nyc), scope: 24},
		{name: "an address the db cannot place is dropped when others are located", props: "answers 5", qname: "anon.example.org.", ecs: "198.18.2.0/24",
			want: georouteTestWant("anon.example.org.", 30, "A", frankfurtServer, sydneyServer), scope: 24},
		{name: "no address can be placed: all kept in answer order", qname: "dark.example.org.", ecs: "198.18.2.0/24",
			want: georouteTestWant("dark.example.org.", 30, "A", "198.51.100.98", "198.51.100.99"), scope: 24},
		{name: "client not located keeps every address, anonymous ones included", qname: "mixed.example.org.", ecs: "8.8.8.0/24",
			want: georouteTestWant("mixed.example.org.", 30, "A", nyc, lhr, frankfurtServer, sydneyServer), scope: noMatch},

		// What passes unchanged.
		{name: "RRSIG-covered RRset passes unchanged, TTL included", qname: "signed.example.org.", ecs: "198.18.2.0/24", scope: 0,
			counter: requestCount.WithLabelValues("", "", "signed")},
		{name: "CNAME to a routed name: the end of the chain is routed", qname: "alias.example.org.", ecs: "198.18.2.0/24",
			want: append([]string{"alias.example.org. 300 IN CNAME www.example.org."}, www(lhr)...), scope: 24},
		{name: "CNAME from a routed name to another name passes unchanged", qname: "golias.example.org.", ecs: "198.18.2.0/24", scope: 0},
		{name: "CNAME query passes unchanged", qname: "alias.example.org.", qtype: dns.TypeCNAME, ecs: "198.18.2.0/24", scope: 0},
		{name: "MX of a routed name passes unchanged with SCOPE 0", qtype: dns.TypeMX, ecs: "198.18.2.0/24", scope: 0},
		{name: "TXT of a routed name passes unchanged with SCOPE 0", qtype: dns.TypeTXT, ecs: "198.18.2.0/24", scope: 0},
		{name: "a name that is not configured passes unchanged with SCOPE 0", qname: "static.example.org.", ecs: "198.18.2.0/24", scope: 0},
		{name: "a name that is not configured passes unchanged without ECS", qname: "static.example.org.", remote: "127.0.0.2", scope: -1},
		{name: "NXDOMAIN passes unchanged with SCOPE 0", qname: "nx.example.org.", ecs: "198.18.2.0/24", scope: 0},
		{name: "NXDOMAIN without ECS gets no ECS", qname: "nx.example.org.", scope: -1},
		{name: "NODATA of a routed name passes unchanged with SCOPE 0", qname: "short.example.org.", qtype: dns.TypeAAAA, ecs: "198.18.2.0/24", scope: 0},
		{name: "class CHAOS passes unchanged with SCOPE 0", qclass: dns.ClassCHAOS, ecs: "198.18.2.0/24", scope: 0},
		{name: "the next plugin's OPT and cookie are kept and ECS is added", zoneOPT: "cookie", ecs: "198.18.2.0/24", want: www(lhr), scope: 24},
		{name: "the next plugin's own ECS is replaced by georoute's, its cookie kept", zoneOPT: "cookie+ecs", ecs: "198.18.2.0/24", want: www(lhr), scope: 24},
		{name: "the next plugin's own ECS is replaced on unrouted answers too", zoneOPT: "cookie+ecs", qtype: dns.TypeMX, ecs: "198.18.2.0/24", scope: 0},
		{name: "the next plugin's OPT is kept without ECS for a query without ECS", zoneOPT: "cookie", ecs: "opt", remote: "127.0.0.2", want: www(lhr), scope: -1},

		// Malformed ECS.
		{name: "SCOPE not 0 is FORMERR with OPT", wire: malformedScope, formErr: true, counter: ecsCount.WithLabelValues("formerr")},
		{name: "a bit beyond SOURCE is FORMERR", wire: ecsTestWire(ecsTestSubnet(1, 20, 0, 198, 18, 31)), formErr: true},
		{name: "ADDRESS too long is FORMERR", wire: ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18, 2, 0)), formErr: true},
		{name: "ADDRESS too short is FORMERR", wire: ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18)), formErr: true},
		{name: "two ECS options are FORMERR", wire: ecsTestWire(ecsTestJoin(ecsTestSubnet(1, 24, 0, 198, 18, 2), ecsTestSubnet(1, 24, 0, 198, 18, 3))), formErr: true},
		{name: "two OPT RRs are FORMERR", wire: ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18, 2), nil), formErr: true},
		{name: "FAMILY 0 is FORMERR", wire: ecsTestWire(ecsTestSubnet(0, 0, 0)), formErr: true},
		{name: "malformed ECS from a source the db knows is still FORMERR", remote: "127.0.0.2", wire: malformedScope, formErr: true},

		// The ecs property.
		{name: "ecs off: a valid ECS is neither used nor echoed", props: "ecs off", remote: "127.0.0.3", ecs: "198.18.2.0/24", want: www(nrt), scope: -1,
			counter: ecsCount.WithLabelValues("ignored")},
		{name: "ecs off: a malformed ECS is ignored like an unknown option", props: "ecs off", remote: "127.0.0.3", wire: malformedScope, want: www(nrt), scope: -1},
		{name: "ecs trust: a trusted resolver's ECS is used", props: "ecs trust 127.0.0.0/8", remote: "127.0.0.3", ecs: "198.18.2.0/24", want: www(lhr), scope: 24,
			counter: ecsCount.WithLabelValues("used")},
		{name: "ecs trust: an untrusted resolver's ECS is ignored and not echoed", props: "ecs trust 127.0.0.0/8", remote: "::1", ecs: "198.18.2.0/24", want: www(nrt), scope: -1},
		{name: "ecs trust: an untrusted resolver's malformed ECS is no FORMERR", props: "ecs trust 127.0.0.0/8", remote: "::1", wire: malformedScope, want: www(nrt), scope: -1},
		{name: "ecs trust: a trusted resolver's malformed ECS is FORMERR", props: "ecs trust 127.0.0.0/8", remote: "127.0.0.3", wire: malformedScope, formErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			georouteTestRun(t, tc)
		})
	}
}

func georouteTestRun(t *testing.T, tc georouteTestCase) {
	t.Helper()
	g := georouteTestNew(t, tc.props)
	georouteTestSetDown(t, g, tc.down...)
	z := georouteTestNewZone(t)
	if tc.zoneOPT != "" {
		z.opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232},
			Option: []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}}
		if tc.zoneOPT == "cookie+ecs" {
			z.opt.Option = append([]dns.EDNS0{&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IP{198, 18, 9, 0}}}, z.opt.Option...)
		}
		z.rrsets[georouteTestKey{"zone.opt.", dns.TypeOPT}] = []dns.RR{z.opt}
		z.snapshot[georouteTestKey{"zone.opt.", dns.TypeOPT}] = []dns.RR{dns.Copy(z.opt)}
	}
	var q *dns.Msg
	if tc.wire != nil {
		q = ecsTestUnpack(t, tc.wire)
	} else {
		qname, qtype := cmp.Or(tc.qname, "www.example.org."), cmp.Or(tc.qtype, dns.TypeA)
		q = ecsTestQuery(t, qname, qtype, tc.ecs)
		if tc.qclass != 0 {
			q.Question[0].Qclass = tc.qclass
		}
	}
	query := q.Copy()
	var before float64
	if tc.counter != nil {
		before = georouteTestCount(t, tc.counter)
	}

	reply := georouteTestServe(t, g, z, cmp.Or(tc.remote, "10.240.0.1"), q)

	z.checkUnmutated(t)
	if d := georouteTestDiffMsg(q, query); d != "" {
		t.Errorf("the query was mutated: %s", d)
	}
	if tc.counter != nil {
		if d := georouteTestCount(t, tc.counter) - before; d != 1 {
			t.Errorf("counter grew by %v, want 1", d)
		}
	}
	if _, err := reply.Copy().Pack(); err != nil {
		t.Fatalf("reply does not pack: %v", err)
	}
	opts, ecs := georouteTestECS(reply)
	if tc.formErr {
		if reply.Rcode != dns.RcodeFormatError || len(opts) != 1 {
			t.Fatalf("rcode %s with %d OPT RRs; want FORMERR with one OPT", dns.RcodeToString[reply.Rcode], len(opts))
		}
		if z.calls != 0 {
			t.Fatal("the next plugin was asked about a malformed query")
		}
		if reply.Id != q.Id || !slices.Equal(reply.Question, q.Question) {
			t.Fatalf("FORMERR %v does not answer the query", reply)
		}
		return
	}
	if z.calls != 1 {
		t.Fatalf("the next plugin was called %d times", z.calls)
	}
	georouteTestCheckContract(t, z, reply)
	want := tc.want
	if want == nil {
		want = georouteTestFormat(z.sentCopy.Answer)
	}
	if got := georouteTestFormat(reply.Answer); !slices.Equal(got, want) {
		t.Errorf("answer\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if tc.scope < 0 {
		if len(ecs) != 0 {
			t.Errorf("reply carries ECS %v; the query's was not honoured", ecs)
		}
		return
	}
	if len(opts) != 1 || len(ecs) != 1 {
		t.Fatalf("%d OPT RRs and %d ECS options in the reply; want exactly one of each", len(opts), len(ecs))
	}
	sent := q.IsEdns0()
	var asked *dns.EDNS0_SUBNET
	for _, e := range sent.Option {
		if s, ok := e.(*dns.EDNS0_SUBNET); ok {
			asked = s
		}
	}
	got := ecs[0]
	if got.Family != asked.Family || got.SourceNetmask != asked.SourceNetmask || !got.Address.Equal(asked.Address) {
		t.Errorf("ECS echo %v does not echo the query's %v", got, asked)
	}
	if int(got.SourceScope) != tc.scope {
		t.Errorf("SCOPE %d, want %d", got.SourceScope, tc.scope)
	}
}

func TestServeDNSSameScopeSameAnswer(t *testing.T) {
	// Design §1.3: every address inside the SCOPE block gets the same
	// RRset. Ask from random addresses of the block and compare.
	tests := []struct {
		name, ecs, remote string
		qtype             uint16
	}{
		{"client network in London", "198.18.2.0/24", "", dns.TypeA},
		{"client network in San Francisco (/25)", "198.18.8.0/25", "", dns.TypeA},
		{"client network without coordinates", "198.18.7.0/24", "", dns.TypeA},
		{"client network the db does not know", "8.8.8.0/24", "", dns.TypeA},
		{"private client network, resolver in Tokyo", "10.9.8.0/24", "127.0.0.3", dns.TypeA},
		{"IPv6 client network in Tokyo", "2001:db8:300::/48", "", dns.TypeAAAA},
		{"IPv4-mapped client network in London", "::ffff:198.18.2.0/120", "", dns.TypeA},
	}
	r := rand.New(rand.NewPCG(5, 8))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := georouteTestNew(t, "answers 2")
			remote := cmp.Or(tc.remote, "10.240.0.1")
			first := georouteTestServe(t, g, georouteTestNewZone(t), remote, ecsTestQuery(t, "www.example.org.", tc.qtype, tc.ecs))
			_, ecs := georouteTestECS(first)
			if len(ecs) != 1 {
				t.Fatalf("no ECS in the reply")
			}
			addr := netip.MustParsePrefix(tc.ecs).Addr()
			block := netip.PrefixFrom(addr, int(ecs[0].SourceScope)).Masked()
			want := georouteTestFormat(first.Answer)
			for range 20 {
				a := geodbTestRandomIn(r, block)
				q := ecsTestQuery(t, "www.example.org.", tc.qtype, netip.PrefixFrom(a, a.BitLen()).String())
				reply := georouteTestServe(t, g, georouteTestNewZone(t), remote, q)
				if got := georouteTestFormat(reply.Answer); !slices.Equal(got, want) {
					t.Fatalf("%s in the SCOPE block %s got %v; %s got %v", a, block, got, tc.ecs, want)
				}
			}
		})
	}
}

func TestServeDNSErrorFromBelow(t *testing.T) {
	// A plugin below that returns an error rcode without writing leaves the
	// reply to the server, which would drop the ECS echo (design §5: every
	// reply to a query with a valid ECS option carries one).
	servfail := plugin.HandlerFunc(func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
		return dns.RcodeServerFailure, nil
	})
	tests := []struct {
		name, ecs string
		scope     int
	}{
		{"SERVFAIL from below is written with the ECS echo, SCOPE 0", "198.18.2.0/24", 0},
		{"SERVFAIL from below without ECS is left to the server", "", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := georouteTestNew(t, "")
			g.Next = servfail
			rec := dnstest.NewRecorder(georouteTestRemote("10.240.0.1"))
			q := ecsTestQuery(t, "www.example.org.", dns.TypeA, tc.ecs)
			rcode, _ := g.ServeDNS(context.Background(), rec, q)
			if tc.scope < 0 {
				if rec.Msg != nil || rcode != dns.RcodeServerFailure {
					t.Fatalf("wrote %v, returned %s; want nothing written and SERVFAIL returned", rec.Msg, dns.RcodeToString[rcode])
				}
				return
			}
			if rec.Msg == nil || rec.Msg.Rcode != dns.RcodeServerFailure || !plugin.ClientWrite(rcode) {
				t.Fatalf("wrote %v, returned %s; want SERVFAIL written by georoute", rec.Msg, dns.RcodeToString[rcode])
			}
			_, ecs := georouteTestECS(rec.Msg)
			if len(ecs) != 1 || int(ecs[0].SourceScope) != tc.scope {
				t.Fatalf("ECS %v in the SERVFAIL, want one with SCOPE %d", ecs, tc.scope)
			}
		})
	}
}

func TestServeDNSWithoutQuestion(t *testing.T) {
	g := georouteTestNew(t, "")
	z := georouteTestNewZone(t)
	q := new(dns.Msg)
	q.Id = 7
	reply := georouteTestServe(t, g, z, "10.240.0.1", q)
	if z.calls != 1 || reply != z.sent {
		t.Fatal("a query without a question was not passed to the next plugin untouched")
	}
}

func TestServeDNSPassesNilReply(t *testing.T) {
	// A plugin below may write nil (it never should); the writer passes it
	// on rather than panicking.
	g := georouteTestNew(t, "")
	g.Next = plugin.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, _ *dns.Msg) (int, error) {
		if err := w.WriteMsg(nil); err != nil {
			return dns.RcodeServerFailure, err
		}
		return dns.RcodeSuccess, nil
	})
	w := &georouteTestNilRecorder{georouteTestWriter: *georouteTestRemote("127.0.0.2")}
	if _, err := g.ServeDNS(context.Background(), w, ecsTestQuery(t, "www.example.org.", dns.TypeA, "198.18.2.0/24")); err != nil {
		t.Fatal(err)
	}
	if !w.wrote || w.msg != nil {
		t.Fatalf("wrote %v %v; want nil passed on", w.wrote, w.msg)
	}
}

type georouteTestNilRecorder struct {
	georouteTestWriter
	wrote bool
	msg   *dns.Msg
}

func (w *georouteTestNilRecorder) WriteMsg(m *dns.Msg) error {
	w.wrote, w.msg = true, m
	return nil
}

// A query decides on one view of health: with the checker flipping the one
// healthy pop up and down, every answer still holds it (healthy, or every
// candidate down and failing open), never nothing.
func TestHealthChangingDuringAQueryNeverEmptiesTheAnswer(t *testing.T) {
	g := georouteTestNew(t, "")
	g.Next = georouteTestNewZone(t)
	georouteTestSetDown(t, g, "nyc", "nrt", "tie-first", "tie-second")
	t.Cleanup(func() { georouteTestSetDown(t, g) })
	lhr := g.byAddr[netip.MustParseAddr("198.51.100.10")]
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			lhr.down.Store(!lhr.down.Load())
		}
	}()
	empty := 0
	for range 20000 {
		q := new(dns.Msg)
		q.SetQuestion("www.example.org.", dns.TypeA)
		rec := dnstest.NewRecorder(georouteTestRemote("127.0.0.2"))
		g.ServeDNS(context.Background(), rec, q)
		if len(rec.Msg.Answer) == 0 {
			empty++
		}
	}
	stop.Store(true)
	<-done
	if empty > 0 {
		t.Fatalf("%d of 20000 answers lost every address while health changed", empty)
	}
}

// georouteTestRefusingZone writes a REFUSED reply and returns REFUSED, as
// template does for `rcode REFUSED`.
type georouteTestRefusingZone struct{}

func (georouteTestRefusingZone) Name() string { return "template" }

func (georouteTestRefusingZone) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeRefused)
	m.Ns = []dns.RR{test.SOA("example.org. 300 IN SOA ns1.example.org. h.example.org. 1 2 3 4 5")}
	w.WriteMsg(m)
	return dns.RcodeRefused, nil
}

// georouteTestAllWrites keeps every reply written, and what each said when
// it was written.
type georouteTestAllWrites struct {
	*georouteTestWriter
	msgs  []*dns.Msg
	texts []string
}

func (k *georouteTestAllWrites) WriteMsg(m *dns.Msg) error {
	k.msgs = append(k.msgs, m)
	k.texts = append(k.texts, m.String())
	return nil
}

// Write records a wire-format reply as the message it holds.
func (k *georouteTestAllWrites) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	return len(b), k.WriteMsg(m)
}

// A plugin below that writes its error reply and also returns the error
// code gets that one reply, with the echo; georoute writes its own only
// when nothing was written.
func TestErrorReplyOfTheNextPluginIsWrittenOnce(t *testing.T) {
	g := georouteTestNew(t, "")
	g.Next = georouteTestRefusingZone{}
	w := &georouteTestAllWrites{georouteTestWriter: georouteTestRemote("127.0.0.2")}
	g.ServeDNS(context.Background(), w, ecsTestQuery(t, "www.example.org.", dns.TypeA, "198.18.2.0/24"))
	if len(w.msgs) != 1 {
		t.Fatalf("%d replies written; want the next plugin's one", len(w.msgs))
	}
	if got := w.msgs[0].String(); got != w.texts[0] {
		t.Errorf("the reply changed after it was written:\nwas %s\nnow %s", w.texts[0], got)
	}
	if len(w.msgs[0].Ns) != 1 || w.msgs[0].IsEdns0() == nil {
		t.Errorf("reply lost its authority section or its OPT: %s", w.msgs[0])
	}
}

// georouteTestRawZone answers www.example.org A in wire format through
// Write, as a plugin that forwards raw packets would, and may try to write
// a second reply.
type georouteTestRawZone struct{ twice bool }

func (georouteTestRawZone) Name() string { return "zone" }

func (z georouteTestRawZone) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetReply(r)
	for _, a := range []string{"192.0.2.10", "198.51.100.10", "203.0.113.10"} {
		rr, _ := dns.NewRR("www.example.org. 300 IN A " + a)
		m.Answer = append(m.Answer, rr)
	}
	wire, err := m.Pack()
	if err != nil {
		return dns.RcodeServerFailure, err
	}
	if _, err := w.Write(wire); err != nil {
		return dns.RcodeServerFailure, err
	}
	if z.twice {
		if err := w.WriteMsg(m); err == nil {
			return dns.RcodeServerFailure, fmt.Errorf("a second reply was accepted")
		}
	}
	return dns.RcodeSuccess, nil
}

func TestRawWritesAreRouted(t *testing.T) {
	for _, twice := range []bool{false, true} {
		t.Run(fmt.Sprintf("wire-format reply routed, second reply refused=%v", twice), func(t *testing.T) {
			g := georouteTestNew(t, "")
			g.Next = georouteTestRawZone{twice: twice}
			w := &georouteTestAllWrites{georouteTestWriter: georouteTestRemote("10.240.0.1")}
			if _, err := g.ServeDNS(context.Background(), w, ecsTestQuery(t, "www.example.org.", dns.TypeA, "198.18.3.0/24")); err != nil {
				t.Fatalf("ServeDNS: %v", err)
			}
			if len(w.msgs) != 1 {
				t.Fatalf("%d replies reached the client, want 1", len(w.msgs))
			}
			if got := georouteTestFormat(w.msgs[0].Answer); !slices.Equal(got, georouteTestWant("www.example.org.", 30, "A", "203.0.113.10")) {
				t.Fatalf("answer %v, want Tokyo's pop with the TTL capped", got)
			}
			if _, ecs := georouteTestECS(w.msgs[0]); len(ecs) != 1 || ecs[0].SourceScope != 24 {
				t.Fatalf("ECS %v, want one option with SCOPE 24", ecs)
			}
		})
	}
}

// georouteTestLateZone keeps the writer past its ServeDNS, as cache's
// stale refresh does, and uses it from another goroutine.
type georouteTestLateZone struct {
	later chan dns.ResponseWriter
	twice bool
}

func (georouteTestLateZone) Name() string { return "zone" }

func (z georouteTestLateZone) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetReply(r)
	w.WriteMsg(m)
	if z.twice {
		w.WriteMsg(m)
	}
	z.later <- w
	return dns.RcodeSuccess, nil
}

func TestWriterUsedAfterTheQuery(t *testing.T) {
	g := georouteTestNew(t, "")
	z := georouteTestLateZone{later: make(chan dns.ResponseWriter, 1)}
	g.Next = z
	w := &georouteTestAllWrites{georouteTestWriter: georouteTestRemote("10.240.0.1")}
	if _, err := g.ServeDNS(context.Background(), w, ecsTestQuery(t, "www.example.org.", dns.TypeA, "198.18.3.0/24")); err != nil {
		t.Fatal(err)
	}
	kept := <-z.later
	done := make(chan error)
	go func() {
		// Another query takes the pooled state meanwhile.
		georouteTestServe(t, g, georouteTestNewZone(t), "10.240.0.1", ecsTestQuery(t, "www.example.org.", dns.TypeA, "198.18.1.0/24"))
		done <- nil
	}()
	if got := kept.RemoteAddr().String(); got != "10.240.0.1:40212" {
		t.Errorf("RemoteAddr after the query: %s, want the client's", got)
	}
	if err := kept.WriteMsg(new(dns.Msg)); err == nil {
		t.Error("a reply written after the query was accepted")
	}
	<-done
	if len(w.msgs) != 1 {
		t.Errorf("the client got %d replies, want 1", len(w.msgs))
	}
}

func TestZoneTransferWithECSGetsEveryMessage(t *testing.T) {
	g := georouteTestNew(t, "")
	g.Next = georouteTestLateZone{later: make(chan dns.ResponseWriter, 1), twice: true}
	w := &georouteTestAllWrites{georouteTestWriter: georouteTestRemote("10.240.0.1")}
	if _, err := g.ServeDNS(context.Background(), w, ecsTestQuery(t, "example.org.", dns.TypeAXFR, "198.18.3.0/24")); err != nil {
		t.Fatal(err)
	}
	if len(w.msgs) != 2 {
		t.Fatalf("the client got %d messages of the transfer, want 2", len(w.msgs))
	}
	for _, m := range w.msgs {
		if _, ecs := georouteTestECS(m); len(ecs) != 1 || ecs[0].SourceScope != 0 {
			t.Errorf("transfer message ECS %v, want the echo with SCOPE 0", ecs)
		}
	}
}
