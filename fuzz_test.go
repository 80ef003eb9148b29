package georoute

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"slices"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/miekg/dns"
)

// fuzzTestOption is one EDNS option as it was on the wire.
type fuzzTestOption struct {
	code uint16
	data []byte
}

// fuzzTestWalk reads a raw message on its own, without miekg/dns, and
// returns the options of every OPT RR in the additional section exactly as
// received. ok is false when the message is not plainly well formed (header
// counts that overrun the message, label types miekg/dns refuses …): the
// oracle then abstains rather than guess how miekg/dns repaired it.
func fuzzTestWalk(msg []byte) (opts [][]fuzzTestOption, ok bool) {
	if len(msg) < 12 {
		return nil, false
	}
	u16 := func(off int) int { return int(binary.BigEndian.Uint16(msg[off:])) }
	skipName := func(off int) (int, bool) {
		for off < len(msg) {
			c := msg[off]
			switch c & 0xC0 {
			case 0x00:
				if c == 0 {
					return off + 1, true
				}
				off += 1 + int(c)
			case 0xC0:
				return off + 2, off+2 <= len(msg)
			default:
				return 0, false
			}
		}
		return 0, false
	}
	off := 12
	for range u16(4) {
		if off, ok = skipName(off); !ok || off+4 > len(msg) {
			return nil, false
		}
		off += 4
	}
	for section, count := range []int{u16(6), u16(8), u16(10)} {
		for range count {
			if off, ok = skipName(off); !ok || off+10 > len(msg) {
				return nil, false
			}
			rrtype, rdlength := u16(off), u16(off+8)
			off += 10
			if off+rdlength > len(msg) {
				return nil, false
			}
			if section == 2 && rrtype == int(dns.TypeOPT) {
				var options []fuzzTestOption
				rdata := msg[off : off+rdlength]
				for len(rdata) > 0 {
					if len(rdata) < 4 || 4+int(binary.BigEndian.Uint16(rdata[2:])) > len(rdata) {
						return nil, false
					}
					n := 4 + int(binary.BigEndian.Uint16(rdata[2:]))
					options = append(options, fuzzTestOption{binary.BigEndian.Uint16(rdata), rdata[4:n]})
					rdata = rdata[n:]
				}
				opts = append(opts, options)
			}
			off += rdlength
		}
	}
	return opts, true
}

// fuzzTestECSValid is RFC 7871 §6 and design §5 for the data of one ECS
// option, read from the wire bytes alone.
func fuzzTestECSValid(d []byte) bool {
	malformed, _ := fuzzTestECSDefects(d)
	return !malformed
}

// fuzzTestECSDefects reports whether an ECS option's data is malformed and
// whether its only defect is the length of ADDRESS.
func fuzzTestECSDefects(d []byte) (malformed, lengthOnly bool) {
	if len(d) < 4 {
		return true, false
	}
	family, source, scope, addr := binary.BigEndian.Uint16(d), int(d[2]), d[3], d[4:]
	max := 0
	switch family {
	case 1:
		max = 32
	case 2:
		max = 128
	default:
		return true, false
	}
	if scope != 0 || source > max {
		return true, false
	}
	if n := (source + 7) / 8; len(addr) >= n && n > 0 && source%8 != 0 && addr[n-1]&(0xFF>>(source%8)) != 0 {
		return true, false
	}
	if len(addr) != (source+7)/8 {
		return true, true
	}
	return false, false
}

// fuzzTestVerdict is what the wire oracle says about a query's ECS.
type fuzzTestVerdict struct {
	known     bool // the oracle could read the message
	malformed bool // design §5: FORMERR
	ecs       []byte
	// lengthOnly: the ECS option's only defect is the length of ADDRESS.
	lengthOnly bool
	// ambiguous counts the other options that miekg/dns packs shorter than
	// they may arrive (UPDATE-LEASE with KEY-LEASE 0, TCP-KEEPALIVE with
	// TIMEOUT 0): the OPT's length then cannot tell whether ADDRESS had the
	// right length, and georoute gives the query the benefit of the doubt.
	ambiguous int
	// lossy is set when another option does not pack back to the length it
	// had on the wire for any other reason (an EXPIRE longer than 4 octets
	// …): that option is itself malformed, and a FORMERR is no surprise.
	lossy bool
}

// checkMalformed reports whether the oracle is sure the query must be
// FORMERR. An ADDRESS of the wrong length next to an option whose length
// miekg/dns does not keep cannot be told from the parsed message (the two
// may cancel out), so the oracle abstains there.
func (v fuzzTestVerdict) checkMalformed() bool {
	return v.known && v.malformed && !(v.lengthOnly && (v.ambiguous > 0 || v.lossy))
}

