package georoute

// scopeSpecOf is what an answer's merged view depends on: the family, the
// pops of cands that choosing may use (eligible, after fail-open), N and the
// override rules. ok is false when the answer holds an anonymous site (an
// address no pop claims): those keep the database network's SCOPE.
func scopeSpecOf(family int, cands []candidate, eligible []bool, n int, rules []scopeRule) (spec scopeSpec, ok bool) {
	spec = scopeSpec{family: family, n: n, rules: rules}
	for i := range cands {
		c := &cands[i]
		if c.pop == nil {
			return scopeSpec{}, false
		}
		if !eligible[i] {
			continue
		}
		seen := false
		for _, s := range spec.sites {
			seen = seen || s.rank == c.pop.rank
		}
		if !seen {
			spec.sites = append(spec.sites, scopeSite{rank: c.pop.rank, at: c.pop.at})
		}
	}
	// Sites go in rank order, as the merge ranks equidistant pops.
	for i := 1; i < len(spec.sites); i++ {
		for j := i; j > 0 && spec.sites[j].rank < spec.sites[j-1].rank; j-- {
			spec.sites[j], spec.sites[j-1] = spec.sites[j-1], spec.sites[j]
		}
	}
	return spec, true
}
