package georoute

import (
	"encoding/binary"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// ecsTestOption encodes one EDNS option: OPTION-CODE, OPTION-LENGTH, data.
func ecsTestOption(code uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// ecsTestSubnet encodes the data of an ECS option exactly as given (RFC 7871
// §6): FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS.
func ecsTestSubnet(family uint16, source, scope uint8, addr ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, family)
	b = append(b, source, scope)
	return ecsTestOption(dns.EDNS0SUBNET, append(b, addr...))
}

// ecsTestWire is a hand-made query for www.example.org/A with one OPT RR
// per argument; each argument is the OPT's RDATA (options back to back).
func ecsTestWire(opts ...[]byte) []byte {
	b := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, byte(len(opts))}
	b = append(b, 3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'o', 'r', 'g', 0)
	b = append(b, 0, byte(dns.TypeA), 0, byte(dns.ClassINET))
	for _, rdata := range opts {
		b = append(b, 0, 0, byte(dns.TypeOPT), 0x10, 0x00, 0, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
		b = append(b, rdata...)
	}
	return b
}

func ecsTestJoin(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// ecsTestQuery builds a query for name/qtype; ecs is "" (no OPT), "opt" (OPT
// without ECS) or a prefix such as 198.18.1.0/24; a prefix written as an
// IPv4-mapped IPv6 address (::ffff:198.18.1.0/120) gives FAMILY 2. It is
// packed and unpacked so that it looks exactly as a server receives it.
func ecsTestQuery(tb testing.TB, name string, qtype uint16, ecs string, more ...dns.EDNS0) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if ecs != "" {
		m.SetEdns0(4096, false)
		opt := m.IsEdns0()
		if ecs != "opt" {
			p := netip.MustParsePrefix(ecs)
			family := uint16(1)
			if p.Addr().Is6() {
				family = 2
			}
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{
				Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(p.Bits()),
				Address: net.IP(p.Addr().AsSlice()),
			})
		}
		opt.Option = append(opt.Option, more...)
	}
	wire, err := m.Pack()
	if err != nil {
		tb.Fatalf("pack %v: %v", m, err)
	}
	return ecsTestUnpack(tb, wire)
}

func ecsTestUnpack(tb testing.TB, wire []byte) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		tb.Fatalf("unpack: %v", err)
	}
	return m
}

