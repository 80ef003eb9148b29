package georoute

import (
	"errors"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// clientSubnet is the EDNS Client Subnet option of a query (RFC 7871 §6).
type clientSubnet struct {
	present bool
	family  uint16
	source  uint8
	// address is the option's ADDRESS in its own family: IPv4 for FAMILY 1,
	// IPv6 for FAMILY 2 (an IPv4-mapped one stays mapped, see mapped).
	address netip.Addr
	// mapped is set for a FAMILY 2 option that carries an IPv4-mapped
	// address: it is looked up as IPv4 and its SCOPE is the IPv4 prefix + 96.
	mapped bool
}

var errMalformedECS = errors.New("malformed EDNS Client Subnet option")

// parseClientSubnet finds and validates the ECS option of r. It returns
// errMalformedECS for everything RFC 7871 §7.1 and RFC 6891 §6.1.1 answer
// with FORMERR and that miekg/dns lets through while unpacking: more than
// one OPT RR, more than one ECS option, a FAMILY other than 1 or 2, SCOPE
// not 0, address bits set beyond SOURCE, and an ADDRESS that is not exactly
// SOURCE bits rounded up to whole octets (§6: "MUST NOT contain" more, and
// truncation is exactly to that length).
func parseClientSubnet(r *dns.Msg) (clientSubnet, error) {
	var cs clientSubnet
	_, err := subnetInto(&cs, r, true)
	return cs, err
}

// subnetInto is parseClientSubnet into out, which must be the zero value
// and is left so unless the option is present and valid; it also returns
// the option, so that the echo can share its ADDRESS. Without wireLength it
// trusts the ADDRESS length, for server blocks where a plugin above
// georoute (rewrite edns0) may have edited the OPT RR after it was
// received, leaving its RDLENGTH stale.
func subnetInto(out *clientSubnet, r *dns.Msg, wireLength bool) (*dns.EDNS0_SUBNET, error) {
	var opt *dns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				return nil, errMalformedECS
			}
			opt = o
		}
	}
	if opt == nil {
		return nil, nil
	}
	var ecs *dns.EDNS0_SUBNET
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			if ecs != nil {
				return nil, errMalformedECS
			}
			ecs = e
		}
	}
	if ecs == nil {
		return nil, nil
	}
	if ecs.SourceScope != 0 || (wireLength && !wireLengthCanonical(opt, ecs)) {
		return nil, errMalformedECS
	}

	cs := clientSubnet{present: true, family: ecs.Family, source: ecs.SourceNetmask}
	addr, ok := netip.AddrFromSlice(ecs.Address)
	if !ok {
		return nil, errMalformedECS
	}
	switch ecs.Family {
	case 1:
		// miekg/dns stores IPv4 as 16 bytes; the option itself is IPv4.
		addr = addr.Unmap()
		if !addr.Is4() || cs.source > 32 {
			return nil, errMalformedECS
		}
	case 2:
		if !addr.Is6() || cs.source > 128 {
			return nil, errMalformedECS
		}
		cs.mapped = addr.Is4In6()
	default:
		return nil, errMalformedECS
	}
	masked, err := addr.Prefix(int(cs.source))
	if err != nil || masked.Addr() != addr {
		return nil, errMalformedECS
	}
	cs.address = addr
	*out = cs
	return ecs, nil
}

// wireLengthCanonical reports whether the OPT RR's RDLENGTH as received
// equals what its options take when packed correctly. miekg/dns zero-fills a
// short ECS ADDRESS and drops the excess of a long one, so the received
// length is the only trace of either. A message built in memory (never
// unpacked) has RDLENGTH 0 and nothing to compare.
func wireLengthCanonical(opt *dns.OPT, ecs *dns.EDNS0_SUBNET) bool {
	if opt.Hdr.Rdlength == 0 {
		return true
	}
	want := 4 + (int(ecs.SourceNetmask)+7)/8
	if len(opt.Option) == 1 {
		return int(opt.Hdr.Rdlength) == 4+want
	}
	// dns.Len packs every option; the root owner and fixed header take 11.
	diff := int(opt.Hdr.Rdlength) - (dns.Len(opt) - 11)
	return diff >= 0 && diff < 64 && explainedLengths(opt)&(1<<diff) != 0
}

