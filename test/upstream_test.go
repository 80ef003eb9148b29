package test

import (
	"fmt"
	"net"
	"testing"

	"github.com/miekg/dns"
)

// startECSUpstream runs a DNS server on loopback that answers like an
// ECS-aware authoritative server behind forward: www.example.org has the
// three demo pops, every other name one TXT record, and every reply to a
// query with ECS echoes it with SCOPE scope.
func startECSUpstream(t *testing.T, scope uint8) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		switch {
		case q.Name == "www.example.org." && q.Qtype == dns.TypeA:
			for _, a := range []string{"192.0.2.10", "198.51.100.10", "203.0.113.10"} {
				rr, _ := dns.NewRR("www.example.org. 300 IN A " + a)
				m.Answer = append(m.Answer, rr)
			}
		case q.Qtype == dns.TypeTXT:
			rr, _ := dns.NewRR(q.Name + ` 300 IN TXT "from upstream"`)
			m.Answer = append(m.Answer, rr)
		}
		if o := r.IsEdns0(); o != nil {
			opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}}
			for _, e := range o.Option {
				if s, ok := e.(*dns.EDNS0_SUBNET); ok {
					echo := *s
					echo.SourceScope = scope
					opt.Option = append(opt.Option, &echo)
				}
			}
			m.Extra = append(m.Extra, opt)
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// A reply that forward brings from an ECS-aware upstream keeps that
// upstream's SCOPE: a resolver must not cache a tailored answer for
// everybody (design §5).
func TestUpstreamScopeIsKept(t *testing.T) {
	t.Parallel()
	corefile := func(up int) string {
		return fmt.Sprintf(`example.org:{port} {
    bind 127.0.0.1
    georoute www.example.org {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10
        pop lhr 51.4700 -0.4543 198.51.100.10
        pop nrt 35.7720 140.3929 203.0.113.10
    }
    forward . 127.0.0.1:%d
}
`, up)
	}
	t.Run("an answer georoute does not tailor keeps the upstream's SCOPE 24", func(t *testing.T) {
		s := startServer(t, corefile(startECSUpstream(t, 24)), nil)
		r := s.query("other.example.org", "TXT", "+subnet=198.18.2.0/24")
		if r.status != "NOERROR" || r.ecs != "198.18.2.0/24/24" {
			t.Fatalf("status %s ECS %q; want NOERROR with 198.18.2.0/24/24\n%s", r.status, r.ecs, r.raw)
		}
	})
	t.Run("a tailored answer takes the longer SCOPE of the upstream's and its own", func(t *testing.T) {
		s := startServer(t, corefile(startECSUpstream(t, 28)), nil)
		r := s.query("www.example.org", "+subnet=198.18.2.0/24")
		if got := r.addresses(); len(got) != 1 || got[0] != lhrAddress || r.ecs != "198.18.2.0/24/28" {
			t.Fatalf("answer %v ECS %q; want [%s] with 198.18.2.0/24/28\n%s", got, r.ecs, lhrAddress, r.raw)
		}
	})
	t.Run("an upstream SCOPE shorter than georoute's own leaves georoute's", func(t *testing.T) {
		s := startServer(t, corefile(startECSUpstream(t, 8)), nil)
		r := s.query("www.example.org", "+subnet=198.18.2.0/24")
		if r.ecs != "198.18.2.0/24/24" {
			t.Fatalf("ECS %q; want 198.18.2.0/24/24\n%s", r.ecs, r.raw)
		}
	})
}