// checkValid reports whether the oracle is sure the query must be answered.
// A pile of ambiguous options (a repeated option is odd in itself) is left
// alone.
func (v fuzzTestVerdict) checkValid() bool {
	return v.known && !v.malformed && !v.lossy && v.ambiguous <= 8
}

func fuzzTestJudge(wire []byte, m *dns.Msg) fuzzTestVerdict {
	opts, ok := fuzzTestWalk(wire)
	if !ok {
		return fuzzTestVerdict{}
	}
	v := fuzzTestVerdict{known: true}
	if len(opts) > 1 {
		v.malformed = true
		return v
	}
	if len(opts) == 0 {
		return v
	}
	var parsed []dns.EDNS0
	if o := m.IsEdns0(); o != nil {
		parsed = o.Option
	}
	if len(parsed) != len(opts[0]) {
		return fuzzTestVerdict{}
	}
	n := 0
	for i, o := range opts[0] {
		if o.code == dns.EDNS0SUBNET {
			n++
			v.ecs = o.data
			continue
		}
		switch p := parsed[i].(type) {
		case *dns.EDNS0_UL:
			if p.KeyLease == 0 {
				v.ambiguous++
				continue
			}
		case *dns.EDNS0_TCP_KEEPALIVE:
			if p.Timeout == 0 {
				v.ambiguous++
				continue
			}
		}
		packed := dns.Len(&dns.OPT{Hdr: dns.RR_Header{Name: "."}, Option: []dns.EDNS0{parsed[i]}}) - 11 - 4
		v.lossy = v.lossy || packed != len(o.data)
	}
	switch {
	case n > 1:
		v.malformed = true
	case n == 1:
		v.malformed, v.lengthOnly = fuzzTestECSDefects(v.ecs)
	}
	return v
}

// fuzzTestCheckSubnet checks a parsed ECS option against its wire bytes.
func fuzzTestCheckSubnet(t *testing.T, cs clientSubnet, data []byte) {
	t.Helper()
	family, source := binary.BigEndian.Uint16(data), data[2]
	want := make([]byte, 4)
	if family == 2 {
		want = make([]byte, 16)
	}
	copy(want, data[4:])
	if !cs.present || cs.family != family || cs.source != source || !bytes.Equal(cs.address.AsSlice(), want) {
		t.Fatalf("parsed %+v from ECS bytes %x", cs, data)
	}
	if cs.mapped != (family == 2 && cs.address.Is4In6()) {
		t.Fatalf("mapped %v for %s", cs.mapped, cs.address)
	}
}

// fuzzTestRoundTrip packs the echo of cs into a message, unpacks it and
// parses it again: FAMILY, SOURCE and ADDRESS must survive.
func fuzzTestRoundTrip(t *testing.T, cs clientSubnet) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.example.org.", dns.TypeA)
	m.Extra = withECS(nil, cs.echo(0))
	wire, err := m.Pack()
	if err != nil {
		t.Fatalf("echo of %+v does not pack: %v", cs, err)
	}
	back := new(dns.Msg)
	if err := back.Unpack(wire); err != nil {
		t.Fatalf("echo of %+v does not unpack: %v", cs, err)
	}
	again, err := parseClientSubnet(back)
	if err != nil || again != cs {
		t.Fatalf("round trip of %+v gave %+v, %v", cs, again, err)
	}
}