// explainedLengths is the set (bit k: k octets) of differences between the
// received and the packed length that other options account for: an
// UPDATE-LEASE with KEY-LEASE 0 may arrive as 8 octets and packs as 4, a
// TCP-KEEPALIVE with TIMEOUT 0 may arrive as 2 and packs as 0. Such a
// difference is not the ECS option's, so it is not held against it.
func explainedLengths(opt *dns.OPT) uint64 {
	reach := uint64(1)
	for _, o := range opt.Option {
		switch o := o.(type) {
		case *dns.EDNS0_UL:
			if o.KeyLease == 0 {
				reach |= reach << 4
			}
		case *dns.EDNS0_TCP_KEEPALIVE:
			if o.Timeout == 0 {
				reach |= reach << 2
			}
		}
	}
	return reach
}

// client is who a query is answered for: where it is located from and
// what became of its ECS option. ServeDNS reads it from the query before
// the next plugin runs (the server's scrub writer edits the request's OPT
// when the reply is written).
type client struct {
	qname  string
	remote netip.Addr
	// subnet is the query's ECS option when georoute honours it (present);
	// ignored is set when an option was there but not honoured (ecs off, an
	// untrusted resolver).
	subnet  clientSubnet
	ignored bool
	// lookup is the address the client is located by: the ECS address when
	// byECS, else the source address.
	lookup netip.Addr
	byECS  bool
	// unusedScope is the SCOPE of tailored answers when the ECS option was
	// honoured but its address does not locate the client.
	unusedScope int
	// echoAddress is the option's ADDRESS for the echo (see echoAddress).
	echoAddress net.IP
}

// readClientInto reads the client of query r from remote into c, which
// must be the zero client (the query's pooled state). A malformed ECS
// option is an error (FORMERR) only when georoute honours ECS from remote;
// otherwise it is ignored like any unknown option. Without wireLength the
// ADDRESS length is trusted (see subnetInto).
func readClientInto(c *client, r *dns.Msg, remote netip.Addr, policy ecsPolicy, wireLength bool) error {
	c.qname, c.remote, c.lookup = r.Question[0].Name, remote, remote
	if !policy.honours(remote) {
		c.ignored = hasClientSubnet(r)
		return nil
	}
	opt, err := subnetInto(&c.subnet, r, wireLength)
	if err != nil || !c.subnet.present {
		return err
	}
	c.echoAddress = echoAddress(opt)
	if usable, scope := c.subnet.usable(); usable {
		c.lookup, c.byECS = c.subnet.address.Unmap(), true
	} else {
		c.unusedScope = scope
	}
	return nil
}

// usable reports whether the ECS address itself locates the client. When it
// does not (RFC 7871 §7.1.2, design §5), georoute locates by the source
// address and scope is the SCOPE that tailored answers carry: 0 for SOURCE 0,
// the prefix of the special-purpose block for a private or unroutable
// ADDRESS, since every client in that block is answered alike.
func (cs clientSubnet) usable() (usable bool, scope int) {
	if cs.source == 0 {
		return false, 0
	}
	lookup := cs.address.Unmap()
	if p, special := specialPurpose(lookup); special {
		return false, cs.scopeFor(p)
	}
	return true, 0
}

// scopeFor turns a prefix length in the looked-up address's family into the
// option's own family: +96 for an IPv4-mapped FAMILY 2 address, clamped to
// the family's width.
func (cs clientSubnet) scopeFor(bits int) int {
	if cs.mapped {
		// Even an IPv4 /0 stops at the edge of ::ffff:0:0/96: native IPv6
		// clients outside it may be answered otherwise.
		bits += 96
	}
	if max := cs.maxBits(); bits > max {
		bits = max
	}
	return bits
}

func (cs clientSubnet) maxBits() int {
	if cs.family == 1 {
		return 32
	}
	return 128
}

