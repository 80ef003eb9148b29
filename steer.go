package georoute

import (
	"net/netip"
	"slices"
	"sync/atomic"
)

// steering is what operators feed the decision besides health: drained
// pops and pinned networks. Both are immutable values swapped whole, so a
// query reads each once, without a lock.
type steering struct {
	drains    atomic.Pointer[drainSet]      // nil: nothing drained
	overrides atomic.Pointer[overrideTable] // nil: no overrides
}

// drainSet is the drained pops at one moment.
type drainSet struct {
	// drained is indexed by pop rank (declaration order).
	drained []bool
}

// has reports whether the pop of the given rank is drained.
func (d *drainSet) has(rank int) bool {
	return d != nil && rank < len(d.drained) && d.drained[rank]
}

// overrideTable is the `override` rules of a block, inline and from its
// `overrides` file.
type overrideTable struct {
	rules []overrideRule
}

// overrideRule pins the clients located inside prefix to pops.
type overrideRule struct {
	// prefix is masked; IPv4 networks are plain IPv4, never IPv4-mapped.
	prefix netip.Prefix
	// pops are served in this order.
	pops []*pop
}

// lists reports whether p is one of the rule's pops.
func (r *overrideRule) lists(p *pop) bool { return p != nil && slices.Contains(r.pops, p) }

// match returns the longest rule whose network holds addr, nil if none.
func (t *overrideTable) match(addr netip.Addr) *overrideRule {
	if t == nil {
		return nil
	}
	var best *overrideRule
	for i := range t.rules {
		r := &t.rules[i]
		if r.prefix.Contains(addr) && (best == nil || r.prefix.Bits() > best.prefix.Bits()) {
			best = r
		}
	}
	return best
}

// bound narrows a SCOPE of bits around addr (in addr's family) until the
// block it claims holds no rule boundary: inside the block either every
// address falls under the same rule or none does.
func (t *overrideTable) bound(addr netip.Addr, bits int) int {
	if t == nil {
		return bits
	}
	for i := range t.rules {
		bits = cutAt(addr, bits, t.rules[i].prefix)
	}
	return bits
}
