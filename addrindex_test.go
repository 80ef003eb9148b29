package georoute

import (
	"net/netip"
	"testing"
)

// Every pop address is found, nothing else is, and addresses that differ
// in a few low bits (a CDN's pops, numbered in order) spread over the
// table rather than piling up in a run of slots.
func TestAddrIndex(t *testing.T) {
	var addrs []*popAddress
	for i := range 1000 {
		addrs = append(addrs,
			&popAddress{addr: netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 1})},
			&popAddress{addr: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})})
	}
	ix := newAddrIndex(addrs)
	probes := 0
	for _, pa := range addrs {
		if got := ix.find(pa.addr); got != pa {
			t.Fatalf("find(%s) = %v", pa.addr, got)
		}
		for i := addrHash(pa.addr) & ix.mask; ix.slots[i] != pa; i = (i + 1) & ix.mask {
			probes++
		}
	}
	if avg := float64(probes) / float64(len(addrs)); avg > 2 {
		t.Errorf("%.1f extra probes per address on average; a hash that mixes the low bits needs under 2", avg)
	}
	for _, s := range []string{"11.0.0.2", "12.0.0.1", "2001:db8::1:0", "::ffff:11.0.0.1"} {
		if pa := ix.find(netip.MustParseAddr(s)); pa != nil {
			t.Errorf("find(%s) = %s; want none", s, pa.addr)
		}
	}
}
