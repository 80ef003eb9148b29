package test

import (
	"encoding/hex"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// wireQuery is an A query for www.example.org whose additional section holds
// one OPT RR per options list: dig cannot send two OPT RRs.
func wireQuery(t *testing.T, opts ...[]dns.EDNS0) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.example.org.", dns.TypeA)
	for _, o := range opts {
		m.Extra = append(m.Extra, &dns.OPT{
			Hdr:    dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232},
			Option: o,
		})
	}
	return m
}

// rawECS is an ECS option given as raw octets (FAMILY, SOURCE, SCOPE,
// ADDRESS), sent exactly as written: miekg/dns would pack a canonical one.
func rawECS(t *testing.T, h string) dns.EDNS0 {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: b}
}

func ecsOf(m *dns.Msg) []*dns.EDNS0_SUBNET {
	var out []*dns.EDNS0_SUBNET
	for _, rr := range m.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			for _, e := range o.Option {
				if s, ok := e.(*dns.EDNS0_SUBNET); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func optCount(m *dns.Msg) int {
	n := 0
	for _, rr := range m.Extra {
		if _, ok := rr.(*dns.OPT); ok {
			n++
		}
	}
	return n
}

func exchange(t *testing.T, s *server, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 1232}
	r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		t.Fatalf("%s exchange: %v", network, err)
	}
	if r.Id != m.Id || len(r.Question) != 1 || r.Question[0] != m.Question[0] {
		t.Fatalf("reply id %d question %v, want id %d question %v", r.Id, r.Question, m.Id, m.Question)
	}
	return r
}

func TestWire(t *testing.T) {
	t.Parallel()
	s := startServer(t, demoCorefile(), nil)
	london := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("198.18.2.0").To4()}
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"}
	unknown := &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2, 3}}

	tests := []struct {
		name    string
		query   func(t *testing.T) *dns.Msg
		rcode   int
		withOPT bool
		counted bool // georoute's own FORMERR, counted in ecs_total
	}{
		{"two OPT RRs, one with ECS, get FORMERR with OPT",
			func(t *testing.T) *dns.Msg { return wireQuery(t, nil, []dns.EDNS0{london}) }, dns.RcodeFormatError, true, true},
		{"two OPT RRs without ECS get FORMERR with OPT",
			func(t *testing.T) *dns.Msg { return wireQuery(t, nil, []dns.EDNS0{cookie}) }, dns.RcodeFormatError, true, true},
		{"lone ECS with an address longer than SOURCE gets FORMERR with OPT",
			func(t *testing.T) *dns.Msg { return wireQuery(t, []dns.EDNS0{rawECS(t, "00011800c6120200")}) }, dns.RcodeFormatError, true, true},
		{"lone ECS with an address shorter than SOURCE gets FORMERR with OPT",
			func(t *testing.T) *dns.Msg { return wireQuery(t, []dns.EDNS0{rawECS(t, "00011800c612")}) }, dns.RcodeFormatError, true, true},
		{"lone ECS with SCOPE 24 gets FORMERR with OPT",
			func(t *testing.T) *dns.Msg { return wireQuery(t, []dns.EDNS0{rawECS(t, "00011818c61202")}) }, dns.RcodeFormatError, true, true},
		{"ECS after another option, too long, gets FORMERR with OPT",
			func(t *testing.T) *dns.Msg { return wireQuery(t, []dns.EDNS0{unknown, rawECS(t, "00011800c6120200")}) }, dns.RcodeFormatError, true, true},
		{"ECS shorter than 4 octets gets FORMERR from the server without OPT",
			func(t *testing.T) *dns.Msg { return wireQuery(t, []dns.EDNS0{rawECS(t, "000118")}) }, dns.RcodeFormatError, false, false},
		{"lone valid ECS is used",
			func(t *testing.T) *dns.Msg { return wireQuery(t, []dns.EDNS0{rawECS(t, "00011800c61202")}) }, dns.RcodeSuccess, true, false},
		{"valid ECS between other options is used",
			func(t *testing.T) *dns.Msg { return wireQuery(t, []dns.EDNS0{cookie, london, unknown}) }, dns.RcodeSuccess, true, false},
	}
	formerr := s.metricSum("coredns_georoute_ecs_total", `result="formerr"`)
	counted := 0
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			if tc.counted {
				counted++
			}
			t.Run(network+": "+tc.name, func(t *testing.T) {
				r := exchange(t, s, network, tc.query(t))
				if r.Rcode != tc.rcode || (optCount(r) == 1) != tc.withOPT || optCount(r) > 1 {
					t.Fatalf("rcode %s with %d OPT RRs, want %s with OPT %v\n%s", dns.RcodeToString[r.Rcode], optCount(r), dns.RcodeToString[tc.rcode], tc.withOPT, r)
				}
				if tc.rcode != dns.RcodeSuccess {
					if len(r.Answer) != 0 || len(ecsOf(r)) != 0 {
						t.Fatalf("FORMERR with answer or ECS\n%s", r)
					}
				} else {
					assertLondon(t, r)
				}
				assertLondon(t, exchange(t, s, network, wireQuery(t, []dns.EDNS0{london})))
			})
		}
	}
	t.Run("georoute's FORMERRs are counted", func(t *testing.T) {
		s := s.withT(t)
		if got := s.metricSum("coredns_georoute_ecs_total", `result="formerr"`) - formerr; got != float64(counted) {
			t.Fatalf("ecs_total{result=formerr} grew by %v, want %d", got, counted)
		}
	})
}

// assertLondon checks a reply to a client in 198.18.2.0/24: London's
// address only, and exactly one ECS option echoing FAMILY, SOURCE and
// ADDRESS with SCOPE 24.
func assertLondon(t *testing.T, r *dns.Msg) {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("got %s, want NOERROR with London's address\n%s", dns.RcodeToString[r.Rcode], r)
	}
	if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != lhr4 || a.Hdr.Ttl != 30 {
		t.Fatalf("answer %v, want %s with TTL 30", r.Answer[0], lhr4)
	}
	e := ecsOf(r)
	if optCount(r) != 1 || len(e) != 1 {
		t.Fatalf("%d OPT RRs, %d ECS options; want 1 and 1\n%s", optCount(r), len(e), r)
	}
	if e[0].Family != 1 || e[0].SourceNetmask != 24 || e[0].SourceScope != 24 || !e[0].Address.Equal(net.ParseIP("198.18.2.0")) {
		t.Fatalf("ECS %v, want 198.18.2.0/24/24", e[0])
	}
}
