package test

import (
	"slices"
	"testing"
)

// The same question gets the same answer over UDP and TCP: routing, SCOPE
// and every section, for routed, unrouted and unlocated clients.
func TestUDPAndTCPAgree(t *testing.T) {
	t.Parallel()
	s := startServer(t, demoPopsCorefile, nil)
	for _, q := range [][]string{
		{"www.example.org", "+subnet=198.18.2.0/24"},
		{"www.example.org", "AAAA", "+subnet=2001:db8:300::/48"},
		{"www.example.org", "+subnet=198.18.7.0/24"},
		{"www.example.org", "+subnet=10.1.2.0/24", "-b", "127.0.0.3"},
		{"www.example.org", "-b", "127.0.0.4"},
		{"alias.example.org", "+subnet=198.18.3.0/24"},
		{"www.example.org", "MX", "+subnet=198.18.1.0/24"},
		{"nothere.example.org", "+subnet=198.18.1.0/24"},
		{"static.example.org", "+subnet=198.18.1.0/24"},
	} {
		udp := s.query(q...)
		if udp.status == "" {
			t.Fatalf("%v: no reply over UDP\n%s", q, udp.raw)
		}
		tcp := s.query(append(slices.Clone(q), "+tcp")...)
		if udp.status != tcp.status || udp.flags != tcp.flags || udp.ecs != tcp.ecs || !slices.Equal(udp.answer, tcp.answer) {
			t.Errorf("%v: UDP and TCP differ\nUDP %s [%s] %s %v\nTCP %s [%s] %s %v", q, udp.status, udp.flags, udp.ecs, udp.answer, tcp.status, tcp.flags, tcp.ecs, tcp.answer)
		}
	}
}
