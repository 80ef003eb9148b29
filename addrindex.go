package georoute

import (
	"encoding/binary"
	"net/netip"
)

// addrIndex finds the pop address of an answer record's address: an
// open-addressing table of the pop addresses, sized at twice their number,
// probed linearly. Every record of every routed answer is looked up here,
// so it avoids the general map's hashing of the whole netip.Addr.
type addrIndex struct {
	slots []*popAddress
	mask  uint64
}

func newAddrIndex(addrs []*popAddress) addrIndex {
	size := uint64(2)
	for size < 2*uint64(len(addrs)) {
		size <<= 1
	}
	ix := addrIndex{slots: make([]*popAddress, size), mask: size - 1}
	for _, a := range addrs {
		i := addrHash(a.addr) & ix.mask
		for ix.slots[i] != nil {
			i = (i + 1) & ix.mask
		}
		ix.slots[i] = a
	}
	return ix
}

// find returns the pop address addr, nil when no pop claims it.
func (ix *addrIndex) find(addr netip.Addr) *popAddress {
	if len(ix.slots) == 0 {
		return nil
	}
	for i := addrHash(addr) & ix.mask; ; i = (i + 1) & ix.mask {
		pa := ix.slots[i]
		if pa == nil || pa.addr == addr {
			return pa
		}
	}
}

// addrHash mixes an address into a table index (the low bits are used):
// every bit of the address reaches every bit of the index, so that pops
// numbered in order (addresses that differ in a few low bits) spread over
// the table. Most answers are IPv4: their 32 bits take one round.
func addrHash(a netip.Addr) uint64 {
	if a.Is4() {
		b := a.As4()
		return mix64(uint64(binary.BigEndian.Uint32(b[:])))
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	return mix64(mix64(hi) ^ lo)
}

// mix64 is MurmurHash3's 64-bit finalizer.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}
