package georoute

import (
	"net/netip"
	"slices"

	"github.com/miekg/dns"
)

// candidate is one address record of the answer being routed. Everything
// in it is fixed for a given answer and database; health is read live
// through pa, so a candidate list can be kept across queries.
type candidate struct {
	rr   dns.RR
	addr netip.Addr
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

// verdict is what the routing decided for one answer.
type verdict struct {
	// kept are the records to serve, in order.
	kept []dns.RR
	// nearest is the first chosen pop, nil for an anonymous site or when the
	// client was not located and fallback is `all`.
	nearest *pop
	// nearestAt is the first chosen site's position, valid when chose is set.
	nearestAt point
	chose     bool
}

// candidates turns the address records of an answer into candidates:
// which pop serves each, or where the database places an address no pop
// claims.
func (g *GeoRoute) candidates(rrs []dns.RR, buf []candidate) []candidate {
	cands := buf[:0]
	for i, rr := range rrs {
		c := candidate{rr: rr, addr: addrOf(rr)}
		if pa, ok := g.byAddr[c.addr]; ok {
			c.pop, c.pa, c.site, c.at, c.located = pa.pop, pa, pa.pop.rank, pa.pop.at, true
		} else {
			c.site = len(g.pops) + i
			if loc := g.db.locate(c.addr); loc.located {
				c.at, c.located = loc.at, true
			}
		}
		cands = append(cands, c)
	}
	return cands
}

// health reads every candidate's health once, into up (which it returns,
// built on buf): a query must decide on one view of it, since the checker
// may change it at any time. When every candidate is down all count as up
// (fail open, reported by failOpen): a checker that sees every backend down
// is more likely broken than the backends, and the client still gets its
// nearest site.
func health(cands []candidate, buf []bool) (up []bool, failOpen bool) {
	up = buf[:0]
	anyUp := false
	for i := range cands {
		h := cands[i].healthy()
		up = append(up, h)
		anyUp = anyUp || h
	}
	if anyUp {
		return up, false
	}
	for i := range up {
		up[i] = true
	}
	return up, true
}

// siteScore is a site's closeness to the client and the candidate that
// stands for it.
type siteScore struct {
	near float64
	site int
	at   int // index of the site's first usable candidate
}

// nearer orders sites: closer first, equidistant ones by declaration order
// (pops before anonymous sites, those in answer order).
func (a siteScore) nearer(b siteScore) bool {
	return a.near > b.near || (a.near == b.near && a.site < b.site)
}

// choose keeps the addresses of the n sites nearest to client among the
// candidates that are up (up[i], from health), nearest first; equidistant
// sites go in declaration order. Addresses that cannot be located are
// dropped as soon as any candidate that is up can be.
func choose(cands []candidate, up []bool, client point, n int, out []dns.RR, v *verdict) {
	// One pass keeps the n nearest distinct sites (n is small, usually 1),
	// whatever the number of pops: no sorting, no trigonometry.
	var topBuf [8]siteScore
	top := topBuf[:0]
	for i := range cands {
		c := &cands[i]
		if !c.located || !up[i] {
			continue
		}
		s := siteScore{near: client.closeness(c.at), site: c.site, at: i}
		if len(top) == n && !s.nearer(top[n-1]) {
			continue
		}
		if slices.ContainsFunc(top, func(t siteScore) bool { return t.site == s.site }) {
			continue // every address of a site scores the same
		}
		if len(top) < n {
			top = append(top, s)
		} else {
			top[n-1] = s
		}
		for k := len(top) - 1; k > 0 && top[k].nearer(top[k-1]); k-- {
			top[k], top[k-1] = top[k-1], top[k]
		}
	}
	if len(top) == 0 {
		// Nothing could be located: every candidate that is up is as good
		// as another.
		v.kept = keepUp(cands, up, out)
		return
	}
	first := &cands[top[0].at]
	v.nearest, v.nearestAt, v.chose = first.pop, first.at, true
	for _, t := range top {
		// A site's usable addresses start at the one that stands for it: it
		// is the first of them the pass above met.
		for i := t.at; i < len(cands); i++ {
			if cands[i].site == t.site && up[i] {
				out = append(out, cands[i].rr)
			}
		}
	}
	v.kept = out
}

// keepUp appends the record of every candidate that is up to out, in
// answer order: the answer for a client that cannot be located with
// `fallback all`.
func keepUp(cands []candidate, up []bool, out []dns.RR) []dns.RR {
	for i := range cands {
		if up[i] {
			out = append(out, cands[i].rr)
		}
	}
	return out
}

// oneSite reports whether every candidate that is up belongs to the same
// site: the answer is then the same wherever the client is.
func oneSite(cands []candidate, up []bool) bool {
	site := -1
	for i := range cands {
		if !up[i] {
			continue
		}
		if site >= 0 && cands[i].site != site {
			return false
		}
		site = cands[i].site
	}
	return true
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
