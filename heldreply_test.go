package georoute

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// A dns.ResponseWriter's WriteMsg sends the reply before it returns (miekg
// packs and writes it there): a plugin below georoute may rely on that,
// reusing the message, closing the connection, or failing after its reply
// is out. georoute holding the reply until the chain returns breaks each.

// heldTestWriter is a client connection: writes after Close are refused
// and never reach the client.
type heldTestWriter struct {
	*georouteTestWriter
	msgs   []*dns.Msg
	closed bool
}

func (w *heldTestWriter) WriteMsg(m *dns.Msg) error {
	if w.closed {
		return errors.New("write on a closed connection")
	}
	w.msgs = append(w.msgs, m.Copy()) // what went on the wire
	return nil
}

func (w *heldTestWriter) Close() error {
	w.closed = true
	return nil
}

// heldTestZone answers www.example.org A with the three pops, then does
// after to the message it wrote and the writer.
type heldTestZone struct {
	after func(w dns.ResponseWriter, m *dns.Msg)
	// sent is how many replies the client had when WriteMsg returned.
	client *heldTestWriter
	sent   int
}

func (heldTestZone) Name() string { return "zone" }

func (z *heldTestZone) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetReply(r)
	for _, a := range []string{"192.0.2.10", "198.51.100.10", "203.0.113.10"} {
		rr, _ := dns.NewRR("www.example.org. 300 IN A " + a)
		m.Answer = append(m.Answer, rr)
	}
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, err
	}
	z.sent = len(z.client.msgs)
	z.after(w, m)
	return dns.RcodeSuccess, nil
}

func TestReplyIsOnTheWireWhenWriteMsgReturns(t *testing.T) {
	tokyo := georouteTestWant("www.example.org.", 30, "A", "203.0.113.10")
	for _, tc := range []struct {
		name  string
		after func(w dns.ResponseWriter, m *dns.Msg)
	}{
		{"nothing after the write", func(dns.ResponseWriter, *dns.Msg) {}},
		// A plugin that pools its messages resets one once it is written.
		{"message reused after the write", func(_ dns.ResponseWriter, m *dns.Msg) { *m = dns.Msg{} }},
		// One that ends a TCP connection after its reply.
		{"connection closed after the write", func(w dns.ResponseWriter, _ *dns.Msg) { w.Close() }},
		// One that fails after its reply: the server recovers and writes
		// SERVFAIL, which the client must not get instead of the answer.
		{"panic after the write", func(dns.ResponseWriter, *dns.Msg) { panic("after the reply") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := georouteTestNew(t, "")
			w := &heldTestWriter{georouteTestWriter: georouteTestRemote("tcp:10.240.0.1")}
			z := &heldTestZone{after: tc.after, client: w}
			g.Next = z
			func() {
				defer func() { recover() }() // as dnsserver.Server.ServeDNS does
				g.ServeDNS(context.Background(), w, ecsTestQuery(t, "www.example.org.", dns.TypeA, "198.18.3.0/24"))
			}()
			if z.sent != 1 {
				t.Errorf("the client had %d replies when the next plugin's WriteMsg returned; want 1", z.sent)
			}
			if len(w.msgs) != 1 {
				t.Fatalf("the client got %d replies; want 1", len(w.msgs))
			}
			if got := georouteTestFormat(w.msgs[0].Answer); !slices.Equal(got, tokyo) {
				t.Fatalf("answer %v; want %v", got, tokyo)
			}
		})
	}
}