// echo returns the ECS option for the reply: FAMILY, SOURCE and ADDRESS as
// received, and SCOPE (RFC 7871 §7.2.1).
func (cs clientSubnet) echo(scope int) *dns.EDNS0_SUBNET {
	e := new(dns.EDNS0_SUBNET)
	addr, _ := cs.address.AppendBinary(make([]byte, 0, 16))
	cs.echoInto(e, addr, scope)
	return e
}

// echoInto fills e as echo does with ADDRESS address (4 octets for FAMILY
// 1, 16 for FAMILY 2), so that a caller with storage of its own allocates
// nothing.
func (cs clientSubnet) echoInto(e *dns.EDNS0_SUBNET, address net.IP, scope int) {
	*e = dns.EDNS0_SUBNET{
		Code:          dns.EDNS0SUBNET,
		Family:        cs.family,
		SourceNetmask: cs.source,
		SourceScope:   uint8(scope),
		Address:       address,
	}
}

// echoAddress is the ADDRESS of a valid ECS option (see subnetInto)
// as the echo carries it, sharing the query's bytes: the query outlives its
// reply, and nothing writes to them.
func echoAddress(ecs *dns.EDNS0_SUBNET) net.IP {
	if ecs == nil {
		return nil
	}
	if ecs.Family == 1 {
		return ecs.Address.To4()
	}
	return ecs.Address
}

// specialPurposeBlocks are the private and unroutable networks whose ECS
// addresses say nothing about where a client is (design §5). Documentation
// ranges are deliberately absent.
var specialPurposeBlocks = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// longestSpecialPurpose is the longest prefix of a special-purpose block
// of addr's family: a block at least that long cannot straddle one, so
// cutting it at them changes nothing.
func longestSpecialPurpose(addr netip.Addr) int {
	if addr.Is4() {
		return longestSpecial[0]
	}
	return longestSpecial[1]
}

// longestSpecial is longestSpecialPurpose for IPv4 and IPv6.
var longestSpecial = func() (l [2]int) {
	for _, p := range specialPurposeBlocks {
		f := 1
		if p.Addr().Is4() {
			f = 0
		}
		l[f] = max(l[f], p.Bits())
	}
	return l
}()

// specialPurpose returns the prefix length of the special-purpose block that
// holds addr, if any.
func specialPurpose(addr netip.Addr) (int, bool) {
	// Most addresses are in none: tell by the first octet.
	if addr.Is4() {
		switch addr.As4()[0] {
		case 0, 10, 100, 127, 169, 172, 192:
		default:
			return 0, false
		}
	} else if b := addr.As16()[0]; b != 0 && b&0xfe != 0xfc && b != 0xfe {
		return 0, false
	}
	for _, p := range specialPurposeBlocks {
		if p.Contains(addr) {
			return p.Bits(), true
		}
	}
	return 0, false
}

// formErr is the reply to a query with a malformed ECS option: FORMERR with
// an OPT RR, so that the resolver can tell the server speaks EDNS (RFC 7871
// §7.1.1).
func formErr(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeFormatError)
	size := uint16(dns.DefaultMsgSize)
	if o := r.IsEdns0(); o != nil && o.UDPSize() >= dns.MinMsgSize {
		size = o.UDPSize()
	}
	m.SetEdns0(size, false)
	return m
}

// ecsPolicy is the `ecs` property: whose ECS options georoute honours.
type ecsPolicy struct {
	off bool
	// trusted, when not empty, limits ECS to resolvers inside these networks.
	trusted []netip.Prefix
}

// honours reports whether the ECS option of a query from remote is used,
// validated and echoed. Everybody else is answered as by a server without
// ECS support.
func (p ecsPolicy) honours(remote netip.Addr) bool {
	if p.off {
		return false
	}
	if len(p.trusted) == 0 {
		return true
	}
	for _, n := range p.trusted {
		if n.Contains(remote) {
			return true
		}
	}
	return false
}

// hasClientSubnet reports whether r carries an ECS option at all.
func hasClientSubnet(r *dns.Msg) bool {
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			for _, e := range o.Option {
				if e.Option() == dns.EDNS0SUBNET {
					return true
				}
			}
		}
	}
	return false
}
