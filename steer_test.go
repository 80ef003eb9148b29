package georoute

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// The indexed match and bound give what a scan of every rule gives: the
// longest rule holding the address, and the block cut at every rule edge.
func TestOverrideTableIndexMatchesScan(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 5))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, byte(rnd.IntN(4)), byte(rnd.IntN(256)), 15: byte(rnd.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{10, byte(rnd.IntN(4)), byte(rnd.IntN(256)), byte(rnd.IntN(256))})
	}
	table := &overrideTable{}
	seen := map[netip.Prefix]bool{}
	for len(table.rules) < 300 {
		v6 := rnd.IntN(2) == 1
		bits := 8 + rnd.IntN(25)
		if v6 {
			bits = 16 + rnd.IntN(100)
		}
		p, _ := addr(v6).Prefix(bits)
		if !seen[p] {
			seen[p] = true
			table.rules = append(table.rules, overrideRule{prefix: p})
		}
	}
	for range 5000 {
		a := addr(rnd.IntN(2) == 1)
		var want *overrideRule
		for i := range table.rules {
			if r := &table.rules[i]; r.prefix.Contains(a) && (want == nil || r.prefix.Bits() > want.prefix.Bits()) {
				want = r
			}
		}
		if got := table.match(a); got != want {
			t.Fatalf("match(%s) = %v; want %v", a, got, want)
		}
		bits := rnd.IntN(a.BitLen() + 1)
		wantBits := bits
		for _, r := range table.rules {
			wantBits = cutAt(a, wantBits, r.prefix)
		}
		if got := table.bound(a, bits); got != wantBits {
			t.Fatalf("bound(%s, %d) = %d; want %d", a, bits, got, wantBits)
		}
	}
}