func TestParseClientSubnet(t *testing.T) {
	cookie := ecsTestOption(dns.EDNS0COOKIE, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	nsid := ecsTestOption(dns.EDNS0NSID, nil)
	tests := []struct {
		name    string
		wire    []byte
		want    clientSubnet
		wantErr bool
	}{
		// Valid options.
		{"FAMILY 1 /24 is read as IPv4", ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18, 1)),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.1.0")}, false},
		{"FAMILY 1 /32 keeps all four octets", ecsTestWire(ecsTestSubnet(1, 32, 0, 198, 18, 1, 77)),
			clientSubnet{present: true, family: 1, source: 32, address: netip.MustParseAddr("198.18.1.77")}, false},
		{"FAMILY 1 /20 with clear trailing bits is valid", ecsTestWire(ecsTestSubnet(1, 20, 0, 198, 18, 16)),
			clientSubnet{present: true, family: 1, source: 20, address: netip.MustParseAddr("198.18.16.0")}, false},
		{"FAMILY 1 SOURCE 0 carries no address", ecsTestWire(ecsTestSubnet(1, 0, 0)),
			clientSubnet{present: true, family: 1, source: 0, address: netip.MustParseAddr("0.0.0.0")}, false},
		{"FAMILY 2 /48 is read as IPv6", ecsTestWire(ecsTestSubnet(2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00)),
			clientSubnet{present: true, family: 2, source: 48, address: netip.MustParseAddr("2001:db8:100::")}, false},
		{"FAMILY 2 /128", ecsTestWire(ecsTestSubnet(2, 128, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)),
			clientSubnet{present: true, family: 2, source: 128, address: netip.MustParseAddr("2001:db8::1")}, false},
		{"FAMILY 2 SOURCE 0 carries no address", ecsTestWire(ecsTestSubnet(2, 0, 0)),
			clientSubnet{present: true, family: 2, source: 0, address: netip.MustParseAddr("::")}, false},
		{"FAMILY 2 IPv4-mapped address stays mapped and is flagged",
			ecsTestWire(ecsTestSubnet(2, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 2)),
			clientSubnet{present: true, family: 2, source: 120, address: netip.MustParseAddr("::ffff:198.18.2.0"), mapped: true}, false},
		{"ECS after a cookie is found", ecsTestWire(ecsTestJoin(cookie, ecsTestSubnet(1, 24, 0, 198, 18, 2))),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.2.0")}, false},
		{"ECS before NSID is found", ecsTestWire(ecsTestJoin(ecsTestSubnet(1, 24, 0, 198, 18, 2), nsid)),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.2.0")}, false},
		{"ECS between a cookie and NSID is found", ecsTestWire(ecsTestJoin(cookie, ecsTestSubnet(2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00), nsid)),
			clientSubnet{present: true, family: 2, source: 48, address: netip.MustParseAddr("2001:db8:200::")}, false},
		{"no OPT means no ECS", ecsTestWire(), clientSubnet{}, false},
		{"an OPT without ECS means no ECS", ecsTestWire(cookie), clientSubnet{}, false},
		{"an empty OPT means no ECS", ecsTestWire(nil), clientSubnet{}, false},
		// Options that miekg/dns packs shorter than they may arrive: the
		// OPT's RDLENGTH must not be held against the ECS option.
		{"ECS next to an 8-byte UPDATE-LEASE with KEY-LEASE 0 is valid",
			ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0UL, []byte{0, 0, 0, 60, 0, 0, 0, 0}), ecsTestSubnet(1, 24, 0, 198, 18, 2))),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.2.0")}, false},
		{"ECS next to a 2-byte TCP-KEEPALIVE with TIMEOUT 0 is valid",
			ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0TCPKEEPALIVE, []byte{0, 0}), ecsTestSubnet(1, 24, 0, 198, 18, 2))),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.2.0")}, false},
		{"ECS next to an empty TCP-KEEPALIVE is valid",
			ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0TCPKEEPALIVE, nil), ecsTestSubnet(1, 24, 0, 198, 18, 2))),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.2.0")}, false},
		{"ECS next to an 8-byte UPDATE-LEASE and an empty TCP-KEEPALIVE is valid",
			ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0UL, []byte{0, 0, 0, 60, 0, 0, 0, 0}), ecsTestOption(dns.EDNS0TCPKEEPALIVE, nil), ecsTestSubnet(1, 24, 0, 198, 18, 2))),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.2.0")}, false},

		// Malformed options that miekg/dns lets through (design §5).
		{"SCOPE not 0 is malformed", ecsTestWire(ecsTestSubnet(1, 24, 24, 198, 18, 1)), clientSubnet{}, true},
		{"FAMILY 2 SCOPE not 0 is malformed", ecsTestWire(ecsTestSubnet(2, 48, 1, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00)), clientSubnet{}, true},
		{"a bit set beyond SOURCE is malformed", ecsTestWire(ecsTestSubnet(1, 20, 0, 198, 18, 31)), clientSubnet{}, true},
		{"FAMILY 2 bit set beyond SOURCE is malformed", ecsTestWire(ecsTestSubnet(2, 47, 0, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x01)), clientSubnet{}, true},
		{"ADDRESS one octet too long is malformed", ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18, 1, 0)), clientSubnet{}, true},
		{"ADDRESS one octet too short is malformed", ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18)), clientSubnet{}, true},
		{"ADDRESS present with SOURCE 0 is malformed", ecsTestWire(ecsTestSubnet(1, 0, 0, 0)), clientSubnet{}, true},
		{"FAMILY 2 ADDRESS too long is malformed", ecsTestWire(ecsTestSubnet(2, 32, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0)), clientSubnet{}, true},
		{"FAMILY 2 ADDRESS too short is malformed", ecsTestWire(ecsTestSubnet(2, 48, 0, 0x20, 0x01, 0x0d, 0xb8)), clientSubnet{}, true},
		{"FAMILY 2 with a 4-octet ADDRESS for /32 is not IPv4", ecsTestWire(ecsTestSubnet(2, 32, 0, 198, 18, 1, 0)),
			clientSubnet{present: true, family: 2, source: 32, address: netip.MustParseAddr("c612:100::")}, false},
		{"ADDRESS too long next to a cookie is malformed", ecsTestWire(ecsTestJoin(cookie, ecsTestSubnet(1, 24, 0, 198, 18, 1, 0))), clientSubnet{}, true},
		{"ADDRESS too short next to a cookie is malformed", ecsTestWire(ecsTestJoin(ecsTestSubnet(1, 24, 0, 198, 18), cookie)), clientSubnet{}, true},
		{"two ECS options are malformed", ecsTestWire(ecsTestJoin(ecsTestSubnet(1, 24, 0, 198, 18, 1), ecsTestSubnet(1, 24, 0, 198, 18, 2))), clientSubnet{}, true},
		{"two identical ECS options are malformed", ecsTestWire(ecsTestJoin(ecsTestSubnet(1, 24, 0, 198, 18, 1), nsid, ecsTestSubnet(1, 24, 0, 198, 18, 1))), clientSubnet{}, true},
		{"two OPT RRs are malformed", ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18, 1), ecsTestSubnet(1, 24, 0, 198, 18, 2)), clientSubnet{}, true},
		{"two OPT RRs are malformed even when only one has ECS", ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18, 1), cookie), clientSubnet{}, true},
		{"two OPT RRs without ECS are malformed", ecsTestWire(cookie, nil), clientSubnet{}, true},
		{"FAMILY 0 (which miekg/dns lets through with SOURCE 0) is malformed", ecsTestWire(ecsTestSubnet(0, 0, 0)), clientSubnet{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseClientSubnet(ecsTestUnpack(t, tc.wire))
			if tc.wantErr {
				if err != errMalformedECS {
					t.Fatalf("got %+v, %v; want errMalformedECS", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			var cs clientSubnet
			opt, _ := subnetInto(&cs, ecsTestUnpack(t, tc.wire), true)
			if echo, want := echoAddress(opt), tc.want.address.AsSlice(); !slices.Equal(echo, want) {
				t.Fatalf("echo ADDRESS %v, want %v", []byte(echo), want)
			}
		})
	}
}

func TestParseClientSubnetRefusedByMiekg(t *testing.T) {
	// These never reach a plugin: the server answers FORMERR (without OPT)
	// when unpacking fails. The design documents that; this pins it down.
	tests := []struct {
		name   string
		option []byte
	}{
		{"option length 0", ecsTestOption(dns.EDNS0SUBNET, nil)},
		{"option length 1", ecsTestOption(dns.EDNS0SUBNET, []byte{0})},
		{"option length 2", ecsTestOption(dns.EDNS0SUBNET, []byte{0, 1})},
		{"option length 3", ecsTestOption(dns.EDNS0SUBNET, []byte{0, 1, 24})},
		{"FAMILY 3", ecsTestSubnet(3, 24, 0, 198, 18, 1)},
		{"FAMILY 0 with SOURCE 8", ecsTestSubnet(0, 8, 0, 10)},
		{"FAMILY 1 SOURCE 33", ecsTestSubnet(1, 33, 0, 198, 18, 1, 0, 0)},
		{"FAMILY 1 SCOPE 33", ecsTestSubnet(1, 24, 33, 198, 18, 1)},
		{"FAMILY 2 SOURCE 129", ecsTestSubnet(2, 129, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"option longer than the OPT", append(ecsTestOption(dns.EDNS0SUBNET, []byte{0, 1, 24, 0, 198, 18, 1})[:2], 0, 9, 0, 1, 24, 0, 198, 18, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is refused while unpacking", func(t *testing.T) {
			if err := new(dns.Msg).Unpack(ecsTestWire(tc.option)); err == nil {
				t.Fatal("miekg/dns unpacked it; georoute would have to refuse it")
			}
		})
	}
}

func TestParseClientSubnetBuiltInMemory(t *testing.T) {
	// A message that was never on the wire (RDLENGTH 0) is judged by its
	// fields alone.
	msg := func(opts ...dns.EDNS0) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("www.example.org.", dns.TypeA)
		m.SetEdns0(4096, false)
		m.IsEdns0().Option = opts
		return m
	}
	tests := []struct {
		name    string
		msg     *dns.Msg
		want    clientSubnet
		wantErr bool
	}{
		{"FAMILY 1 with a 16-byte net.IP is IPv4",
			msg(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("198.18.1.0")}),
			clientSubnet{present: true, family: 1, source: 24, address: netip.MustParseAddr("198.18.1.0")}, false},
		{"FAMILY 1 with an IPv6 address is malformed",
			msg(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("2001:db8::")}), clientSubnet{}, true},
		{"FAMILY 2 with a 4-byte address is malformed",
			msg(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 24, Address: net.IP{198, 18, 1, 0}}), clientSubnet{}, true},
		{"a nil address is malformed",
			msg(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24}), clientSubnet{}, true},
		{"FAMILY 1 SOURCE 40 is malformed",
			msg(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 40, Address: net.ParseIP("198.18.1.0")}), clientSubnet{}, true},
		{"FAMILY 2 SOURCE 200 is malformed",
			msg(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 200, Address: net.ParseIP("2001:db8::")}), clientSubnet{}, true},
		{"bits beyond SOURCE are malformed",
			msg(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 16, Address: net.ParseIP("198.18.1.0")}), clientSubnet{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseClientSubnet(tc.msg)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestClientSubnetUsable(t *testing.T) {
	v4 := func(s string, source uint8) clientSubnet {
		return clientSubnet{present: true, family: 1, source: source, address: netip.MustParseAddr(s)}
	}
	v6 := func(s string, source uint8) clientSubnet {
		a := netip.MustParseAddr(s)
		return clientSubnet{present: true, family: 2, source: source, address: a, mapped: a.Is4In6()}
	}
	tests := []struct {
		name   string
		cs     clientSubnet
		usable bool
		scope  int
	}{
		{"SOURCE 0 is not usable and scopes 0", v4("0.0.0.0", 0), false, 0},
		{"FAMILY 2 SOURCE 0 is not usable and scopes 0", v6("::", 0), false, 0},
		{"0.0.0.0/8 scopes 8", v4("0.1.2.0", 24), false, 8},
		{"10.0.0.0/8 scopes 8", v4("10.1.2.0", 24), false, 8},
		{"100.64.0.0/10 scopes 10", v4("100.100.0.0", 16), false, 10},
		{"127.0.0.0/8 scopes 8", v4("127.0.0.1", 32), false, 8},
		{"169.254.0.0/16 scopes 16", v4("169.254.7.0", 24), false, 16},
		{"172.16.0.0/12 scopes 12", v4("172.31.255.0", 24), false, 12},
		{"192.168.0.0/16 scopes 16", v4("192.168.1.0", 24), false, 16},
		{"::/128 scopes 128", v6("::", 128), false, 128},
		{"::1/128 scopes 128", v6("::1", 128), false, 128},
		{"fc00::/7 scopes 7", v6("fd12:3456::", 32), false, 7},
		{"fe80::/10 scopes 10", v6("febf::", 16), false, 10},
		{"IPv4-mapped 10.0.0.0/8 scopes 8+96", v6("::ffff:10.1.2.0", 120), false, 104},
		{"IPv4-mapped 192.168.0.0/16 scopes 16+96", v6("::ffff:192.168.1.0", 120), false, 112},
		{"IPv4-mapped 127.0.0.1/32 scopes 8+96", v6("::ffff:127.0.0.1", 128), false, 104},

		{"documentation 192.0.2.0/24 is usable", v4("192.0.2.0", 24), true, 0},
		{"documentation 198.51.100.0/24 is usable", v4("198.51.100.0", 24), true, 0},
		{"documentation 203.0.113.0/24 is usable", v4("203.0.113.0", 24), true, 0},
		{"benchmarking 198.18.0.0/15 is usable", v4("198.18.1.0", 24), true, 0},
		{"documentation 2001:db8::/32 is usable", v6("2001:db8:100::", 48), true, 0},
		{"just below 100.64.0.0/10 is usable", v4("100.63.255.0", 24), true, 0},
		{"just above 100.64.0.0/10 is usable", v4("100.128.0.0", 24), true, 0},
		{"just above 172.16.0.0/12 is usable", v4("172.32.0.0", 24), true, 0},
		{"just below 172.16.0.0/12 is usable", v4("172.15.255.0", 24), true, 0},
		{"169.253.0.0 is usable", v4("169.253.0.0", 24), true, 0},
		{"11.0.0.0 is usable", v4("11.0.0.0", 24), true, 0},
		{"1.0.0.0 (next to 0.0.0.0/8) is usable", v4("1.0.0.0", 24), true, 0},
		{"fec0:: (beyond fe80::/10) is usable", v6("fec0::", 16), true, 0},
		{"fe00:: (before fe80::/10) is usable", v6("fe00::", 16), true, 0},
		{"fb00:: (before fc00::/7) is usable", v6("fbff::", 16), true, 0},
		{"::2 is usable", v6("::2", 128), true, 0},
		{"IPv4-mapped public address is usable", v6("::ffff:198.18.2.0", 120), true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			usable, scope := tc.cs.usable()
			if usable != tc.usable || scope != tc.scope {
				t.Fatalf("usable() = %v, %d; want %v, %d", usable, scope, tc.usable, tc.scope)
			}
		})
	}
	t.Run("every special-purpose block of design §5 is listed, and no other", func(t *testing.T) {
		want := []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
			"172.16.0.0/12", "192.168.0.0/16", "::/128", "::1/128", "fc00::/7", "fe80::/10"}
		var got []string
		for _, p := range specialPurposeBlocks {
			got = append(got, p.String())
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("special-purpose blocks %v, design §5 lists %v", got, want)
		}
	})
}

