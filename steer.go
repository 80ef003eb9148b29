package georoute

import (
	"net/netip"
	"slices"
	"sync"
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
	// The index, built at the first query: the rules by network, the
	// prefix lengths in use per family (longest first), and the rules in
	// address order. A query then costs a lookup per length in use and a
	// binary search, not a scan of every rule (an overrides file may hold
	// hundreds of thousands).
	once     sync.Once
	byPrefix map[netip.Prefix]*overrideRule
	lens     [2][]int // IPv4, IPv6
	ordered  []*overrideRule
}

// index builds the lookup structures once; the table never changes after
// it is published.
func (t *overrideTable) index() {
	t.once.Do(func() {
		t.byPrefix = make(map[netip.Prefix]*overrideRule, len(t.rules))
		for i := range t.rules {
			r := &t.rules[i]
			if _, dup := t.byPrefix[r.prefix]; dup {
				continue // the first of two rules for one network wins
			}
			t.byPrefix[r.prefix] = r
			f := familyIndex(r.prefix.Addr())
			if !slices.Contains(t.lens[f], r.prefix.Bits()) {
				t.lens[f] = append(t.lens[f], r.prefix.Bits())
			}
			t.ordered = append(t.ordered, r)
		}
		for f := range t.lens {
			slices.SortFunc(t.lens[f], func(a, b int) int { return b - a })
		}
		slices.SortFunc(t.ordered, func(a, b *overrideRule) int { return a.prefix.Addr().Compare(b.prefix.Addr()) })
	})
}

// familyIndex is 0 for IPv4, 1 for IPv6.
func familyIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
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
	t.index()
	for _, bits := range t.lens[familyIndex(addr)] {
		p, _ := addr.Prefix(bits)
		if r := t.byPrefix[p]; r != nil {
			return r
		}
	}
	return nil
}

// bound narrows a SCOPE of bits around addr (in addr's family) until the
// block it claims holds no rule boundary: inside the block either every
// address falls under the same rule or none does.
func (t *overrideTable) bound(addr netip.Addr, bits int) int {
	if t == nil {
		return bits
	}
	// Only rules that start inside the block can cut it (a longer rule
	// that holds addr starts inside it too); in address order they follow
	// one another. Cutting only ever shrinks the block, in any order.
	t.index()
	block := netip.PrefixFrom(addr, bits).Masked()
	i, _ := slices.BinarySearchFunc(t.ordered, block.Addr(), func(r *overrideRule, a netip.Addr) int { return r.prefix.Addr().Compare(a) })
	for ; i < len(t.ordered) && block.Contains(t.ordered[i].prefix.Addr()); i++ {
		bits = cutAt(addr, bits, t.ordered[i].prefix)
	}
	return bits
}
