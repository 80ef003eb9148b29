package georoute

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// candidate is one address record of the answer being routed.
type candidate struct {
	rr dns.RR
	// site groups the addresses of one pop: the pop's rank, or for an address
	// no pop claims (an anonymous site of its own) a number after every pop's
	// in answer order, so that ties keep the answer's order.
	site    int
	pop     *pop        // nil for an anonymous site
	pa      *popAddress // nil for an anonymous site, which is always healthy
	at      point
	located bool
}

// healthy reads the candidate's health as the checker last published it.
func (c *candidate) healthy() bool { return c.pa == nil || c.pa.healthy() }

// analyze finds the RRset of res that georoute routes and turns its
// records into candidates, in d. It reports whether there is anything to
// decide: false leaves d.outcome at outcomeNotRouted or outcomeNoRecords.
func (g *GeoRoute) analyze(res *dns.Msg, qname string, d *decision) bool {
	if (d.qtype != dns.TypeA && d.qtype != dns.TypeAAAA) || res.Rcode != dns.RcodeSuccess || len(res.Question) == 0 {
		return false
	}
	d.owner = chainEnd(res.Answer, qname)
	if !g.routes(d.owner) {
		return false
	}
	d.outcome = outcomeNoRecords
	d.cands = slices.Grow(d.cands, len(res.Answer))
	sig := false
	for i, rr := range res.Answer {
		addr, t := targetAddr(rr, d.qtype, d.owner)
		d.target = append(d.target, t)
		if t {
			d.cands = d.cands[:len(d.cands)+1]
			g.fillCandidate(&d.cands[len(d.cands)-1], rr, addr, i)
		} else {
			sig = sig || covers(rr, d.qtype, d.owner)
		}
	}
	if len(d.cands) == 0 {
		return false
	}
	d.outcome = outcomeRouted
	if sig {
		d.outcome = outcomeSigned
	}
	return true
}

// fillCandidate says which pop serves addr, the address of rr, the i-th
// record of the answer, or where the database places an address no pop
// claims. It writes every field in place (c may hold an earlier query's):
// every record of a large answer passes here.
func (g *GeoRoute) fillCandidate(c *candidate, rr dns.RR, addr netip.Addr, i int) {
	// Field by field: a composite literal is built aside and copied over
	// with the garbage collector's barriers, three times slower here. The
	// address is not kept: explanations read it from the record.
	c.rr = rr
	if pa := g.popAddress(addr); pa != nil {
		c.site, c.pop, c.pa, c.at, c.located = pa.pop.rank, pa.pop, pa, pa.pop.at, true
		return
	}
	loc := g.db.locate(addr)
	c.site, c.pop, c.pa, c.at, c.located = len(g.pops)+i, nil, nil, loc.at, loc.located
}

// popAddress returns the pop address addr, nil when no pop claims it.
func (g *GeoRoute) popAddress(addr netip.Addr) *popAddress { return g.addrIndex.find(addr) }

// routes reports whether name is one of the configured names or below one,
// label by label: an escaped dot (a\.x.example.org) is part of a label, not
// a boundary. It is plugin.Zones.Matches without the allocations of
// splitting labels: the zones are lower-case FQDNs.
func (g *GeoRoute) routes(name string) bool {
	for _, z := range g.zones {
		if z == "." {
			return true
		}
		if suffix := name[max(len(name)-len(z), 0):]; len(name) < len(z) || (suffix != z && !strings.EqualFold(suffix, z)) {
			continue
		}
		if len(name) == len(z) {
			return true
		}
		if dot := len(name) - len(z) - 1; name[dot] == '.' && !escaped(name, dot) {
			return true
		}
	}
	return false
}

// escaped reports whether the character at i of a presentation-format
// name is escaped: preceded by an odd number of backslashes.
func escaped(name string, i int) bool {
	n := 0
	for i--; i >= 0 && name[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
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

// targetAddr returns the address of rr when it is a record of the routed
// RRset: of type qtype, owned by owner. One type switch reads both the
// header and the address.
func targetAddr(rr dns.RR, qtype uint16, owner string) (netip.Addr, bool) {
	var h *dns.RR_Header
	var ip net.IP
	switch r := rr.(type) {
	case *dns.A:
		h, ip = &r.Hdr, r.A
	case *dns.AAAA:
		h, ip = &r.Hdr, r.AAAA
	default:
		return netip.Addr{}, false
	}
	if h.Rrtype != qtype || (h.Name != owner && !strings.EqualFold(h.Name, owner)) {
		return netip.Addr{}, false
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap(), true
}

// covers reports whether rr is an RRSIG over the RRset: cutting the RRset
// would break the signature.
func covers(rr dns.RR, qtype uint16, owner string) bool {
	s, ok := rr.(*dns.RRSIG)
	return ok && s.TypeCovered == qtype && strings.EqualFold(s.Hdr.Name, owner)
}

// addrOf returns the address of an A or AAAA record.
func addrOf(rr dns.RR) netip.Addr {
	var a netip.Addr
	switch r := rr.(type) {
	case *dns.A:
		a, _ = netip.AddrFromSlice(r.A)
	case *dns.AAAA:
		a, _ = netip.AddrFromSlice(r.AAAA)
	}
	return a.Unmap()
}