func TestClientSubnetScopeFor(t *testing.T) {
	v4 := clientSubnet{present: true, family: 1, source: 24}
	v6 := clientSubnet{present: true, family: 2, source: 48}
	mapped := clientSubnet{present: true, family: 2, source: 120, mapped: true}
	tests := []struct {
		name string
		cs   clientSubnet
		bits int
		want int
	}{
		{"IPv4 /24 stays 24", v4, 24, 24},
		{"IPv4 longer than SOURCE is kept", v4, 32, 32},
		{"IPv4 beyond 32 is clamped to 32", v4, 40, 32},
		{"IPv6 /48 stays 48", v6, 48, 48},
		{"IPv6 beyond 128 is clamped to 128", v6, 130, 128},
		{"IPv6 /0 stays 0", v6, 0, 0},
		{"IPv4-mapped /24 becomes 120", mapped, 24, 120},
		{"IPv4-mapped /32 becomes 128", mapped, 32, 128},
		{"IPv4-mapped beyond 32 is clamped to 128", mapped, 40, 128},
		{"IPv4-mapped /0 becomes 96: the IPv4 prefix plus 96", mapped, 0, 96},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cs.scopeFor(tc.bits); got != tc.want {
				t.Fatalf("scopeFor(%d) = %d, want %d", tc.bits, got, tc.want)
			}
		})
	}
}

