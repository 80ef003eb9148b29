package georoute

// This file stands in for the lead's steer.go (issue 9) until it lands on
// main; it is deleted at the merge. The definitions follow
// /work/notes/decision-api.md exactly.

import (
	"net/netip"
	"sync/atomic"
)

type steering struct {
	drains    atomic.Pointer[drainSet]
	overrides atomic.Pointer[overrideTable]
}

type drainSet struct{ drained []bool }

func (d *drainSet) has(rank int) bool {
	return d != nil && rank < len(d.drained) && d.drained[rank]
}

type overrideTable struct{ rules []overrideRule }

type overrideRule struct {
	prefix netip.Prefix
	pops   []*pop
}

func (t *overrideTable) match(addr netip.Addr) *overrideRule {
	if t == nil {
		return nil
	}
	addr = addr.Unmap()
	var best *overrideRule
	for i := range t.rules {
		r := &t.rules[i]
		if r.prefix.Contains(addr) && (best == nil || r.prefix.Bits() > best.prefix.Bits()) {
			best = r
		}
	}
	return best
}
