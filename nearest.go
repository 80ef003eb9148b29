package georoute

import (
	"slices"

	"github.com/miekg/dns"
)

// verdict is what nearest found besides the records.
type verdict struct {
	// nearest is the first chosen pop, nil for an anonymous site.
	nearest *pop
	// nearestAt is the first chosen site's position, valid when chose is set.
	nearestAt point
	chose     bool
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

// nearest appends to out the addresses of the n sites nearest to client
// among the eligible candidates, nearest first, and returns it; equidistant
// sites go in declaration order. Addresses that cannot be located are
// dropped as soon as any eligible candidate can be.
func nearest(cands []candidate, up []bool, client point, n int, out []dns.RR, v *verdict) []dns.RR {
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
		return keepEligible(cands, up, out)
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
	return out
}

// keepEligible appends the record of every eligible candidate to out, in
// answer order: the answer for a client that cannot be located with
// `fallback all`.
func keepEligible(cands []candidate, up []bool, out []dns.RR) []dns.RR {
	for i := range cands {
		if up[i] {
			out = append(out, cands[i].rr)
		}
	}
	return out
}

// oneSite reports whether every eligible candidate belongs to the same
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