func TestClientSubnetEcho(t *testing.T) {
	tests := []struct {
		name  string
		query string
		scope int
	}{
		{"FAMILY 1 echoes a 4-octet address", "198.18.1.0/24", 24},
		{"FAMILY 1 SOURCE 0", "0.0.0.0/0", 0},
		{"FAMILY 2", "2001:db8:100::/48", 56},
		{"FAMILY 2 IPv4-mapped stays FAMILY 2 and mapped", "::ffff:198.18.2.0/120", 120},
	}
	for _, tc := range tests {
		t.Run(tc.name+" round-trips FAMILY, SOURCE and ADDRESS", func(t *testing.T) {
			q := ecsTestQuery(t, "www.example.org.", dns.TypeA, tc.query)
			cs, err := parseClientSubnet(q)
			if err != nil {
				t.Fatal(err)
			}
			reply := new(dns.Msg)
			reply.SetReply(q)
			reply.Extra = withECS(nil, cs.echo(tc.scope))
			wire, err := reply.Pack()
			if err != nil {
				t.Fatal(err)
			}
			back := ecsTestUnpack(t, wire)
			sent := q.IsEdns0().Option[0].(*dns.EDNS0_SUBNET)
			got := back.IsEdns0().Option[0].(*dns.EDNS0_SUBNET)
			if got.Family != sent.Family || got.SourceNetmask != sent.SourceNetmask || !got.Address.Equal(sent.Address) || int(got.SourceScope) != tc.scope {
				t.Fatalf("echo %v, query %v, scope %d", got, sent, tc.scope)
			}
			if e := cs.echo(tc.scope); cs.family == 1 && len(e.Address) != 4 {
				t.Errorf("FAMILY 1 echo carries a %d-byte address", len(e.Address))
			}
		})
	}
}

