package georoute

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// A view finds the block that holds an address, indexed by /16 or not:
// blocks that start in an earlier /16 (a /8) and gaps included, checked
// against a search of every block.
func TestScopeViewLookupMatchesFullSearch(t *testing.T) {
	for _, family := range []int{4, 6} {
		for _, indexed := range []bool{false, true} {
			var prefixes []netip.Prefix
			if family == 4 {
				for _, s := range []string{"1.0.0.0/24", "10.0.0.0/8", "11.2.3.0/24", "11.2.4.128/25", "11.3.0.0/16", "128.0.0.0/2", "255.255.255.255/32"} {
					prefixes = append(prefixes, netip.MustParsePrefix(s))
				}
			} else {
				for _, s := range []string{"2001:db8::/32", "2400::/12", "2a00:1450:4001::/48", "fe80::/10"} {
					prefixes = append(prefixes, netip.MustParsePrefix(s))
				}
			}
			if indexed {
				// Enough /24s (IPv4) or /48s (IPv6) for the view to be
				// indexed, in a part of the space the others leave free.
				for k := range scopeIndexFrom {
					if family == 4 {
						prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{200, byte(k >> 8), byte(k), 0}), 24))
					} else {
						prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x2c, 0x00, 4: byte(k >> 8), 5: byte(k)}), 48))
					}
				}
			}
			slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
			var blocks []scopeBlock
			for i, p := range prefixes {
				blocks = append(blocks, scopeBlock{start: u128Of(p.Addr()), bits: uint8(p.Bits()), class: uint32(i)})
			}
			v := newScopeView(family, blocks, nil)
			if (v.first != nil) != indexed {
				t.Fatalf("IPv%d view of %d blocks indexed: %v", family, len(blocks), v.first != nil)
			}
			rnd := rand.New(rand.NewPCG(uint64(family), 3))
			var clients []netip.Addr
			for _, p := range prefixes {
				clients = append(clients, p.Addr(), scopeTestLast(p))
			}
			for range 5000 {
				var b [16]byte
				for k := range b {
					b[k] = byte(rnd.IntN(256))
				}
				if family == 4 {
					clients = append(clients, netip.AddrFrom4([4]byte(b[:4])), netip.AddrFrom4([4]byte{200, b[1] & 0x1f, b[2], b[3]}))
				} else {
					b2 := b
					b2[0], b2[1], b2[2], b2[3], b2[4] = 0x2c, 0, 0, 0, b[4]&0x1f
					clients = append(clients, netip.AddrFrom16(b), netip.AddrFrom16(b2))
				}
			}
			for _, a := range clients {
				want := slices.IndexFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
				bits, class, ok := v.lookup(a)
				if ok != (want >= 0) || ok && (int(class) != want || bits != prefixes[want].Bits()) {
					t.Fatalf("IPv%d, indexed %v: %s: lookup = /%d class %d %v; want block %d", family, indexed, a, bits, class, ok, want)
				}
			}
		}
	}
}
