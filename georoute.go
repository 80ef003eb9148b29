// Package georoute is a CoreDNS plugin that answers each client with the
// addresses of the nearest healthy point of presence (PoP).
package georoute

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

const pluginName = "georoute"

// GeoRoute rewrites the A/AAAA answers of its names to the nearest healthy
// pops. It never invents an address: it only drops and reorders the records
// that the next plugin put in the answer.
type GeoRoute struct {
	Next plugin.Handler

	zones    plugin.Zones
	db       *geoDB
	dbPaths  []string
	pops     []*pop
	byAddr   map[netip.Addr]*popAddress
	answers  int
	ttl      uint32
	ecs      ecsPolicy
	fallback fallbackPolicy
	hc       healthConfig
	health   *healthChecker
	// reload is how often the db files (and steering files) are checked
	// for changes; default 5s.
	reload time.Duration
	// debug lists the networks whose clients may ask explain queries (CH
	// TXT for a routed name); empty: explain queries are off.
	debug []netip.Prefix
	// refuseChaos is set when only `debug` opened this listener to non-IN
	// classes: other such queries are refused as without it.
	refuseChaos bool
	// opaqueOPT is set when rewrite (which may edit the OPT RR, edns0 rules)
	// runs above georoute: the received RDLENGTH can no longer be trusted.
	opaqueOPT bool
	// top is the first handler of the server block: explain queries start
	// their sub-queries there.
	top plugin.Handler

	steer  steering
	scopes scopeViews
	// steerCfg is the steering part of the block as parsed; steerRun
	// follows its files and serves its admin endpoint.
	steerCfg steerConfig
	steerRun *steerRuntime

	// blockFile and blockLine locate the georoute block for errors about
	// the block as a whole; dbLine the db property.
	blockFile string
	blockLine int
	dbLine    int

	stopWatch context.CancelFunc
	watchDone chan struct{}
	// owner is the Corefile load (caddy context) this instance belongs to.
	owner caddy.Context

	// ready turns true once the database is loaded and the first round of
	// probes is done.
	ready atomic.Bool
}

// fallbackPolicy is what clients that cannot be located get.
type fallbackPolicy struct {
	// all keeps every healthy address; otherwise the client is taken to stand
	// at lat, lon.
	all      bool
	lat, lon float64
	at       point
}

// Name implements plugin.Handler.
func (g *GeoRoute) Name() string { return pluginName }

// Ready implements ready.Readiness.
func (g *GeoRoute) Ready() bool { return g.ready.Load() }

// ServeDNS implements plugin.Handler: it reads the client (ECS in), lets
// the rest of the chain answer through a routingWriter, which decides and
// applies on the way back up.
func (g *GeoRoute) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 {
		return plugin.NextOrFailure(g.Name(), g.Next, ctx, w, r)
	}
	c, err := readClient(r, remoteAddr(w), g.ecs, !g.opaqueOPT)
	if err != nil {
		ecsFormerr.Inc()
		w.WriteMsg(formErr(r))
		return dns.RcodeSuccess, nil
	}
	probe := probeOf(ctx)
	if probe == nil {
		countClient(&c)
	}

	q := r.Question[0]
	routable := (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA) && q.Qclass == dns.ClassINET
	explain := g.isExplainQuery(q, c.remote)
	refuse := g.refuseChaos && q.Qclass != dns.ClassINET && !explain
	if !routable && !c.subnet.present && !explain && !refuse {
		return plugin.NextOrFailure(g.Name(), g.Next, ctx, w, r)
	}
	if explain {
		return g.explain(ctx, w, r, &c)
	}

	rw := writers.Get().(*routingWriter)
	defer rw.release()
	rw.ResponseWriter, rw.g, rw.ctx, rw.client, rw.probe = w, g, ctx, c, probe
	if routable {
		rw.qtype = q.Qtype
	}
	if refuse {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		rw.WriteMsg(m)
		return dns.RcodeSuccess, nil
	}
	rcode, err := plugin.NextOrFailure(g.Name(), g.Next, ctx, rw, r)
	if c.subnet.present && !plugin.ClientWrite(rcode) && !rw.wrote {
		// The server would write this error reply itself, past georoute and
		// without the ECS option; write it here so that it carries the echo.
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		rw.WriteMsg(m)
		return dns.RcodeSuccess, err
	}
	return rcode, err
}

// errSecondReply refuses a second reply to one query.
var errSecondReply = errors.New("georoute: a reply to this query was already written")

// routingWriter rewrites the reply of one query on its way up the chain:
// decide, count (or explain), apply. Writers are pooled with the storage
// of their decision, so a query allocates only what its reply keeps.
type routingWriter struct {
	dns.ResponseWriter
	g      *GeoRoute
	ctx    context.Context
	client client
	// qtype is the query's type when it may be routed (A or AAAA, class
	// IN), else 0.
	qtype uint16
	// probe is set for the sub-queries of an explain query.
	probe *explainProbe
	wrote bool
	d     decision
}

var writers = sync.Pool{New: func() any { return new(routingWriter) }}

// release returns the writer to the pool once the query is over: nothing
// the written reply holds lives in it.
func (w *routingWriter) release() {
	clear(w.d.cands)
	clear(w.d.kept)
	w.d.reset(0)
	w.ResponseWriter, w.g, w.ctx, w.probe = nil, nil, nil, nil
	w.client, w.qtype, w.wrote = client{}, 0, false
	writers.Put(w)
}

// WriteMsg implements dns.ResponseWriter.
func (w *routingWriter) WriteMsg(res *dns.Msg) error {
	if w.wrote {
		return errSecondReply
	}
	w.wrote = true
	if res == nil {
		return w.ResponseWriter.WriteMsg(res)
	}
	g, d := w.g, &w.d
	g.decide(&w.client, res, w.qtype, d)
	if w.probe != nil {
		w.probe.record(g, &w.client, res, d)
	} else {
		count(w.ctx, d)
	}
	return w.ResponseWriter.WriteMsg(g.apply(res, d, &w.client))
}

// Write implements dns.ResponseWriter. A plugin that writes wire format
// gets the same routing as one that writes a message: the reply is
// unpacked and goes through WriteMsg.
func (w *routingWriter) Write(buf []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(buf); err != nil {
		// Nothing georoute could route; the client gets it as it is.
		if w.wrote {
			return 0, errSecondReply
		}
		w.wrote = true
		return w.ResponseWriter.Write(buf)
	}
	if err := w.WriteMsg(m); err != nil {
		return 0, err
	}
	return len(buf), nil
}

// remoteAddr is the query's source address, IPv4-mapped addresses unmapped.
func remoteAddr(w dns.ResponseWriter) netip.Addr {
	var ip net.IP
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
