package georoute

import "net/netip"

// scopeView is a merged view, stored compactly: the uniform blocks of one
// family in address order (only those the view vouches for; an address
// between them is answered with the database network's SCOPE), searched by
// binary search without allocating.
type scopeView struct {
	family int
	// first[h] is the index of the first block that starts at or after
	// the /16 h (IPv4) or the 16-bit top h (IPv6): a lookup searches only
	// the blocks that start in its own /16, a few cache lines, rather than
	// the whole table (megabytes with DB-IP, a cache miss per step for
	// clients that do not repeat).
	first []uint32
	// start4 (IPv4) or hi/lo (IPv6) are the blocks' first addresses.
	start4 []uint32
	hi, lo []uint64
	bits   []uint8
	class  []uint32
	// classes are the ranks of the pops each class answers, in order.
	classes [][]int
}

func newScopeView(family int, blocks []scopeBlock, classes [][]int) *scopeView {
	v := &scopeView{family: family, classes: classes, bits: make([]uint8, len(blocks)), class: make([]uint32, len(blocks))}
	if family == 4 {
		v.start4 = make([]uint32, len(blocks))
	} else {
		v.hi, v.lo = make([]uint64, len(blocks)), make([]uint64, len(blocks))
	}
	v.first = make([]uint32, 1<<16+1)
	next := 0 // the first /16 whose first block is not known yet
	for i, b := range blocks {
		v.bits[i], v.class[i] = b.bits, b.class
		if family == 4 {
			v.start4[i] = uint32(b.start.hi >> 32)
		} else {
			v.hi[i], v.lo[i] = b.start.hi, b.start.lo
		}
		for top := int(b.start.hi >> 48); next <= top; next++ {
			v.first[next] = uint32(i)
		}
	}
	for ; next <= 1<<16; next++ {
		v.first[next] = uint32(len(blocks))
	}
	return v
}

// blocks is the number of blocks the view holds.
func (v *scopeView) blocks() int { return len(v.bits) }

// bytes is the memory the view's tables take.
func (v *scopeView) bytes() int {
	return 4*len(v.first) + 4*len(v.start4) + 8*len(v.hi) + 8*len(v.lo) + len(v.bits) + 4*len(v.class)
}

// lookup returns the block that holds addr (in the view's family: an
// IPv4 address, or an IPv6 one that is not IPv4-mapped): its prefix length
// and class. ok is false when no block holds it.
func (v *scopeView) lookup(addr netip.Addr) (bits int, class uint32, ok bool) {
	if addr.Is4() != (v.family == 4) {
		return 0, 0, false
	}
	x := u128Of(addr)
	// i is the number of blocks that start at or before addr: every block
	// before first[top] does, none from first[top+1] on.
	top := x.hi >> 48
	i, j := int(v.first[top]), int(v.first[top+1])
	if v.family == 4 {
		a := uint32(x.hi >> 32)
		for i < j {
			h := int(uint(i+j) >> 1)
			if v.start4[h] <= a {
				i = h + 1
			} else {
				j = h
			}
		}
		if i == 0 {
			return 0, 0, false
		}
		b := int(v.bits[i-1])
		if b > 0 && (a^v.start4[i-1])>>(32-b) != 0 {
			return 0, 0, false
		}
		return b, v.class[i-1], true
	}
	for i < j {
		h := int(uint(i+j) >> 1)
		if v.hi[h] < x.hi || (v.hi[h] == x.hi && v.lo[h] <= x.lo) {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == 0 {
		return 0, 0, false
	}
	s := u128{v.hi[i-1], v.lo[i-1]}
	b := int(v.bits[i-1])
	if x.cmp(s.lastOf(b)) > 0 {
		return 0, 0, false
	}
	return b, v.class[i-1], true
}
