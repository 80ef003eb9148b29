// Package georoute is a CoreDNS plugin that answers each client with the
// addresses of the nearest healthy point of presence (PoP).
package georoute

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
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
	pops     []*pop
	byAddr   map[netip.Addr]*popAddress
	answers  int
	ttl      uint32
	ecs      ecsPolicy
	fallback fallbackPolicy
	health   *healthChecker
	// debug answers explain queries (CH TXT for a routed name).
	debug bool
	// refuseChaos is set when only `debug` opened this server block to
	// non-IN classes: other such queries are refused as without it.
	refuseChaos bool

	// bigAnswers caches the analysis of large answers (a CDN's every pop).
	bigAnswers answerCache
	// freshAnswers is set when cache sits below georoute in the block: it
	// hands out a new RR slice for every reply, so caching by the slice's
	// identity would only cost.
	freshAnswers bool
	// opaqueOPT is set when rewrite (which may edit the OPT RR, edns0 rules)
	// runs above georoute: the received RDLENGTH can no longer be trusted.
	opaqueOPT bool

	// blockFile and blockLine locate the georoute block for errors about
	// the block as a whole.
	blockFile string
	blockLine int

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

// ServeDNS implements plugin.Handler.
func (g *GeoRoute) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 {
		return plugin.NextOrFailure(g.Name(), g.Next, ctx, w, r)
	}
	remote := remoteAddr(w)

	var subnet clientSubnet
	if g.ecs.honours(remote) {
		var err error
		// ECS is read before the next plugin runs: the server's scrub writer
		// edits the request's OPT when the reply is written.
		if subnet, err = readClientSubnet(r, !g.opaqueOPT); err != nil {
			ecsFormerr.Inc()
			w.WriteMsg(formErr(r))
			return dns.RcodeSuccess, nil
		}
	} else if hasClientSubnet(r) {
		ecsIgnored.Inc()
	}

	q := r.Question[0]
	routable := (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA) && q.Qclass == dns.ClassINET
	explain := g.isExplainQuery(q)
	refuse := g.refuseChaos && q.Qclass != dns.ClassINET && !explain
	if !routable && !subnet.present && !explain && !refuse {
		return plugin.NextOrFailure(g.Name(), g.Next, ctx, w, r)
	}

	rw := &routingWriter{ResponseWriter: w, g: g, ctx: ctx, subnet: subnet, remote: remote, qname: q.Name, qtype: q.Qtype, routable: routable, locateBy: remote}
	if subnet.present {
		if usable, scope := subnet.usable(); usable {
			rw.locateBy, rw.byECS = subnet.address.Unmap(), true
			ecsUsed.Inc()
		} else {
			rw.fallbackScope = scope
			ecsIgnored.Inc()
		}
	}
	if refuse {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		rw.WriteMsg(m)
		return dns.RcodeSuccess, nil
	}
	if explain {
		return g.explain(ctx, w, r, rw)
	}
	rcode, err := plugin.NextOrFailure(g.Name(), g.Next, ctx, rw, r)
	if subnet.present && !plugin.ClientWrite(rcode) && !rw.wrote {
		// The server would write this error reply itself, past georoute and
		// without the ECS option; write it here so that it carries the echo.
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		rw.WriteMsg(m)
		return dns.RcodeSuccess, err
	}
	return rcode, err
}

// routingWriter rewrites the reply of one query on its way up the chain.
type routingWriter struct {
	dns.ResponseWriter
	g        *GeoRoute
	ctx      context.Context
	subnet   clientSubnet
	remote   netip.Addr
	qname    string
	qtype    uint16
	routable bool

	// locateBy is the address the client is located by: the ECS address when
	// byECS, else the source address.
	locateBy netip.Addr
	byECS    bool
	// fallbackScope is the SCOPE of a tailored answer when ECS was present but
	// not usable for locating.
	fallbackScope int
	// explain, when set, collects how the answer is chosen instead of
	// counting it in the metrics (the debug explain query).
	explain *explanation
	// wrote is set once the next plugin has written its reply.
	wrote bool

	reply replyStorage
}

// WriteMsg implements dns.ResponseWriter.
func (w *routingWriter) WriteMsg(res *dns.Msg) error {
	w.wrote = true
	if res == nil {
		return w.ResponseWriter.WriteMsg(res)
	}
	out, scope := w.route(res)
	if w.subnet.present {
		if out == res {
			out = w.reply.copyOf(res)
		}
		out.Extra = w.reply.withECS(out.Extra, w.subnet, scope)
	}
	return w.ResponseWriter.WriteMsg(out)
}

