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

// addrHash mixes the 128 bits of an address into a table index.
func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	h := (hi ^ lo*0x9E3779B97F4A7C15) * 0xBF58476D1CE4E5B9
	return h ^ h>>31
}
