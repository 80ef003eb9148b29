package georoute

import (
	"context"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/miekg/dns"
)

// explainTestSilentZone writes nothing, as a plugin that only returns an
// error code does.
type explainTestSilentZone struct{}

func (explainTestSilentZone) Name() string { return "zone" }
func (explainTestSilentZone) ServeDNS(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
	return dns.RcodeServerFailure, nil
}

// explainTestAsk sends an explain query for www.example.org from remote
// and returns the lines of the reply, nil when it is no explanation.
func explainTestAsk(t *testing.T, g *GeoRoute, remote string) []string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("www.example.org.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	rec := dnstest.NewRecorder(georouteTestRemote(remote))
	g.ServeDNS(context.Background(), rec, q)
	if rec.Msg == nil {
		return nil
	}
	var lines []string
	for _, rr := range rec.Msg.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			lines = append(lines, strings.Join(txt.Txt, ""))
		}
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "georoute explains") {
		return nil
	}
	return lines
}

func TestExplain(t *testing.T) {
	t.Run("a next plugin that writes nothing is said so, without <nil>", func(t *testing.T) {
		g := georouteTestNew(t, "debug")
		g.Next = explainTestSilentZone{}
		lines := explainTestAsk(t, g, "127.0.0.1")
		want := "A: the rest of the chain gave no answer (SERVFAIL)"
		if len(lines) < 2 || lines[1] != want {
			t.Fatalf("explanation %q, want line 2 %q", lines, want)
		}
		for _, l := range lines {
			if strings.Contains(l, "<nil>") {
				t.Errorf("explanation line %q prints <nil>", l)
			}
		}
	})
	t.Run("bare debug explains to loopback clients only", func(t *testing.T) {
		g := georouteTestNew(t, "debug")
		g.Next = georouteTestNewZone(t)
		if lines := explainTestAsk(t, g, "127.0.0.1"); lines == nil {
			t.Error("no explanation for 127.0.0.1")
		}
		if lines := explainTestAsk(t, g, "::1"); lines == nil {
			t.Error("no explanation for ::1")
		}
		if lines := explainTestAsk(t, g, "10.240.0.1"); lines != nil {
			t.Errorf("10.240.0.1 got an explanation: %q", lines)
		}
	})
	t.Run("debug CIDR explains to clients in those networks only", func(t *testing.T) {
		g := georouteTestNew(t, "debug 10.240.0.0/16")
		g.Next = georouteTestNewZone(t)
		if lines := explainTestAsk(t, g, "10.240.0.1"); lines == nil {
			t.Error("no explanation for 10.240.0.1")
		}
		if lines := explainTestAsk(t, g, "127.0.0.1"); lines != nil {
			t.Errorf("127.0.0.1 got an explanation: %q", lines)
		}
	})
}