func TestWithECS(t *testing.T) {
	ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 24, Address: net.IP{198, 18, 1, 0}}
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	nsid := &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e7331"}
	oldECS := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IP{198, 18, 9, 0}}
	glue := &dns.A{Hdr: dns.RR_Header{Name: "ns1.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IP{192, 0, 2, 53}}
	opt := func(class uint16, opts ...dns.EDNS0) *dns.OPT {
		return &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: class}, Option: opts}
	}
	tests := []struct {
		name  string
		extra []dns.RR
		want  []dns.RR
	}{
		{"adds an OPT when there is none", nil, []dns.RR{opt(dns.DefaultMsgSize, ecs)}},
		{"adds an OPT after the other additional records", []dns.RR{glue}, []dns.RR{glue, opt(dns.DefaultMsgSize, ecs)}},
		{"adds ECS to an OPT without options", []dns.RR{opt(1232)}, []dns.RR{opt(1232, ecs)}},
		{"keeps other options in order and appends ECS", []dns.RR{glue, opt(1232, cookie, nsid)}, []dns.RR{glue, opt(1232, cookie, nsid, ecs)}},
		{"replaces an existing ECS option", []dns.RR{opt(1232, oldECS)}, []dns.RR{opt(1232, ecs)}},
		{"replaces an existing ECS option and keeps the others", []dns.RR{opt(1232, cookie, oldECS, nsid)}, []dns.RR{opt(1232, cookie, nsid, ecs)}},
		{"replaces every ECS option", []dns.RR{opt(1232, oldECS, cookie, oldECS)}, []dns.RR{opt(1232, cookie, ecs)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// What the next plugin handed over: the records, their headers
			// and, for an OPT, its option slice.
			inputSlice := append([]dns.RR(nil), tc.extra...)
			var headers []dns.RR_Header
			var options [][]dns.EDNS0
			for _, rr := range tc.extra {
				headers = append(headers, *rr.Header())
				if o, ok := rr.(*dns.OPT); ok {
					options = append(options, append([]dns.EDNS0(nil), o.Option...))
				}
			}
			got := withECS(tc.extra, ecs)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("withECS =\n%v\nwant\n%v", got, tc.want)
			}
			k := 0
			for i, rr := range tc.extra {
				if rr != inputSlice[i] || *rr.Header() != headers[i] {
					t.Fatalf("input record %d replaced or its header changed", i)
				}
				if o, ok := rr.(*dns.OPT); ok {
					if !reflect.DeepEqual(o.Option, options[k]) {
						t.Fatalf("input OPT's options changed to %v, were %v", o.Option, options[k])
					}
					k++
				}
			}
			n := 0
			for _, rr := range got {
				if o, ok := rr.(*dns.OPT); ok {
					for _, e := range o.Option {
						if e.Option() == dns.EDNS0SUBNET {
							n++
						}
					}
				}
			}
			if n != 1 {
				t.Fatalf("%d ECS options in the result, want exactly 1", n)
			}
		})
	}
}