// fuzzTestSeeds are the ECS cases of design §5 as option data and as whole
// queries; each fuzz target reads its input both ways.
func fuzzTestSeeds(tb testing.TB) [][]byte {
	options := [][]byte{
		{}, {0}, {0, 1}, {0, 1, 24}, // option length 0–3
		{0, 1, 24, 0, 198, 18, 2}, // valid FAMILY 1
		{0, 1, 32, 0, 198, 18, 2, 77},
		{0, 1, 0, 0},                                // SOURCE 0
		{0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 1, 0}, // valid FAMILY 2
		{0, 2, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 2}, // IPv4-mapped
		{0, 2, 0, 0},
		{0, 0, 0, 0},                 // FAMILY 0
		{0, 0, 8, 0, 10},             // FAMILY 0 with SOURCE
		{0, 3, 24, 0, 198, 18, 2},    // FAMILY 3
		{0, 1, 33, 0, 1, 2, 3, 4, 5}, // SOURCE 33
		{0, 2, 129, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, // SOURCE 129
		{0, 1, 24, 24, 198, 18, 2},            // SCOPE != 0
		{0, 1, 24, 33, 198, 18, 2},            // SCOPE beyond 32
		{0, 1, 20, 0, 198, 18, 31},            // bits beyond SOURCE
		{0, 1, 24, 0, 198, 18, 2, 0},          // ADDRESS too long
		{0, 1, 24, 0, 198, 18},                // ADDRESS too short
		{0, 1, 0, 0, 0},                       // ADDRESS with SOURCE 0
		{0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8}, // FAMILY 2 too short
		{0, 1, 24, 0, 10, 1, 2},               // private
	}
	var seeds [][]byte
	for _, o := range options {
		seeds = append(seeds, o, ecsTestWire(ecsTestOption(dns.EDNS0SUBNET, o)))
	}
	cookie := ecsTestOption(dns.EDNS0COOKIE, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	good := ecsTestSubnet(1, 24, 0, 198, 18, 2)
	seeds = append(seeds,
		ecsTestWire(),
		ecsTestWire(nil),
		ecsTestWire(cookie),
		ecsTestWire(ecsTestJoin(cookie, good)),
		ecsTestWire(ecsTestJoin(good, ecsTestOption(dns.EDNS0NSID, nil))),
		ecsTestWire(ecsTestJoin(good, good)),                                     // two ECS options
		ecsTestWire(ecsTestJoin(good, cookie, ecsTestSubnet(1, 24, 0, 1, 2, 3))), // two ECS options apart
		ecsTestWire(good, good),                                                  // two OPT RRs
		ecsTestWire(good, nil),
		ecsTestWire(ecsTestJoin(cookie, ecsTestSubnet(1, 24, 0, 198, 18, 2, 0))), // too long next to a cookie
		ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0UL, []byte{0, 0, 0, 60, 0, 0, 0, 0}), good)),
		ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0TCPKEEPALIVE, []byte{0, 0}), good)),
		ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0UL, []byte{0, 0, 0, 60, 0, 0, 0, 0}), ecsTestOption(dns.EDNS0TCPKEEPALIVE, nil), good)),
		ecsTestWire(ecsTestJoin(ecsTestOption(dns.EDNS0EXPIRE, []byte{0, 0, 0, 1, 2}), good)),
	)
	for _, q := range []struct {
		name  string
		qtype uint16
		ecs   string
	}{
		{"www.example.org.", dns.TypeA, "198.18.1.0/24"},
		{"www.example.org.", dns.TypeAAAA, "2001:db8:300::/48"},
		{"www.example.org.", dns.TypeA, "::ffff:198.18.2.0/120"},
		{"www.example.org.", dns.TypeA, "8.8.8.0/24"},
		{"www.example.org.", dns.TypeA, "10.0.0.0/8"},
		{"www.example.org.", dns.TypeA, "0.0.0.0/0"},
		{"www.example.org.", dns.TypeA, ""},
		{"www.example.org.", dns.TypeMX, "198.18.2.0/24"},
		{"alias.example.org.", dns.TypeA, "198.18.9.0/24"},
		{"mixed.example.org.", dns.TypeA, "198.18.5.0/24"},
		{"anon.example.org.", dns.TypeA, "198.18.2.0/24"},
		{"signed.example.org.", dns.TypeA, "198.18.2.0/24"},
		{"nx.example.org.", dns.TypeA, "198.18.2.0/24"},
		{"static.example.org.", dns.TypeA, "opt"},
	} {
		m := ecsTestQuery(tb, q.name, q.qtype, q.ecs)
		wire, err := m.Pack()
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, wire)
	}
	return seeds
}

// fuzzTestRefusedByMiekg is the list of design §5 of what miekg/dns refuses
// while unpacking an ECS option.
func fuzzTestRefusedByMiekg(d []byte) bool {
	if len(d) < 4 {
		return true
	}
	family, source, scope := binary.BigEndian.Uint16(d), d[2], d[3]
	switch family {
	case 0:
		return source != 0
	case 1:
		return source > 32 || scope > 32
	case 2:
		return source > 128 || scope > 128
	}
	return true
}

func FuzzParseClientSubnet(f *testing.F) {
	for _, s := range fuzzTestSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The input as ECS option data inside a valid query.
		wire := ecsTestWire(ecsTestOption(dns.EDNS0SUBNET, data))
		if len(data) <= 0xFFFF-4 {
			m := new(dns.Msg)
			if err := m.Unpack(wire); err != nil {
				if !fuzzTestRefusedByMiekg(data) {
					t.Fatalf("miekg/dns refused ECS %x, which design §5 does not list: %v", data, err)
				}
			} else {
				if fuzzTestRefusedByMiekg(data) {
					t.Fatalf("miekg/dns accepted ECS %x, which design §5 says it refuses", data)
				}
				cs, err := parseClientSubnet(m)
				if valid := fuzzTestECSValid(data); valid != (err == nil) {
					t.Fatalf("ECS %x: parse error %v, want valid = %v", data, err, valid)
				}
				if err == nil {
					fuzzTestCheckSubnet(t, cs, data)
					fuzzTestRoundTrip(t, cs)
				}
			}
		}

		// The input as a whole message.
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		cs, err := parseClientSubnet(m)
		if err != nil && err != errMalformedECS {
			t.Fatalf("unexpected error %v", err)
		}
		v := fuzzTestJudge(data, m)
		switch {
		case v.checkMalformed() && err == nil:
			t.Fatalf("malformed ECS accepted as %+v", cs)
		case v.checkValid() && err != nil:
			t.Fatalf("valid message refused (ECS %x)", v.ecs)
		case v.checkValid() && v.ecs != nil:
			fuzzTestCheckSubnet(t, cs, v.ecs)
		case v.checkValid() && cs.present:
			t.Fatalf("ECS %+v found in a message without one", cs)
		}
		if err == nil && cs.present {
			fuzzTestRoundTrip(t, cs)
		}
	})
}

