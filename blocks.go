package georoute

import "net/netip"

// cutAt narrows a SCOPE of bits around addr (in addr's family) so that the
// block it claims does not straddle the network p: a p holding addr makes
// the block at least as long as p; a p inside the block that does not hold
// addr cuts the block just above it. Applying it for every boundary in any
// order gives the widest block that straddles none (bits only grows).
func cutAt(addr netip.Addr, bits int, p netip.Prefix) int {
	if p.Addr().Is4() != addr.Is4() || p.Bits() <= bits {
		return bits
	}
	if p.Contains(addr) {
		return p.Bits()
	}
	if netip.PrefixFrom(addr, bits).Masked().Contains(p.Addr()) {
		return max(bits, commonBits(addr, p.Addr())+1)
	}
	return bits
}

// commonBits is the number of leading bits two addresses of one family
// share.
func commonBits(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range x {
		d := x[i] ^ y[i]
		if d == 0 {
			n += 8
			continue
		}
		for d&0x80 == 0 {
			n++
			d <<= 1
		}
		break
	}
	if a.Is4() {
		n -= 96
	}
	return n
}