func TestFormErr(t *testing.T) {
	tests := []struct {
		name     string
		query    *dns.Msg
		wantSize uint16
	}{
		{"keeps the client's buffer size", ecsTestUnpack(t, ecsTestWire(ecsTestSubnet(1, 24, 24, 198, 18, 1))), 4096},
		{"two OPT RRs still give one OPT", ecsTestUnpack(t, ecsTestWire(ecsTestSubnet(1, 24, 0, 198, 18, 1), nil)), 4096},
	}
	small := ecsTestUnpack(t, ecsTestWire(ecsTestSubnet(1, 24, 24, 198, 18, 1)))
	small.IsEdns0().SetUDPSize(100)
	tests = append(tests, struct {
		name     string
		query    *dns.Msg
		wantSize uint16
	}{"a buffer size below 512 gives the default", small, dns.DefaultMsgSize})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := formErr(tc.query)
			if m.Rcode != dns.RcodeFormatError || !m.Response || m.Id != tc.query.Id {
				t.Fatalf("reply %v is not a FORMERR response to %d", m, tc.query.Id)
			}
			if len(m.Question) != 1 || m.Question[0] != tc.query.Question[0] {
				t.Errorf("question %v, want %v", m.Question, tc.query.Question)
			}
			opts := 0
			for _, rr := range m.Extra {
				if _, ok := rr.(*dns.OPT); ok {
					opts++
				}
			}
			if opts != 1 {
				t.Fatalf("%d OPT RRs, want 1 (RFC 7871 §7.1.1: FORMERR with OPT)", opts)
			}
			if got := m.IsEdns0().UDPSize(); got != tc.wantSize {
				t.Errorf("UDP size %d, want %d", got, tc.wantSize)
			}
			if _, err := m.Pack(); err != nil {
				t.Fatalf("FORMERR does not pack: %v", err)
			}
		})
	}
}

