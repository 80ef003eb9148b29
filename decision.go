package georoute

import (
	"net/netip"

	"github.com/miekg/dns"
)

// outcome is what georoute makes of one reply.
type outcome uint8

const (
	// outcomeNotRouted: not an A/AAAA NOERROR reply, or the RRset at the end
	// of the CNAME chain belongs to no configured name. Passed unchanged.
	outcomeNotRouted outcome = iota
	// outcomeNoRecords: a configured name without address records of the
	// queried type (NODATA, or a CNAME leaving the zone). Passed unchanged.
	outcomeNoRecords
	// outcomeSigned: an RRSIG covers the RRset, so it cannot be cut.
	outcomeSigned
	// outcomeRouted: the RRset is replaced by the chosen records.
	outcomeRouted
)

// candState is how one query saw a candidate: health is read once per
// query, since the checker may change it at any time.
type candState uint8

const (
	candUp candState = iota
	candDown
	candDrained
)

func (s candState) String() string {
	switch s {
	case candDown:
		return "down"
	case candDrained:
		return "drained"
	}
	return "up"
}

// decision is how one answer is chosen for one client: computed once by
// decide, then read by its three consumers — count (metrics.go), the
// explanation (explain.go) and apply (reply.go) — so that what is served,
// what is counted and what is explained can never disagree. gdnsd's
// map_get_dclist → resolve_dc → scope merge is the model.
type decision struct {
	outcome outcome
	// owner is the owner name of the RRset that answers the query.
	owner string
	qtype uint16

	// lookup is the address the client is located by (unmapped), from the
	// ECS option when byECS, else the source address.
	lookup netip.Addr
	byECS  bool
	loc    clientLocation
	// overrides is the table in service, read once; rule is its override
	// whose network holds lookup, nil if none; ruled is set when the rule
	// decided the answer (one of its pops was up).
	overrides *overrideTable
	rule      *overrideRule
	ruled     bool
	// placed is set when the client stands somewhere (located, or the
	// fallback point): from is then where distances are measured from.
	placed bool
	from   point

	// target marks the answer records of the routed RRset; cands are those
	// records, with state as this query saw them and eligible what choosing
	// may use after the fail-open and drain rules.
	target   []bool
	cands    []candidate
	state    []candState
	eligible []bool
	failOpen bool
	// allDrained is set when every candidate was drained: the answer is
	// then chosen as if none were.
	allDrained bool

	// kept are the records to serve, in order; nearest is the first chosen
	// pop (nil for an anonymous site or fallback all), at nearestAt.
	kept      []dns.RR
	nearest   *pop
	nearestAt point
	chose     bool

	// scope is the ECS SCOPE of the reply in the option's family.
	scope int
	// source is the requests_total label: ecs, remote, fallback, override,
	// signed.
	source string
}

// decide computes the decision for the reply res of the next plugin to a
// query of qtype from c, reading the database, health, drains and
// overrides once each. It writes into d, whose slices it reuses, so that a
// query allocates nothing here. decide is pure apart from those reads: it
// changes neither res nor any state.
func (g *GeoRoute) decide(c *client, res *dns.Msg, qtype uint16, d *decision) {
	d.reset(qtype)
	// The next plugin's SCOPE (-1: none) is kept, or the longer one wins.
	up := upstreamScope(res)
	d.scope = max(up, 0)
	if !g.analyze(res, c.qname, d) {
		return
	}
	d.lookup, d.byECS = c.lookup, c.byECS
	if d.outcome == outcomeSigned {
		d.source = "signed"
		return
	}
	g.readState(d)
	d.loc = g.db.locate(d.lookup)
	g.choose(d)
	d.scope = max(g.scopeOf(c, d), up)
}

func (d *decision) reset(qtype uint16) {
	*d = decision{
		qtype:    qtype,
		target:   d.target[:0],
		cands:    d.cands[:0],
		state:    d.state[:0],
		eligible: d.eligible[:0],
		kept:     d.kept[:0],
	}
}

// readState reads the health and drain of every candidate once and works
// out which ones choosing may use. A checker that sees every backend down
// is more likely broken than the backends: then every candidate that is not
// drained counts as up (fail open). Fail open never re-admits a drained
// pop; but when every candidate is drained the answer is chosen as if none
// were, since an empty answer is worse than a drained pop.
func (g *GeoRoute) readState(d *decision) {
	drains := g.steer.drains.Load()
	anyEligible, anyUndrained := false, false
	for i := range d.cands {
		c := &d.cands[i]
		s := candUp
		switch {
		case c.pop != nil && drains.has(c.pop.rank):
			s = candDrained
		case !c.healthy():
			s = candDown
		}
		d.state = append(d.state, s)
		d.eligible = append(d.eligible, s == candUp)
		anyEligible = anyEligible || s == candUp
		anyUndrained = anyUndrained || s != candDrained
	}
	if anyEligible {
		return
	}
	if !anyUndrained {
		// Every candidate drained: undo the drains, keep the health.
		d.allDrained = true
		for i := range d.cands {
			d.eligible[i] = d.cands[i].healthy()
			anyEligible = anyEligible || d.eligible[i]
		}
		if anyEligible {
			return
		}
	}
	d.failOpen = true
	for i := range d.cands {
		d.eligible[i] = d.allDrained || d.state[i] != candDrained
	}
}

