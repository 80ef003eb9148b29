package georoute

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/coredns/coredns/plugin/pkg/nonwriter"
	"github.com/miekg/dns"
)

// isExplainQuery reports whether a query from remote asks how a routed
// name is answered: `dig -c CH TXT www.example.org`. Only with `debug`,
// and only from its networks, since the answer reveals the topology.
func (g *GeoRoute) isExplainQuery(q dns.Question, remote netip.Addr) bool {
	if len(g.debug) == 0 || q.Qclass != dns.ClassCHAOS || q.Qtype != dns.TypeTXT || !g.routes(q.Name) {
		return false
	}
	for _, n := range g.debug {
		if n.Contains(remote) {
			return true
		}
	}
	return false
}

// explainProbe travels in the context of an explain query's A and AAAA
// sub-queries. When a sub-query reaches georoute, the decision for it is
// formatted into the probe instead of being counted.
type explainProbe struct {
	decided bool
	rcode   int
	lines   []string
	// view, when set, is filled from the decision as JSON for the admin
	// endpoint's GET /explain.
	view *explainView
}

type explainProbeKey struct{}

func probeOf(ctx context.Context) *explainProbe {
	p, _ := ctx.Value(explainProbeKey{}).(*explainProbe)
	return p
}

func (p *explainProbe) addf(format string, args ...any) {
	p.lines = append(p.lines, fmt.Sprintf(format, args...))
}

// explain answers an explain query. Its A and AAAA sub-queries start at
// the top of the server block's chain, as the same client's own queries
// would, so every plugin above georoute (acl, tsig, rewrite …) acts on
// them: an explanation never reveals an answer the client could not get
// by asking for it. The reply has one TXT record per line.
func (g *GeoRoute) explain(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, c *client) (int, error) {
	q := r.Question[0]
	out := &explainProbe{}
	out.addf("georoute explains %s for a client at %s", q.Name, c.remote)
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		sub := r.Copy()
		sub.Question[0].Qtype, sub.Question[0].Qclass = qtype, dns.ClassINET
		probe := &explainProbe{}
		capture := nonwriter.New(w)
		rcode, err := g.chainTop().ServeDNS(context.WithValue(ctx, explainProbeKey{}, probe), capture, sub)
		name := dns.TypeToString[qtype]
		switch {
		case probe.decided:
			out.addf("%s: %s from the rest of the chain", name, dns.RcodeToString[probe.rcode])
			out.lines = append(out.lines, probe.lines...)
		case capture.Msg != nil:
			out.addf("%s: %s before georoute (a plugin above it answered)", name, dns.RcodeToString[capture.Msg.Rcode])
		case err != nil:
			out.addf("%s: the rest of the chain gave no answer: %v", name, err)
		default:
			out.addf("%s: the rest of the chain gave no answer (%s)", name, dns.RcodeToString[rcode])
		}
	}

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	for _, line := range out.lines {
		m.Answer = append(m.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS, Ttl: 0},
			Txt: splitTXT(line),
		})
	}
	if c.subnet.present {
		e := new(dns.EDNS0_SUBNET)
		c.subnet.echoInto(e, c.echoAddress, 0)
		m.Extra = withECS(m.Extra, e)
	}
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

// chainTop is the first handler of the server block, where explain's
// sub-queries start; georoute itself outside a server (tests).
func (g *GeoRoute) chainTop() interface {
	ServeDNS(context.Context, dns.ResponseWriter, *dns.Msg) (int, error)
} {
	if g.top != nil {
		return g.top
	}
	return g
}

// record formats the decision d for the client c into p.
func (p *explainProbe) record(g *GeoRoute, c *client, res *dns.Msg, d *decision) {
	p.decided, p.rcode = true, res.Rcode
	if p.view != nil {
		p.view.fill(g, res, d)
	}
	qtype := dns.TypeToString[d.qtype]
	switch d.outcome {
	case outcomeNotRouted:
		if d.owner != "" {
			p.addf("%s is not a georoute name: answer unchanged", d.owner)
		} else {
			p.addf("not a NOERROR answer: unchanged")
		}
		return
	case outcomeNoRecords:
		p.addf("no %s records at %s: answer unchanged", qtype, d.owner)
		return
	case outcomeSigned:
		p.addf("an RRSIG covers %s %s: answer unchanged (signed)", d.owner, qtype)
		return
	}
	p.client(g, c, d)
	p.candidates(d)
	addrs := make([]string, 0, len(d.kept))
	for _, rr := range d.kept {
		addrs = append(addrs, addrOf(rr).String())
	}
	p.addf("chosen: %s", strings.Join(addrs, " "))
	p.addf("scope: /%d", d.scope)
}