func FuzzServeDNS(f *testing.F) {
	for _, s := range fuzzTestSeeds(f) {
		f.Add(s)
	}
	on := georouteTestNew(f, "answers 2")
	off := georouteTestNew(f, "answers 2\necs off")
	z := georouteTestNewZone(f)
	remotes := []string{"127.0.0.2", "10.240.0.1", "::1", "127.0.0.3"}
	downs := [][]string{nil, {"lhr"}, {"nyc", "lhr", "nrt"}, nil}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := new(dns.Msg)
		if r.Unpack(data) != nil {
			return
		}
		// The header's first bytes pick the client, the health and the
		// ecs policy, so that the fuzzer explores those too.
		g := on
		if data[1]&0x10 != 0 {
			g = off
		}
		remote := remotes[int(data[0])%len(remotes)]
		georouteTestSetDown(t, g, downs[int(data[1])%len(downs)]...)
		query := r.Copy()
		z.calls, z.sent, z.sentCopy = 0, nil, nil

		g.Next = z
		rec := dnstest.NewRecorder(georouteTestRemote(remote))
		if _, err := g.ServeDNS(context.Background(), rec, r); err != nil {
			t.Fatalf("ServeDNS: %v", err)
		}
		reply := rec.Msg
		if reply == nil {
			t.Fatal("no reply written")
		}
		z.checkUnmutated(t)
		if d := georouteTestDiffMsg(r, query); d != "" {
			t.Fatalf("the query was mutated: %s", d)
		}
		if _, err := reply.Copy().Pack(); err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, reply)
		}
		if z.calls == 1 {
			for _, rr := range reply.Answer {
				if typ := rr.Header().Rrtype; typ != dns.TypeA && typ != dns.TypeAAAA {
					continue
				}
				if !slices.ContainsFunc(z.sentCopy.Answer, func(s dns.RR) bool { return dns.IsDuplicate(rr, s) }) {
					t.Fatalf("invented address %v", rr)
				}
			}
		}

		opts, ecs := georouteTestECS(reply)
		v := fuzzTestJudge(data, r)
		honoured := g == on && len(r.Question) > 0
		switch {
		case !honoured:
			if len(ecs) != 0 {
				t.Fatalf("ECS %v echoed though the option was not honoured", ecs)
			}
			if reply.Rcode == dns.RcodeFormatError {
				t.Fatal("FORMERR though ECS was not honoured")
			}
		case v.checkMalformed():
			if reply.Rcode != dns.RcodeFormatError || len(opts) != 1 || z.calls != 0 {
				t.Fatalf("malformed ECS: rcode %s with %d OPT RRs, next plugin called %d times; want FORMERR with one OPT",
					dns.RcodeToString[reply.Rcode], len(opts), z.calls)
			}
		case v.checkValid() && v.ecs != nil:
			if reply.Rcode == dns.RcodeFormatError {
				t.Fatalf("valid ECS %x answered FORMERR", v.ecs)
			}
			if len(opts) != 1 || len(ecs) != 1 {
				t.Fatalf("%d OPT RRs and %d ECS options in the reply to a valid ECS query", len(opts), len(ecs))
			}
			e := ecs[0]
			want := make(net.IP, 4)
			if binary.BigEndian.Uint16(v.ecs) == 2 {
				want = make(net.IP, 16)
			}
			copy(want, v.ecs[4:])
			if e.Family != binary.BigEndian.Uint16(v.ecs) || e.SourceNetmask != v.ecs[2] || !bytes.Equal(e.Address, want) {
				t.Fatalf("echo %v of ECS %x", e, v.ecs)
			}
			if max := map[uint16]uint8{1: 32, 2: 128}[e.Family]; e.SourceScope > max {
				t.Fatalf("SCOPE %d beyond %d", e.SourceScope, max)
			}
			if e.SourceNetmask == 0 && e.SourceScope != 0 {
				t.Fatalf("SOURCE 0 answered with SCOPE %d", e.SourceScope)
			}
		case v.known && v.ecs == nil:
			if len(ecs) != 0 {
				t.Fatalf("ECS %v in the reply to a query without one", ecs)
			}
		}
	})
}