// choose picks the records: the override's pops when one applies, else
// the nearest to where the client stands, else (not located, fallback
// all) every eligible record.
func (g *GeoRoute) choose(d *decision) {
	d.source = "remote"
	if d.byECS {
		d.source = "ecs"
	}
	switch {
	case d.loc.located:
		d.placed, d.from = true, d.loc.at
	case !g.fallback.all:
		d.placed, d.from, d.source = true, g.fallback.at, "fallback"
	default:
		d.source = "fallback"
	}
	d.overrides = g.steer.overrides.Load()
	if d.rule = d.overrides.match(d.lookup); d.rule != nil && g.chooseOverride(d) {
		return
	}
	if !d.placed {
		d.kept = keepEligible(d.cands, d.eligible, d.kept)
		return
	}
	var v verdict
	d.kept = nearest(d.cands, d.eligible, d.from, g.answers, d.kept, &v)
	d.nearest, d.nearestAt, d.chose = v.nearest, v.nearestAt, v.chose
}

// chooseOverride serves the rule's pops in the listed order, skipping
// those down or drained; when answers asks for more, the nearest of the
// other pops follow. It reports false, choosing nothing, when none of the
// listed pops is up (while failing open none is): the client is then
// routed as if there were no rule.
func (g *GeoRoute) chooseOverride(d *decision) bool {
	sites := 0
	var first *candidate
	for _, p := range d.rule.pops {
		if sites == g.answers {
			break
		}
		found := false
		for i := range d.cands {
			if d.cands[i].pop == p && d.eligible[i] && !d.failOpen {
				d.kept = append(d.kept, d.cands[i].rr)
				if first == nil {
					first = &d.cands[i]
				}
				found = true
			}
		}
		if found {
			sites++
		}
	}
	if sites == 0 {
		return false
	}
	d.ruled, d.source = true, "override"
	d.nearest, d.nearestAt, d.chose = first.pop, first.at, true
	if sites < g.answers && d.placed {
		// The remaining places go to the nearest pops the rule did not list.
		var rest [64]bool
		others := rest[:0]
		if len(d.cands) > len(rest) {
			others = make([]bool, 0, len(d.cands))
		}
		for i := range d.cands {
			others = append(others, d.eligible[i] && !d.rule.lists(d.cands[i].pop))
		}
		var v verdict
		d.kept = nearest(d.cands, others, d.from, g.answers-sites, d.kept, &v)
	}
	return true
}

// scopeOf is the SCOPE of a tailored reply (design §5), in the ECS
// option's family. Without a usable ECS address it is what the option
// itself decided (0 for SOURCE 0, the special-purpose block for a private
// address): every client in that block is answered by the resolver's own
// location. Otherwise it is the widest block around the client in which
// every address gets this same answer.
func (g *GeoRoute) scopeOf(c *client, d *decision) int {
	if !c.subnet.present {
		return 0
	}
	if !d.byECS {
		return c.unusedScope
	}
	if oneSite(d.cands, d.eligible) {
		// The answer is the same wherever the client is: resolvers may
		// cache it for everybody.
		return 0
	}
	if v, ok := g.scopes.widest(g, d); ok {
		// A merged view never crosses an override's edge or a
		// special-purpose block (scopecut.go).
		return c.subnet.scopeFor(v)
	}
	// The database network, cut at the same edges: a block that mixes
	// override and other clients is not uniform, and addresses in a
	// special-purpose block are answered by the resolver's location, not
	// their own.
	bits := d.overrides.bound(d.lookup, d.loc.prefix)
	if bits < longestSpecialPurpose(d.lookup) {
		for _, p := range specialPurposeBlocks {
			bits = cutAt(d.lookup, bits, p)
		}
	}
	return c.subnet.scopeFor(bits)
}

// upstreamScope is the SCOPE of an ECS option in the next plugin's reply
// (forward to an ECS-aware upstream), -1 when it carries none.
func upstreamScope(res *dns.Msg) int {
	for _, rr := range res.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			for _, e := range o.Option {
				if s, ok := e.(*dns.EDNS0_SUBNET); ok {
					return int(s.SourceScope)
				}
			}
		}
	}
	return -1
}
