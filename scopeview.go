package georoute

import (
	"net/netip"
	"unsafe"
)

// scopeView is a merged view, stored compactly: the uniform blocks of one
// family in address order (only those the view vouches for; an address
// between them is answered with the database network's SCOPE), searched by
// binary search without allocating. A block's start, prefix and class sit
// together, so the step that finds a block has read all of it: clients that
// do not repeat miss the cache once per line the search touches.
type scopeView struct {
	family int
	// first[h] is the index of the first block that starts at or after
	// the /16 h (IPv4) or the 16-bit top h (IPv6), for a large view (nil
	// for a small one): a lookup searches only the blocks that start in
	// its own /16, a few cache lines, rather than the whole table
	// (megabytes with DB-IP).
	first []uint32
	// v4 or v6 are the blocks.
	v4 []viewBlock4
	v6 []viewBlock6
	// classes are the ranks of the pops each class answers, in order.
	classes [][]int
}

type viewBlock4 struct {
	start uint32
	class uint32
	bits  uint8
}

type viewBlock6 struct {
	hi, lo uint64
	class  uint32
	bits   uint8
}

func newScopeView(family int, blocks []scopeBlock, classes [][]int) *scopeView {
	v := &scopeView{family: family, classes: classes}
	if family == 4 {
		v.v4 = make([]viewBlock4, len(blocks))
		for i, b := range blocks {
			v.v4[i] = viewBlock4{start: uint32(b.start.hi >> 32), class: b.class, bits: b.bits}
		}
	} else {
		v.v6 = make([]viewBlock6, len(blocks))
		for i, b := range blocks {
			v.v6[i] = viewBlock6{hi: b.start.hi, lo: b.start.lo, class: b.class, bits: b.bits}
		}
	}
	if len(blocks) >= scopeIndexFrom {
		v.first = make([]uint32, 1<<16+1)
		next := 0 // the first /16 whose first block is not known yet
		for i, b := range blocks {
			for top := int(b.start.hi >> 48); next <= top; next++ {
				v.first[next] = uint32(i)
			}
		}
		for ; next <= 1<<16; next++ {
			v.first[next] = uint32(len(blocks))
		}
	}
	return v
}

// scopeIndexFrom is the number of blocks from which a view is indexed by
// /16 (256 KiB): a smaller table fits in a few cache lines anyway.
const scopeIndexFrom = 4096

// blocks is the number of blocks the view holds.
func (v *scopeView) blocks() int { return len(v.v4) + len(v.v6) }

// bytes is the memory the view's tables take.
func (v *scopeView) bytes() int {
	return 4*len(v.first) + int(unsafe.Sizeof(viewBlock4{}))*len(v.v4) + int(unsafe.Sizeof(viewBlock6{}))*len(v.v6)
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
	i, j := 0, v.blocks()
	if v.first != nil {
		top := x.hi >> 48
		i, j = int(v.first[top]), int(v.first[top+1])
	}
	if v.family == 4 {
		a := uint32(x.hi >> 32)
		for i < j {
			h := int(uint(i+j) >> 1)
			if v.v4[h].start <= a {
				i = h + 1
			} else {
				j = h
			}
		}
		if i == 0 {
			return 0, 0, false
		}
		blk := &v.v4[i-1]
		b := int(blk.bits)
		if b > 0 && (a^blk.start)>>(32-b) != 0 {
			return 0, 0, false
		}
		return b, blk.class, true
	}
	for i < j {
		h := int(uint(i+j) >> 1)
		if blk := &v.v6[h]; blk.hi < x.hi || (blk.hi == x.hi && blk.lo <= x.lo) {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == 0 {
		return 0, 0, false
	}
	blk := &v.v6[i-1]
	b := int(blk.bits)
	if x.cmp(u128{blk.hi, blk.lo}.lastOf(b)) > 0 {
		return 0, 0, false
	}
	return b, blk.class, true
}