// client says how the client was located, and by which rule it was
// routed when not by distance.
func (p *explainProbe) client(g *GeoRoute, c *client, d *decision) {
	switch {
	case d.byECS:
		p.addf("client %s: from the ECS option %s/%d", d.lookup, c.subnet.address, c.subnet.source)
	case c.subnet.present && c.subnet.source == 0:
		p.addf("client %s: the source address (the ECS option has SOURCE 0)", d.lookup)
	case c.subnet.present:
		p.addf("client %s: the source address (the ECS address %s is private or unroutable)", d.lookup, c.subnet.address)
	default:
		p.addf("client %s: the source address (no ECS option used)", d.lookup)
	}
	p.addf("database: %s", g.db.describe(d.lookup))
	switch {
	case d.ruled:
		p.addf("override %s: %s", d.rule.prefix, popIDs(d.rule.pops))
	case d.rule != nil:
		p.addf("override %s: none of %s is up, routed as usual", d.rule.prefix, popIDs(d.rule.pops))
	}
	if !d.loc.located && !d.ruled {
		if g.fallback.all {
			p.addf("not located: fallback all keeps every healthy address")
		} else {
			p.addf("not located: fallback places the client at %g %g", g.fallback.lat, g.fallback.lon)
		}
	}
}

// candidates lists every address of the answer with its site, state as
// this query saw it, and distance from where the client is taken to stand.
func (p *explainProbe) candidates(d *decision) {
	for i := range d.cands {
		c := &d.cands[i]
		site := "anonymous site, not located"
		switch {
		case c.pop != nil:
			site = "pop " + c.pop.id
		case c.located:
			site = fmt.Sprintf("anonymous site at %.4f %.4f", c.at.lat(), c.at.lon())
		}
		state := "healthy"
		switch {
		case d.state[i] == candDrained:
			state = "drained"
		case d.state[i] == candDown || d.failOpen:
			state = "down"
		}
		distance := ""
		if d.placed && c.located {
			distance = fmt.Sprintf(", %.0f km", distanceKm(d.from, c.at))
		}
		p.addf("candidate %s: %s, %s%s", addrOf(c.rr), site, state, distance)
	}
	if d.allDrained {
		p.addf("every candidate is drained: chosen as if none were")
	}
	if d.failOpen {
		p.addf("every candidate is down: failing open, all count as healthy")
	}
}

func popIDs(pops []*pop) string {
	ids := make([]string, len(pops))
	for i, p := range pops {
		ids[i] = p.id
	}
	return strings.Join(ids, " ")
}

// splitTXT cuts a line into the 255-octet strings a TXT record holds.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// describe says which database file and network decide addr, and what the
// record there says. It decodes the whole record, so it is for
// explanations only; which file decides is lookup's walk (geoDB.each).
func (db *geoDB) describe(addr netip.Addr) string {
	var misses []string
	found := ""
	db.each(addr.Unmap(), func(src *geoSource, _ *geoFile, res lookupResult) bool {
		name := filepath.Base(src.path)
		switch {
		case res.Err() != nil:
			misses = append(misses, fmt.Sprintf("%s: %v", name, res.Err()))
			return true
		case !res.Found():
			misses = append(misses, fmt.Sprintf("%s: no network (no-match block %s)", name, res.Prefix()))
			return true
		}
		var rec map[string]any
		if err := res.Decode(&rec); err != nil {
			misses = append(misses, fmt.Sprintf("%s %s: %v", name, res.Prefix(), err))
			return true
		}
		city, country := placeName(rec)
		var c coordinates
		if res.Decode(&c) != nil || !c.complete() {
			misses = append(misses, fmt.Sprintf("%s %s: %s, %s, without coordinates", name, res.Prefix(), city, country))
			return true
		}
		found = fmt.Sprintf("%s %s: %s, %s at %.4f %.4f", name, res.Prefix(), city, country, c.lat, c.lon)
		return false
	})
	if found != "" {
		misses = append(misses, found)
	}
	if len(misses) == 0 {
		return "no file holds this address family"
	}
	return strings.Join(misses, "; ")
}

// placeName reads the city and country of a record in either layout.
func placeName(rec map[string]any) (city, country string) {
	city, country = "?", "?"
	switch c := rec["city"].(type) {
	case string:
		city = c
	case map[string]any:
		if names, ok := c["names"].(map[string]any); ok {
			if en, ok := names["en"].(string); ok {
				city = en
			}
		}
	}
	if cc, ok := rec["country_code"].(string); ok {
		country = cc
	} else if c, ok := rec["country"].(map[string]any); ok {
		if iso, ok := c["iso_code"].(string); ok {
			country = iso
		}
	}
	return city, country
}