func TestECSPolicyHonours(t *testing.T) {
	trust := ecsPolicy{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}}
	tests := []struct {
		name   string
		policy ecsPolicy
		remote string
		want   bool
	}{
		{"ecs on honours everybody", ecsPolicy{}, "10.240.0.1", true},
		{"ecs off honours nobody", ecsPolicy{off: true}, "127.0.0.1", false},
		{"ecs trust honours a resolver inside an IPv4 network", trust, "127.0.0.3", true},
		{"ecs trust honours a resolver inside an IPv6 network", trust, "2001:db8::53", true},
		{"ecs trust ignores a resolver outside", trust, "10.240.0.1", false},
		{"ecs trust ignores an IPv6 resolver outside", trust, "::1", false},
		{"ecs trust ignores an unknown source address", trust, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var remote netip.Addr
			if tc.remote != "" {
				remote = netip.MustParseAddr(tc.remote)
			}
			if got := tc.policy.honours(remote); got != tc.want {
				t.Fatalf("honours(%v) = %v, want %v", remote, got, tc.want)
			}
		})
	}
}

// readClient is readClientInto on a client of its own.
func readClient(r *dns.Msg, remote netip.Addr, policy ecsPolicy, wireLength bool) (client, error) {
	var c client
	err := readClientInto(&c, r, remote, policy, wireLength)
	return c, err
}
