package test

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// queryLoad sends a steady stream of routed queries to a server and records
// every query that did not get a NOERROR answer with exactly one address.
type queryLoad struct {
	stop    chan struct{}
	done    chan struct{}
	sent    atomic.Int64
	failed  atomic.Int64
	lastErr atomic.Value // string
	last    atomic.Value // string: the address of the latest answer
	answers sync.Map     // address → *atomic.Int64: how often it was the answer
}

// startQueryLoad queries name with ECS subnet every few milliseconds, over
// UDP, until stop or for at most two minutes.
func startQueryLoad(t *testing.T, port int, name, subnet string) *queryLoad {
	t.Helper()
	ip, network, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	bits, _ := network.Mask.Size()
	l := &queryLoad{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-l.stop:
				return
			default:
			}
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			m.SetEdns0(1232, false)
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(bits), Address: ip.To4()})
			l.sent.Add(1)
			r, _, err := c.Exchange(m, addr)
			switch {
			case err != nil:
				l.fail(err.Error())
			case r.Rcode != dns.RcodeSuccess:
				l.fail("rcode " + dns.RcodeToString[r.Rcode])
			case len(r.Answer) != 1:
				l.fail(fmt.Sprintf("%d answers", len(r.Answer)))
			default:
				if a, ok := r.Answer[0].(*dns.A); ok {
					l.last.Store(a.A.String())
					n, _ := l.answers.LoadOrStore(a.A.String(), new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(l.finish)
	return l
}

func (l *queryLoad) fail(why string) {
	l.failed.Add(1)
	l.lastErr.Store(why)
}

// finish stops the load and waits for the last query.
func (l *queryLoad) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// check fails the test if any query failed, and if too few were sent to
// mean anything.
func (l *queryLoad) check(t *testing.T, atLeast int64) {
	t.Helper()
	l.finish()
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d of %d queries failed under load; last: %v", f, l.sent.Load(), l.lastErr.Load())
	}
	if n := l.sent.Load(); n < atLeast {
		t.Errorf("only %d queries were sent; want at least %d for the test to mean anything", n, atLeast)
	}
}

// answered says how many answers were addr.
func (l *queryLoad) answered(addr string) int64 {
	if n, ok := l.answers.Load(addr); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// lastAnswer is the address of the latest successful answer.
func (l *queryLoad) lastAnswer() string {
	v, _ := l.last.Load().(string)
	return v
}