// route returns the reply to send and its ECS SCOPE. The reply is res itself
// when nothing is to be tailored; otherwise a copy, since the next plugin may
// have handed out records it still owns (file answers from its zone tree).
func (w *routingWriter) route(res *dns.Msg) (*dns.Msg, int) {
	if !w.routable || res.Rcode != dns.RcodeSuccess || len(res.Question) == 0 {
		return res, 0
	}
	g, ex := w.g, w.explain
	a := g.answerInfo(res.Answer, w.qname, w.qtype, &w.reply.small)
	if !a.routed {
		if ex != nil {
			ex.addf("%s is not a georoute name: answer unchanged", a.owner)
		}
		return res, 0
	}
	if len(a.cands) == 0 {
		if ex != nil {
			ex.addf("no %s records at %s: answer unchanged", dns.TypeToString[w.qtype], a.owner)
		}
		return res, 0
	}
	server := metrics.WithServer(w.ctx)
	if a.signed {
		if ex != nil {
			ex.addf("an RRSIG covers %s %s: answer unchanged (signed)", a.owner, dns.TypeToString[w.qtype])
		} else {
			requestCount.WithLabelValues(server, "", "signed").Inc()
		}
		return res, 0
	}

	cands := a.cands
	up, allDown := health(cands, w.reply.upBuf(len(cands)))
	loc := g.db.locate(w.locateBy)
	source, scope := "remote", w.fallbackScope
	if w.byECS {
		source, scope = "ecs", w.subnet.scopeFor(loc.prefix)
	}
	var v verdict
	keptBuf := w.reply.kept[:0]
	from := loc.at
	switch {
	case loc.located:
		choose(cands, up, loc.at, g.answers, keptBuf, &v)
	case g.fallback.all:
		source = "fallback"
		v.kept = keepUp(cands, up, keptBuf)
	default:
		source, from = "fallback", g.fallback.at
		choose(cands, up, g.fallback.at, g.answers, keptBuf, &v)
	}
	if oneSite(cands, up) {
		// The answer would be the same for any client: tell resolvers they
		// may cache it for everybody.
		scope = 0
	}

	if ex != nil {
		w.explainClient(ex, loc)
		w.explainCandidates(ex, cands, up, from, loc.located || !g.fallback.all, allDown)
		explainChoice(ex, v.kept, scope)
	} else {
		if allDown {
			failOpenCount.WithLabelValues(server).Inc()
		}
		popID := ""
		if v.nearest != nil {
			popID = v.nearest.id
		}
		requestCount.WithLabelValues(server, popID, source).Inc()
		if loc.located && v.chose {
			distanceKmHist.WithLabelValues(server).Observe(distanceKm(loc.at, v.nearestAt))
		}
	}

	// The routed RRset takes the place of the first of its records; the
	// rest of the answer (CNAMEs, other records) keeps its order.
	out := w.reply.copyOf(res)
	out.Answer = w.reply.answer[:0]
	inserted := false
	for i, rr := range res.Answer {
		if !a.target[i] {
			out.Answer = append(out.Answer, rr)
			continue
		}
		if !inserted {
			for _, k := range v.kept {
				out.Answer = append(out.Answer, w.reply.capTTL(k, g.ttl))
			}
			inserted = true
		}
	}
	return out, scope
}

// answerInfo returns the analysis of answer: from the cache for a large
// answer seen before, else computed into buf (a small answer) or into a new
// entry that is cached (a large one).
func (g *GeoRoute) answerInfo(answer []dns.RR, qname string, qtype uint16, buf *smallAnswer) *answerInfo {
	if len(answer) <= largeAnswer {
		buf.target, buf.cands = buf.targetBuf[:0], buf.candBuf[:0]
		g.analyze(&buf.answerInfo, answer, qname, qtype)
		return &buf.answerInfo
	}
	if g.freshAnswers {
		a := &answerInfo{}
		g.analyze(a, answer, qname, qtype)
		return a
	}
	gen := g.db.gen.Load()
	if a := g.bigAnswers.get(answer, qname, qtype, gen); a != nil {
		return a
	}
	a := &answerInfo{qname: qname, qtype: qtype, dbGen: gen}
	g.analyze(a, answer, qname, qtype)
	g.bigAnswers.put(answer, a)
	return a
}

// routes reports whether name is one of the configured names or below one.
// It is plugin.Zones.Matches without the allocations of splitting labels:
// the zones are lower-case FQDNs.
func (g *GeoRoute) routes(name string) bool {
	for _, z := range g.zones {
		if z == "." {
			return true
		}
		if len(name) < len(z) {
			continue
		}
		suffix := name[len(name)-len(z):]
		if !strings.EqualFold(suffix, z) {
			continue
		}
		if len(name) == len(z) || name[len(name)-len(z)-1] == '.' {
			return true
		}
	}
	return false
}

// chainEnd follows the CNAME records of answer from qname and returns the
// name at the end of the chain: the owner of the RRset that answers the query.
func chainEnd(answer []dns.RR, qname string) string {
	name := qname
	for range answer {
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = c.Target
				break
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return name
}

func isTarget(rr dns.RR, qtype uint16, owner string) bool {
	h := rr.Header()
	return h.Rrtype == qtype && strings.EqualFold(h.Name, owner)
}

// signed reports whether an RRSIG in answer covers the RRset: cutting it
// would break the signature.
func signed(answer []dns.RR, qtype uint16, owner string) bool {
	for _, rr := range answer {
		if s, ok := rr.(*dns.RRSIG); ok && s.TypeCovered == qtype && strings.EqualFold(s.Hdr.Name, owner) {
			return true
		}
	}
	return false
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
