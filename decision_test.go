package georoute

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// decisionTestCase is one client asking for www.example.org A: the
// decision is computed from the client, the zone's answer, the database,
// health and steering alone, without a writer.
type decisionTestCase struct {
	name     string
	ecs      string   // the query's ECS subnet
	down     []string // pops whose addresses are down
	drained  []string
	override map[string][]string // CIDR → pops
	// upstreamScope, when ≥ 0, puts an ECS option with that SCOPE in the
	// next plugin's reply.
	upstreamScope int
	qname         string // default www.example.org.

	outcome  outcome
	nearest  string // "" for none
	source   string
	scope    int
	failOpen bool
	states   map[string]candState // pop → state, for the pops named
}

func decisionTestSteer(t *testing.T, g *GeoRoute, tc decisionTestCase) {
	t.Helper()
	byID := map[string]*pop{}
	for _, p := range g.pops {
		byID[p.id] = p
	}
	if len(tc.drained) > 0 {
		d := &drainSet{drained: make([]bool, len(g.pops))}
		for _, id := range tc.drained {
			d.drained[byID[id].rank] = true
		}
		g.steer.drains.Store(d)
	}
	if tc.override != nil {
		table := &overrideTable{}
		for cidr, ids := range tc.override {
			r := overrideRule{prefix: netip.MustParsePrefix(cidr)}
			for _, id := range ids {
				r.pops = append(r.pops, byID[id])
			}
			table.rules = append(table.rules, r)
		}
		g.steer.overrides.Store(table)
	}
}

