package georoute

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/nonwriter"
	"github.com/miekg/dns"
)

// explanation collects, for the `debug` explain query, how an answer was
// chosen. It is only ever built for a CH TXT query; the routing path checks
// for nil and does nothing more when it is.
type explanation struct {
	lines []string
}

func (e *explanation) addf(format string, args ...any) {
	e.lines = append(e.lines, fmt.Sprintf(format, args...))
}

// isExplainQuery reports whether r asks how a routed name is answered:
// `dig -c CH TXT www.example.org`. Only with `debug`, since the answer
// reveals the topology.
func (g *GeoRoute) isExplainQuery(q dns.Question) bool {
	return g.debug && q.Qclass == dns.ClassCHAOS && q.Qtype == dns.TypeTXT && g.routes(q.Name)
}

// explain answers an explain query: for A and then AAAA it asks the rest of
// the chain as a normal IN query would, routes the reply as usual (without
// counting it in the metrics) and answers with one TXT record per line of
// the explanation.
func (g *GeoRoute) explain(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, rw *routingWriter) (int, error) {
	ex := &explanation{}
	q := r.Question[0]
	ex.addf("georoute explains %s for a client at %s", q.Name, rw.remote)
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		sub := r.Copy()
		sub.Question[0].Qtype, sub.Question[0].Qclass = qtype, dns.ClassINET
		capture := nonwriter.New(w)
		if _, err := plugin.NextOrFailure(g.Name(), g.Next, ctx, capture, sub); err != nil || capture.Msg == nil {
			ex.addf("%s: the rest of the chain gave no answer (%v)", dns.TypeToString[qtype], err)
			continue
		}
		erw := *rw
		erw.qtype, erw.routable, erw.explain = qtype, true, ex
		ex.addf("%s: %s from the rest of the chain", dns.TypeToString[qtype], dns.RcodeToString[capture.Msg.Rcode])
		erw.route(capture.Msg)
	}

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	for _, line := range ex.lines {
		m.Answer = append(m.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS, Ttl: 0},
			Txt: splitTXT(line),
		})
	}
	if rw.subnet.present {
		m.Extra = withECS(m.Extra, rw.subnet.echo(0))
	}
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
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

// explainClient records how the client was located.
func (w *routingWriter) explainClient(ex *explanation, loc clientLocation) {
	switch {
	case w.byECS:
		ex.addf("client %s: from the ECS option %s/%d", w.locateBy, w.subnet.address, w.subnet.source)
	case w.subnet.present && w.subnet.source == 0:
		ex.addf("client %s: the source address (the ECS option has SOURCE 0)", w.locateBy)
	case w.subnet.present:
		ex.addf("client %s: the source address (the ECS address %s is private or unroutable)", w.locateBy, w.subnet.address)
	default:
		ex.addf("client %s: the source address (no ECS option used)", w.locateBy)
	}
	ex.addf("database: %s", w.g.db.describe(w.locateBy))
	if !loc.located {
		if w.g.fallback.all {
			ex.addf("not located: fallback all keeps every healthy address")
		} else {
			ex.addf("not located: fallback places the client at %g %g", w.g.fallback.lat, w.g.fallback.lon)
		}
	}
}

// explainCandidates lists every address of the answer with its site, health
// and distance from where the client is taken to stand.
func (w *routingWriter) explainCandidates(ex *explanation, cands []candidate, up []bool, from point, placed, allDown bool) {
	for i := range cands {
		c := &cands[i]
		site, health := "anonymous site, not located", "healthy"
		switch {
		case c.pop != nil:
			site = "pop " + c.pop.id
		case c.located:
			site = fmt.Sprintf("anonymous site at %.4f %.4f", c.at.lat(), c.at.lon())
		}
		if allDown || !up[i] {
			health = "down" // as this query saw it
		}
		distance := ""
		if placed && c.located {
			distance = fmt.Sprintf(", %.0f km", distanceKm(from, c.at))
		}
		ex.addf("candidate %s: %s, %s%s", c.addr, site, health, distance)
	}
	if allDown {
		ex.addf("every candidate is down: failing open, all count as healthy")
	}
}

// explainChoice records the chosen addresses and the SCOPE.
func explainChoice(ex *explanation, kept []dns.RR, scope int) {
	addrs := make([]string, 0, len(kept))
	for _, rr := range kept {
		addrs = append(addrs, addrOf(rr).String())
	}
	ex.addf("chosen: %s", strings.Join(addrs, " "))
	ex.addf("scope: /%d", scope)
}

// describe says which database file and network decide addr, and what the
// record there says. It decodes the whole record, so it is for explain
// queries only.
func (db *geoDB) describe(addr netip.Addr) string {
	addr = addr.Unmap()
	var misses []string
	for _, src := range db.sources {
		f := src.current.Load()
		if !f.covers(addr) {
			continue
		}
		res := f.reader.Lookup(addr)
		name := filepath.Base(src.path)
		if res.Err() != nil {
			misses = append(misses, fmt.Sprintf("%s: %v", name, res.Err()))
			continue
		}
		if !res.Found() {
			misses = append(misses, fmt.Sprintf("%s: no network (no-match block %s)", name, res.Prefix()))
			continue
		}
		var rec map[string]any
		if err := res.Decode(&rec); err != nil {
			misses = append(misses, fmt.Sprintf("%s %s: %v", name, res.Prefix(), err))
			continue
		}
		city, country := placeName(rec)
		var c coordinates
		if res.Decode(&c) != nil || !c.complete() {
			misses = append(misses, fmt.Sprintf("%s %s: %s, %s, without coordinates", name, res.Prefix(), city, country))
			continue
		}
		return strings.Join(append(misses, fmt.Sprintf("%s %s: %s, %s at %.4f %.4f", name, res.Prefix(), city, country, c.lat, c.lon)), "; ")
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
