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
	ot "github.com/opentracing/opentracing-go"
)

const pluginName = "georoute"

// GeoRoute rewrites the A/AAAA answers of its names to the nearest healthy
// pops. It never invents an address: it only drops and reorders the records
// that the next plugin put in the answer.
type GeoRoute struct {
	Next plugin.Handler

	zones   plugin.Zones
	db      *geoDB
	dbPaths []string
	pops    []*pop
	byAddr  map[netip.Addr]*popAddress
	// addrs are the same pop addresses, in declaration order, and
	// addrIndex finds them by address on the query path.
	addrs     []*popAddress
	addrIndex addrIndex
	answers   int
	ttl       uint32
	ecs       ecsPolicy
	fallback  fallbackPolicy
	hc        healthConfig
	health    *healthChecker
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
	// series are the metrics series queries count in.
	series atomic.Pointer[requestSeries]
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
	// The client is read straight into the query's pooled state: it is
	// copied nowhere on the way.
	// Explain queries (debug) and the admin endpoint's /explain ask
	// through a probe in the context; their sub-queries are not counted.
	probe := probeOf(ctx)
	q := queries.Get().(*queryState)
	c := &q.client
	if err := readClientInto(c, r, remoteAddr(w), g.ecs, !g.opaqueOPT); err != nil {
		q.release()
		if probe == nil {
			ecsFormerr.Inc()
		}
		w.WriteMsg(formErr(r))
		return dns.RcodeSuccess, nil
	}
	if probe == nil {
		countClient(c)
	}

	qt := r.Question[0]
	routable := (qt.Qtype == dns.TypeA || qt.Qtype == dns.TypeAAAA) && qt.Qclass == dns.ClassINET
	// A sub-query of an explanation is never one itself, whatever a plugin
	// above made of it.
	explain := probe == nil && g.isExplainQuery(qt, c.remote)
	refuse := g.refuseChaos && qt.Qclass != dns.ClassINET && !explain
	if !routable && !c.subnet.present && !explain && !refuse {
		q.release()
		return plugin.NextOrFailure(g.Name(), g.Next, ctx, w, r)
	}
	if explain {
		defer q.release()
		return g.explain(ctx, w, r, c)
	}

	rw := q.writer(w, g, qt, routable)
	q.g, q.ctx, q.probe = g, ctx, probe
	if routable {
		q.qtype = qt.Qtype
	}
	rw.q.Store(q)
	defer rw.detach(q)
	if refuse {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		rw.WriteMsg(m)
		return dns.RcodeSuccess, nil
	}
	if probe != nil {
		// Lookups the chain makes on its own (file's CNAME targets) are
		// no part of the explanation.
		ctx = context.WithValue(ctx, explainProbeKey{}, (*explainProbe)(nil))
	}
	rcode, err := g.next(ctx, rw, r)
	if c.subnet.present && !plugin.ClientWrite(rcode) && !q.wrote {
		// The server would write this error reply itself, past georoute and
		// without the ECS option; write it here so that it carries the echo.
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		rw.WriteMsg(m)
		return dns.RcodeSuccess, err
	}
	return rcode, err
}

// next passes a query that georoute may route down the chain. CoreDNS's
// NextOrFailure wraps the writer in one that tells a writer tracking
// plugins (the prometheus Recorder) which plugin wrote the reply; rw tracks
// none, so that wrapper, allocated per query, would record nothing. It is
// kept where NextOrFailure does more: a trace span, or no next plugin.
func (g *GeoRoute) next(ctx context.Context, rw *routingWriter, r *dns.Msg) (int, error) {
	if g.Next == nil || ot.SpanFromContext(ctx) != nil {
		return plugin.NextOrFailure(g.Name(), g.Next, ctx, rw, r)
	}
	return g.Next.ServeDNS(ctx, rw, r)
}

var (
	// errSecondReply refuses a second reply to a routed query.
	errSecondReply = errors.New("georoute: a reply to this query was already written")
	// errLateReply refuses a reply written after the query was over.
	errLateReply = errors.New("georoute: a reply written after the query was over")
)

