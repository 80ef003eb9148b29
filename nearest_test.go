package georoute

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/miekg/dns"
)

func nearestTestA(addr string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP(addr).To4()}
}

// nearestTestSite is a located candidate of site at lat, lon.
func nearestTestSite(addr string, site int, lat, lon float64) candidate {
	return candidate{rr: nearestTestA(addr), site: site, at: pointAt(lat, lon), located: true}
}

func nearestTestUnlocated(addr string, site int) candidate {
	return candidate{rr: nearestTestA(addr), site: site}
}

func nearestTestAddrs(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		out = append(out, addrOf(rr).String())
	}
	return out
}

// nearestTestCandidates turns records into candidates as a decision does.
func nearestTestCandidates(g *GeoRoute, rrs []dns.RR) []candidate {
	var cands []candidate
	for i, rr := range rrs {
		cands = append(cands, g.candidate(rr, i))
	}
	return cands
}

// nearestTestState reads the candidates' health as a decision does, with
// nothing drained: which ones choosing may use, and whether that failed open.
func nearestTestState(cands []candidate) (eligible []bool, failOpen bool) {
	d := decision{cands: cands}
	(&GeoRoute{}).readState(&d)
	return d.eligible, d.failOpen
}

func TestNearest(t *testing.T) {
	london := pointAt(51.5074, -0.1278)
	nyc := func(addr string) candidate { return nearestTestSite(addr, 0, 40.7128, -74.0060) }
	lhr := func(addr string) candidate { return nearestTestSite(addr, 1, 51.47, -0.4543) }
	nrt := func(addr string) candidate { return nearestTestSite(addr, 2, 35.772, 140.3929) }
	tests := []struct {
		name   string
		cands  []candidate
		client point
		n      int
		want   []string
		// nearest is the index in cands of the candidate whose site is
		// chosen first; -1 when nothing could be chosen.
		nearest int
	}{
		{"client in London gets the London site", []candidate{nyc("192.0.2.10"), lhr("198.51.100.10"), nrt("203.0.113.10")}, london, 1,
			[]string{"198.51.100.10"}, 1},
		{"two answers come nearest first", []candidate{nrt("203.0.113.10"), nyc("192.0.2.10"), lhr("198.51.100.10")}, london, 2,
			[]string{"198.51.100.10", "192.0.2.10"}, 2},
		{"n larger than the number of sites keeps every site, nearest first", []candidate{nrt("203.0.113.10"), nyc("192.0.2.10"), lhr("198.51.100.10")}, london, 10,
			[]string{"198.51.100.10", "192.0.2.10", "203.0.113.10"}, 2},
		{"every address of the chosen site is kept, in answer order", []candidate{lhr("198.51.100.11"), nyc("192.0.2.10"), lhr("198.51.100.10")}, london, 1,
			[]string{"198.51.100.11", "198.51.100.10"}, 0},
		{"a site counts once towards n however many addresses it has", []candidate{lhr("198.51.100.11"), lhr("198.51.100.10"), nyc("192.0.2.10"), nrt("203.0.113.10")}, london, 2,
			[]string{"198.51.100.11", "198.51.100.10", "192.0.2.10"}, 0},
		{"equidistant sites go by site rank, not answer order", []candidate{
			nearestTestSite("192.0.2.32", 4, 48, 2), nearestTestSite("192.0.2.31", 3, 48, 2)}, london, 1,
			[]string{"192.0.2.31"}, 1},
		{"equidistant sites both kept in rank order", []candidate{
			nearestTestSite("192.0.2.32", 4, 48, 2), nearestTestSite("192.0.2.31", 3, 48, 2)}, london, 2,
			[]string{"192.0.2.31", "192.0.2.32"}, 1},
		{"a pop wins a tie with an anonymous site in the same place", []candidate{
			nearestTestSite("192.0.2.200", 7, 50.1109, 8.6821), nearestTestSite("192.0.2.40", 5, 50.1109, 8.6821)}, london, 1,
			[]string{"192.0.2.40"}, 1},
		{"unlocated candidates are dropped when any is located", []candidate{
			nearestTestUnlocated("198.51.100.99", 8), nrt("203.0.113.10"), nearestTestUnlocated("198.51.100.98", 9)}, london, 3,
			[]string{"203.0.113.10"}, 1},
		{"all unlocated: every candidate is kept in answer order", []candidate{
			nearestTestUnlocated("198.51.100.99", 8), nearestTestUnlocated("198.51.100.98", 9), nearestTestUnlocated("198.51.100.97", 10)}, london, 1,
			[]string{"198.51.100.99", "198.51.100.98", "198.51.100.97"}, -1},
		{"the antipode is still chosen when it is the only site", []candidate{nearestTestSite("192.0.2.50", 0, -51.5074, 179.8722)}, london, 1,
			[]string{"192.0.2.50"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v verdict
			up, _ := nearestTestState(tc.cands)
			kept := nearest(tc.cands, up, tc.client, tc.n, nil, &v)
			if got := nearestTestAddrs(kept); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("kept %v, want %v", got, tc.want)
			}
			if tc.nearest < 0 {
				if v.chose || v.nearest != nil {
					t.Fatalf("verdict chose %v; nothing could be located", v.nearest)
				}
				return
			}
			if !v.chose || v.nearestAt != tc.cands[tc.nearest].at {
				t.Fatalf("nearest site at %v (chose %v), want %v", v.nearestAt, v.chose, tc.cands[tc.nearest].at)
			}
		})
	}
	t.Run("the kept records are appended to the given buffer", func(t *testing.T) {
		var buf [4]dns.RR
		var v verdict
		kept := nearest([]candidate{nyc("192.0.2.10")}, []bool{true}, london, 1, buf[:0], &v)
		if len(kept) != 1 || &kept[0] != &buf[0] {
			t.Fatal("nearest did not use the buffer it was given")
		}
	})
}