func TestDecide(t *testing.T) {
	tests := []decisionTestCase{
		{name: "client in Paris gets London, SCOPE of its /24", ecs: "198.18.4.0/24",
			outcome: outcomeRouted, nearest: "lhr", source: "ecs", scope: 24},
		{name: "a drained nearest pop gets no clients: Paris goes to New York", ecs: "198.18.4.0/24", drained: []string{"lhr"},
			outcome: outcomeRouted, nearest: "nyc", source: "ecs", scope: 24, states: map[string]candState{"lhr": candDrained, "nyc": candUp}},
		{name: "every candidate drained: chosen as if none were", ecs: "198.18.4.0/24", drained: []string{"lhr", "nyc", "nrt"},
			outcome: outcomeRouted, nearest: "lhr", source: "ecs", scope: 24},
		{name: "fail open re-admits down pops, never a drained one", ecs: "198.18.4.0/24", drained: []string{"lhr"}, down: []string{"nyc", "nrt"},
			outcome: outcomeRouted, nearest: "nyc", source: "ecs", scope: 24, failOpen: true,
			states: map[string]candState{"lhr": candDrained, "nyc": candDown, "nrt": candDown}},
		{name: "an override pins Paris to Tokyo", ecs: "198.18.4.0/24", override: map[string][]string{"198.18.4.0/24": {"nrt"}},
			outcome: outcomeRouted, nearest: "nrt", source: "override", scope: 24},
		{name: "an override whose pops are down routes as usual", ecs: "198.18.4.0/24", down: []string{"nrt"},
			override: map[string][]string{"198.18.0.0/16": {"nrt"}},
			outcome:  outcomeRouted, nearest: "lhr", source: "ecs", scope: 24},
		{name: "failing open an override's pops are not up: routed as if there were none", ecs: "198.18.4.0/24", down: []string{"lhr", "nyc", "nrt"},
			override: map[string][]string{"198.18.4.0/24": {"nrt"}},
			outcome:  outcomeRouted, nearest: "lhr", source: "ecs", scope: 24, failOpen: true},
		{name: "an override inside the client's database network narrows its SCOPE", ecs: "198.18.4.0/24",
			override: map[string][]string{"198.18.4.128/25": {"nrt"}},
			outcome:  outcomeRouted, nearest: "lhr", source: "ecs", scope: 25},
		{name: "a longer upstream SCOPE wins on a tailored answer", ecs: "198.18.4.0/24", upstreamScope: 28,
			outcome: outcomeRouted, nearest: "lhr", source: "ecs", scope: 28},
		{name: "a shorter upstream SCOPE leaves georoute's", ecs: "198.18.4.0/24", upstreamScope: 16,
			outcome: outcomeRouted, nearest: "lhr", source: "ecs", scope: 24},
		{name: "an answer not tailored keeps the upstream SCOPE", ecs: "198.18.4.0/24", upstreamScope: 20, qname: "static.example.org.",
			outcome: outcomeNotRouted, scope: 20},
		{name: "an RRSIG-covered RRset is signed and passes", ecs: "198.18.4.0/24", qname: "signed.example.org.",
			outcome: outcomeSigned, source: "signed", scope: 0},
		{name: "SOURCE 0 routes by the resolver (here not located) and scopes 0", ecs: "0.0.0.0/0",
			outcome: outcomeRouted, source: "fallback", scope: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.upstreamScope == 0 {
				tc.upstreamScope = -1
			}
			g := georouteTestNew(t, "")
			georouteTestSetDown(t, g, tc.down...)
			decisionTestSteer(t, g, tc)
			z := georouteTestNewZone(t)
			qname := tc.qname
			if qname == "" {
				qname = "www.example.org."
			}
			q := ecsTestQuery(t, qname, dns.TypeA, tc.ecs)
			c, err := readClient(q, netip.MustParseAddr("10.240.0.1"), g.ecs, true)
			if err != nil {
				t.Fatal(err)
			}
			res := new(dns.Msg)
			res.SetReply(q)
			z.answer(res, q.Question[0])
			if tc.upstreamScope >= 0 {
				res.SetEdns0(1232, false)
				res.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: uint8(tc.upstreamScope), Address: c.subnet.address.AsSlice()}}
			}
			before := res.Copy()

			var d decision
			g.decide(&c, res, dns.TypeA, &d)

			if d.outcome != tc.outcome || d.source != tc.source || d.scope != tc.scope || d.failOpen != tc.failOpen {
				t.Fatalf("outcome %v source %q scope %d failOpen %v; want %v %q %d %v",
					d.outcome, d.source, d.scope, d.failOpen, tc.outcome, tc.source, tc.scope, tc.failOpen)
			}
			got := ""
			if d.nearest != nil {
				got = d.nearest.id
			}
			if tc.nearest != "" && got != tc.nearest {
				t.Errorf("nearest %q, want %q", got, tc.nearest)
			}
			if tc.nearest != "" && (len(d.kept) != 1 || d.kept[0] != d.cands[slices.IndexFunc(d.cands, func(c candidate) bool { return c.pop == d.nearest })].rr) {
				t.Errorf("kept %v, want the one record of %s", d.kept, tc.nearest)
			}
			for id, want := range tc.states {
				i := slices.IndexFunc(d.cands, func(c candidate) bool { return c.pop != nil && c.pop.id == id })
				if i < 0 || d.state[i] != want {
					t.Errorf("state of %s: %v, want %v", id, d.state, want)
				}
			}
			if georouteTestDiffMsg(res, before) != "" {
				t.Error("decide changed the reply")
			}
		})
	}
}

// TestDecisionCountsWhatItServes: the request counter, the explanation and
// the reply all come from one decision, so the pop counted is the pop
// served.
func TestDecisionCountsWhatItServes(t *testing.T) {
	g := georouteTestNew(t, "")
	z := georouteTestNewZone(t)
	before := georouteTestCount(t, requestCount.WithLabelValues("", "nyc", "ecs"))
	reply := georouteTestServe(t, g, z, "10.240.0.1", ecsTestQuery(t, "www.example.org.", dns.TypeA, "198.18.1.0/24"))
	if got := georouteTestFormat(reply.Answer); !slices.Equal(got, georouteTestWant("www.example.org.", 30, "A", "192.0.2.10")) {
		t.Fatalf("answer %v, want nyc", got)
	}
	if n := georouteTestCount(t, requestCount.WithLabelValues("", "nyc", "ecs")) - before; n != 1 {
		t.Fatalf("requests_total{pop=nyc,source=ecs} grew by %v, want 1", n)
	}
}
