package georoute

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// The /16 index finds the same block as a search of the whole table,
// blocks that start in an earlier /16 (a /8) and gaps included.
func TestScopeViewIndexMatchesFullSearch(t *testing.T) {
	for _, family := range []int{4, 6} {
		var prefixes []netip.Prefix
		if family == 4 {
			prefixes = []netip.Prefix{
				netip.MustParsePrefix("1.0.0.0/24"), netip.MustParsePrefix("10.0.0.0/8"),
				netip.MustParsePrefix("11.2.3.0/24"), netip.MustParsePrefix("11.2.4.128/25"),
				netip.MustParsePrefix("11.3.0.0/16"), netip.MustParsePrefix("128.0.0.0/2"),
				netip.MustParsePrefix("255.255.255.255/32"),
			}
		} else {
			prefixes = []netip.Prefix{
				netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("2400::/12"),
				netip.MustParsePrefix("2a00:1450:4001::/48"), netip.MustParsePrefix("fe80::/10"),
			}
		}
		var blocks []scopeBlock
		for i, p := range prefixes {
			blocks = append(blocks, scopeBlock{start: u128Of(p.Addr()), bits: uint8(p.Bits()), class: uint32(i)})
		}
		v := newScopeView(family, blocks, nil)
		rnd := rand.New(rand.NewPCG(uint64(family), 3))
		var clients []netip.Addr
		for _, p := range prefixes {
			clients = append(clients, p.Addr(), scopeTestLast(p))
		}
		for range 20000 {
			var b [16]byte
			for k := range b {
				b[k] = byte(rnd.IntN(256))
			}
			if family == 4 {
				clients = append(clients, netip.AddrFrom4([4]byte(b[:4])))
			} else {
				clients = append(clients, netip.AddrFrom16(b))
			}
		}
		for _, a := range clients {
			want, wantOK := -1, false
			for i, p := range prefixes {
				if p.Contains(a) {
					want, wantOK = i, true
				}
			}
			bits, class, ok := v.lookup(a)
			if ok != wantOK || ok && (int(class) != want || bits != prefixes[want].Bits()) {
				t.Fatalf("%s: lookup = /%d class %d %v; want %v in %v", a, bits, class, ok, wantOK, prefixes[max(want, 0)])
			}
		}
	}
}
