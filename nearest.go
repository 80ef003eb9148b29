package georoute

import (
	"net/netip"
	"slices"

	"github.com/miekg/dns"
)

// candidate is one address record of the answer being routed.
type candidate struct {
	rr   dns.RR
	addr netip.Addr
	// site groups the addresses of one pop: the pop's rank, or for an address
	// no pop claims (an anonymous site of its own) a number after every pop's
	// in answer order, so that ties keep the answer's order.
	site    int
	pop     *pop // nil for an anonymous site
	at      point
	located bool
	healthy bool
	taken   bool
	near    float64 // closeness to the client, larger is nearer
}

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
	// oneSite is set when every healthy candidate belongs to one site: the
	// answer is then the same wherever the client is.
	oneSite  bool
	failOpen bool
}

// candidates turns the address records of the answer into candidates and
// applies health: unhealthy ones are dropped unless every one is down, in
// which case all are kept (fail open: a checker that sees every backend down
// is more likely broken than the backends).
func (g *GeoRoute) candidates(rrs []dns.RR, buf []candidate) ([]candidate, bool) {
	cands := buf[:0]
	anyHealthy := false
	for i, rr := range rrs {
		c := candidate{rr: rr, addr: addrOf(rr), healthy: true}
		if pa, ok := g.byAddr[c.addr]; ok {
			c.pop, c.site, c.at, c.located = pa.pop, pa.pop.rank, pa.pop.at, true
			c.healthy = pa.healthy()
		} else {
			c.site = len(g.pops) + i
			if loc := g.db.locate(c.addr); loc.located {
				c.at, c.located = loc.at, true
			}
		}
		anyHealthy = anyHealthy || c.healthy
		cands = append(cands, c)
	}
	if !anyHealthy {
		return cands, true
	}
	healthy := cands[:0]
	for _, c := range cands {
		if c.healthy {
			healthy = append(healthy, c)
		}
	}
	return healthy, false
}

// siteScore is a site's closeness to the client and the candidate that
// stands for it.
type siteScore struct {
	near float64
	site int
	at   int // index of a candidate of the site
}

// nearer orders sites: closer first, equidistant ones by declaration order
// (pops before anonymous sites, those in answer order).
func (a siteScore) nearer(b siteScore) bool {
	return a.near > b.near || (a.near == b.near && a.site < b.site)
}

// choose keeps the addresses of the n sites nearest to client, nearest
// first; equidistant sites go in declaration order. Addresses that cannot be
// located are dropped as soon as any candidate can be.
func choose(cands []candidate, client point, n int, out []dns.RR, v *verdict) {
	// One pass keeps the n nearest distinct sites (n is small, usually 1),
	// whatever the number of pops: no sorting, no trigonometry.
	var topBuf [8]siteScore
	top := topBuf[:0]
	for i := range cands {
		c := &cands[i]
		if !c.located {
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
		// Nothing could be located: every candidate is as good as another.
		for _, c := range cands {
			out = append(out, c.rr)
		}
		v.kept = out
		return
	}
	first := cands[top[0].at]
	v.nearest, v.nearestAt, v.chose = first.pop, first.at, true
	for _, t := range top {
		for i := t.at; i < len(cands); i++ {
			// A site's addresses start at the one that stands for it: it is
			// the first of them the pass above met.
			if cands[i].site == t.site {
				out = append(out, cands[i].rr)
			}
		}
	}
	v.kept = out
}

// oneSite reports whether every candidate belongs to the same site.
func oneSite(cands []candidate) bool {
	for _, c := range cands[1:] {
		if c.site != cands[0].site {
			return false
		}
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
