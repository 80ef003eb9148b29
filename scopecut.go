package georoute

import (
	"cmp"
	"net/netip"
	"slices"
)

// The edges merged SCOPE blocks must not cross, and the 128-bit address
// arithmetic the merge works in.

// u128 is an address as a 128-bit number, most significant bit first: an
// IPv6 address as it is, an IPv4 one in the top 32 bits, so that a prefix of
// b bits is the top b bits in both families.
type u128 struct{ hi, lo uint64 }

func u128Of(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{hi: uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32}
	}
	b := a.As16()
	var x u128
	for i := range 8 {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

// bitAt returns bit i (0 is the most significant) as 0 or 1.
func (x u128) bitAt(i int) uint64 {
	if i < 64 {
		return x.hi >> (63 - i) & 1
	}
	return x.lo >> (127 - i) & 1
}

// withBit returns x with bit i set.
func (x u128) withBit(i int) u128 {
	if i < 64 {
		x.hi |= 1 << (63 - i)
	} else {
		x.lo |= 1 << (127 - i)
	}
	return x
}

// lastOf returns the last address of the block of bits bits that starts at x.
func (x u128) lastOf(bits int) u128 {
	switch {
	case bits <= 0:
		return u128{^uint64(0), ^uint64(0)}
	case bits < 64:
		return u128{x.hi | ^uint64(0)>>bits, ^uint64(0)}
	case bits < 128:
		return u128{x.hi, x.lo | ^uint64(0)>>(bits-64)}
	}
	return x
}

func (x u128) cmp(y u128) int {
	if c := cmp.Compare(x.hi, y.hi); c != 0 {
		return c
	}
	return cmp.Compare(x.lo, y.lo)
}

// scopeCut is a block whose edges a merged block must not cross: an
// override rule's network (label: the rule's index) or a special-purpose
// one (labelNever), whose ECS addresses do not locate the client at all.
type scopeCut struct {
	start u128
	bits  int
	label int
}

const (
	labelNone  = -1 // no rule, no special-purpose block
	labelNever = -2 // a special-purpose block: never merged
)

// cutPieces partitions the family's space into prefixes so that no piece
// straddles the edge of an override network or a special-purpose block,
// each piece labelled with the innermost one holding it.
func (m *scopeMerger) cutPieces() []scopeCut {
	var cuts []scopeCut
	for _, p := range specialPurposeBlocks {
		if p.Addr().Is4() == (m.spec.family == 4) {
			cuts = append(cuts, scopeCut{start: u128Of(p.Addr()), bits: p.Bits(), label: labelNever})
		}
	}
	for i, r := range m.spec.rules {
		if r.prefix.Addr().Is4() == (m.spec.family == 4) {
			cuts = append(cuts, scopeCut{start: u128Of(r.prefix.Addr()), bits: r.prefix.Bits(), label: i})
		}
	}
	slices.SortFunc(cuts, func(a, b scopeCut) int {
		if c := a.start.cmp(b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.bits, b.bits)
	})
	var pieces []scopeCut
	var split func(p scopeCut)
	split = func(p scopeCut) {
		if p.label == labelNever || !cutInside(cuts, p) {
			pieces = append(pieces, p)
			return
		}
		split(labelled(cuts, scopeCut{start: p.start, bits: p.bits + 1, label: p.label}))
		split(labelled(cuts, scopeCut{start: p.start.withBit(p.bits), bits: p.bits + 1, label: p.label}))
	}
	split(labelled(cuts, scopeCut{label: labelNone}))
	return pieces
}

// labelled returns h with the label of the cut on exactly its network, if
// any. Special-purpose blocks win over an override on the same network:
// their ECS addresses locate nobody.
func labelled(cuts []scopeCut, h scopeCut) scopeCut {
	i, _ := slices.BinarySearchFunc(cuts, h.start, func(c scopeCut, t u128) int { return c.start.cmp(t) })
	for ; i < len(cuts) && cuts[i].start == h.start; i++ {
		if cuts[i].bits == h.bits && h.label != labelNever {
			h.label = cuts[i].label
		}
	}
	return h
}

// cutInside reports whether a cut lies strictly inside p.
func cutInside(cuts []scopeCut, p scopeCut) bool {
	end := p.start.lastOf(p.bits)
	i, _ := slices.BinarySearchFunc(cuts, p.start, func(c scopeCut, t u128) int { return c.start.cmp(t) })
	for ; i < len(cuts) && cuts[i].start.cmp(end) <= 0; i++ {
		if cuts[i].bits > p.bits {
			return true
		}
	}
	return false
}