// routingWriter rewrites the reply of one query on its way up the chain:
// decide, count (or explain), apply. It is allocated per query and holds
// nothing but the writer above and the query's state, because a plugin
// below may keep it past the query (cache's stale refresh asks it for the
// remote address later): the state, pooled, is detached when ServeDNS
// returns, and a writer without one refuses to write.
type routingWriter struct {
	dns.ResponseWriter
	q atomic.Pointer[queryState]
}

// queryState is what one query carries through the chain: the client,
// and the storage of its decision. It is used only while the query is
// being answered, so it is pooled: nothing the written reply holds lives
// in it.
type queryState struct {
	g      *GeoRoute
	ctx    context.Context
	client client
	// qtype is the query's type when it may be routed (A or AAAA, class
	// IN), else 0.
	qtype uint16
	// probe is set for the sub-queries of an explain query.
	probe *explainProbe
	wrote bool
	// replyA or replyAAAA is the storage of the tailored reply, allocated
	// with the writer (see writer); nil once used, or when there is none.
	replyA    *tailoredReply[dns.A]
	replyAAAA *tailoredReply[dns.AAAA]
	d         decision
}

var queries = sync.Pool{New: func() any { return new(queryState) }}

// detach ends the query: the writer stops routing and q goes back to the
// pool.
func (w *routingWriter) detach(q *queryState) {
	w.q.Store(nil)
	q.release()
}

// release puts q back in the pool. The next decide resets the decision;
// only the records it points at are let go now.
func (q *queryState) release() {
	clear(q.d.cands)
	clear(q.d.kept)
	q.g, q.ctx, q.probe = nil, nil, nil
	q.client, q.qtype, q.wrote = client{}, 0, false
	q.replyA, q.replyAAAA = nil, nil
	queries.Put(q)
}

// WriteMsg implements dns.ResponseWriter. A routed query gets one reply;
// other queries (a zone transfer with ECS) may write several, each with
// the echo.
func (w *routingWriter) WriteMsg(res *dns.Msg) error {
	q, err := w.claim()
	if err != nil {
		return err
	}
	if res == nil {
		return w.ResponseWriter.WriteMsg(res)
	}
	// Decided and written here, before WriteMsg returns: a plugin below
	// may reuse the message or close the connection once it has written.
	g, d := q.g, &q.d
	g.decide(&q.client, res, q.qtype, d)
	if q.probe != nil {
		q.probe.record(g, &q.client, res, d)
	} else {
		g.count(q.ctx, d)
	}
	return w.ResponseWriter.WriteMsg(g.apply(res, d, q))
}

// routedWriter is a routingWriter and the storage of its tailored reply in
// one allocation, for an A or AAAA query of a configured name (or a name
// below one): such a query is nearly always routed, and one allocation
// costs less than two. Like the writer, the storage serves one query and
// is never reused.
type routedWriter[R dns.A | dns.AAAA] struct {
	routingWriter
	reply tailoredReply[R]
}

// writer returns the writer of a query to g for qt, and hands q the
// storage of its reply when it comes with the writer.
func (q *queryState) writer(w dns.ResponseWriter, g *GeoRoute, qt dns.Question, routable bool) *routingWriter {
	if routable && g.routes(qt.Name) {
		switch qt.Qtype {
		case dns.TypeA:
			x := &routedWriter[dns.A]{routingWriter: routingWriter{ResponseWriter: w}}
			q.replyA = &x.reply
			return &x.routingWriter
		case dns.TypeAAAA:
			x := &routedWriter[dns.AAAA]{routingWriter: routingWriter{ResponseWriter: w}}
			q.replyAAAA = &x.reply
			return &x.routingWriter
		}
	}
	return &routingWriter{ResponseWriter: w}
}

// claim is the query a reply is written for: refused once the query is
// over, and for a second reply to a routed query.
func (w *routingWriter) claim() (*queryState, error) {
	q := w.q.Load()
	if q == nil {
		return nil, errLateReply
	}
	if q.wrote && q.qtype != 0 {
		return nil, errSecondReply
	}
	q.wrote = true
	return q, nil
}

// Write implements dns.ResponseWriter. A plugin that writes wire format
// gets the same routing as one that writes a message: the reply is
// unpacked and goes through WriteMsg.
func (w *routingWriter) Write(buf []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(buf); err != nil {
		// Nothing georoute could route; the client gets it as it is.
		if _, err := w.claim(); err != nil {
			return 0, err
		}
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