func TestCandidates(t *testing.T) {
	g := georouteTestNew(t, "")
	aaaa := func(addr string) dns.RR {
		return &dns.AAAA{Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 300}, AAAA: net.ParseIP(addr)}
	}
	tests := []struct {
		name     string
		rrs      []dns.RR
		down     []string
		want     []string
		failOpen bool
	}{
		{"every address is healthy without checks", []dns.RR{nearestTestA("192.0.2.10"), nearestTestA("198.51.100.10")}, nil,
			[]string{"192.0.2.10", "198.51.100.10"}, false},
		{"an unhealthy address is dropped", []dns.RR{nearestTestA("192.0.2.10"), nearestTestA("198.51.100.10"), nearestTestA("203.0.113.10")}, []string{"lhr"},
			[]string{"192.0.2.10", "203.0.113.10"}, false},
		{"IPv6 addresses follow their pop's health", []dns.RR{aaaa("2001:db8:1::10"), aaaa("2001:db8:2::10")}, []string{"nyc"},
			[]string{"2001:db8:2::10"}, false},
		{"all down: every address is kept (fail open)", []dns.RR{nearestTestA("192.0.2.10"), nearestTestA("198.51.100.10")}, []string{"nyc", "lhr"},
			[]string{"192.0.2.10", "198.51.100.10"}, true},
		{"an anonymous address counts as healthy, so its pop-mates being down is no fail-open", []dns.RR{nearestTestA("192.0.2.10"), nearestTestA("192.0.2.200")}, []string{"nyc"},
			[]string{"192.0.2.200"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			georouteTestSetDown(t, g, tc.down...)
			t.Cleanup(func() { georouteTestSetDown(t, g) })
			cands := nearestTestCandidates(g, tc.rrs)
			up, allDown := nearestTestState(cands)
			var got []string
			for _, rr := range keepEligible(cands, up, nil) {
				got = append(got, addrOf(rr).String())
			}
			if !reflect.DeepEqual(got, tc.want) || allDown != tc.failOpen {
				t.Fatalf("usable candidates %v, fail-open %v; want %v, %v", got, allDown, tc.want, tc.failOpen)
			}
		})
	}
	t.Run("pop addresses carry their pop's rank and place; anonymous ones come after every pop in answer order", func(t *testing.T) {
		rrs := []dns.RR{nearestTestA("203.0.113.200"), nearestTestA("198.51.100.10"), nearestTestA("198.51.100.99"), nearestTestA("192.0.2.200")}
		cands := nearestTestCandidates(g, rrs)
		lhr := g.byAddr[netip.MustParseAddr("198.51.100.10")].pop
		if cands[1].pop != lhr || cands[1].site != lhr.rank || cands[1].at != lhr.at || !cands[1].located {
			t.Errorf("pop candidate %+v", cands[1])
		}
		if cands[0].pop != nil || cands[0].site < len(g.pops) || !cands[0].located || cands[0].at != pointAt(-33.8688, 151.2093) {
			t.Errorf("anonymous candidate in Sydney %+v", cands[0])
		}
		if cands[2].located || cands[2].pop != nil {
			t.Errorf("anonymous candidate the db does not know is located: %+v", cands[2])
		}
		if !(cands[0].site < cands[2].site && cands[2].site < cands[3].site) {
			t.Errorf("anonymous sites %d, %d, %d are not in answer order", cands[0].site, cands[2].site, cands[3].site)
		}
	})
	t.Run("IPv4-mapped AAAA is matched to its IPv4 pop address", func(t *testing.T) {
		cands := nearestTestCandidates(g, []dns.RR{aaaa("::ffff:198.51.100.10")})
		if cands[0].pop == nil || cands[0].pop.id != "lhr" {
			t.Fatalf("candidate %+v is not lhr's", cands[0])
		}
	})
}

func TestOneSite(t *testing.T) {
	tests := []struct {
		name  string
		sites []int
		want  bool
	}{
		{"a single candidate is one site", []int{3}, true},
		{"two addresses of one pop are one site", []int{1, 1}, true},
		{"two pops are two sites", []int{1, 2}, false},
		{"a pop and an anonymous address are two sites", []int{1, 1, 9}, false},
	}
	t.Run("only usable candidates count: a down pop beside a healthy one leaves one site", func(t *testing.T) {
		down := &popAddress{}
		down.down.Store(true)
		cands := []candidate{{site: 1, pa: down}, {site: 2}}
		if up, _ := nearestTestState(cands); !oneSite(cands, up) {
			t.Error("oneSite = false with the other site down")
		}
		if oneSite(cands, []bool{true, true}) {
			t.Error("oneSite = true with both sites up")
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cands []candidate
			for _, s := range tc.sites {
				cands = append(cands, candidate{site: s})
			}
			up, _ := nearestTestState(cands)
			if got := oneSite(cands, up); got != tc.want {
				t.Fatalf("oneSite = %v, want %v", got, tc.want)
			}
		})
	}
}

// candidate is fillCandidate on a candidate of its own.
func (g *GeoRoute) candidate(rr dns.RR, i int) candidate {
	var c candidate
	g.fillCandidate(&c, rr, addrOf(rr), i)
	return c
}
