package test

import (
	"slices"
	"strings"
	"testing"
)

// mappedLondon is a FAMILY 2 ECS option for ::ffff:198.18.2.0/120 as
// dig +ednsopt wants it: FAMILY 2, SOURCE 120, SCOPE 0, 15 address octets.
const mappedLondon = "+ednsopt=8:0002" + "78" + "00" + "00000000000000000000ffff" + "c61202"

func TestECSScope(t *testing.T) {
	t.Parallel()
	s := startServer(t, demoCorefile(), nil)
	tests := []struct {
		name string
		args []string
		ecs  string // dig's CLIENT-SUBNET: ADDRESS/SOURCE/SCOPE
		want []string
	}{
		// Rewritten answers: the prefix of the database network.
		{"rewritten answer has the database's /24 as scope", []string{"www.example.org", london}, "198.18.2.0/24/24", []string{lhr4}},
		{"source longer than the database network gets scope 24", []string{"www.example.org", "+subnet=198.18.2.77/32"}, "198.18.2.77/32/24", []string{lhr4}},
		{"scope may be longer than source (/25 network)", []string{"www.example.org", "+subnet=198.18.8.0/24"}, "198.18.8.0/24/25", []string{nyc4}},
		{"IPv6 client gets the database's /48 as scope", []string{"www.example.org", "AAAA", london6}, "2001:db8:200::/48/48", []string{lhr6}},
		{"IPv6 client asking for A gets scope 48", []string{"www.example.org", newYork6}, "2001:db8:100::/48/48", []string{nyc4}},
		{"CNAME to a routed name is tailored too", []string{"alias.example.org", tokyo}, "198.18.3.0/24/24", []string{nrt4}},
		{"IPv4-mapped FAMILY 2 client in London gets London and scope 120", []string{"www.example.org", mappedLondon}, "::ffff:198.18.2.0/120/120", []string{lhr4}},
		{"IPv4-mapped FAMILY 2 client not in the database gets the no-match block + 96", []string{"www.example.org", "+ednsopt=8:0002780000000000000000000000ffffc6120a"}, "::ffff:198.18.10.0/120/119", []string{nyc4, lhr4, nrt4}},

		// ECS that cannot locate: the source address does.
		{"SOURCE 0 gets scope 0 and is located by the source address", []string{"www.example.org", "-b", "127.0.0.2", "+subnet=0.0.0.0/0"}, "0.0.0.0/0/0", []string{lhr4}},
		{"private 10.1.2.0/24 gets scope 8 and is located by the source address", []string{"www.example.org", "-b", "127.0.0.3", "+subnet=10.1.2.0/24"}, "10.1.2.0/24/8", []string{nrt4}},
		{"private 192.168.1.0/24 gets scope 16", []string{"www.example.org", "-b", "127.0.0.4", "+subnet=192.168.1.0/24"}, "192.168.1.0/24/16", []string{nyc4}},
		{"private 172.16.5.0/24 gets scope 12", []string{"www.example.org", "-b", "127.0.0.2", "+subnet=172.16.5.0/24"}, "172.16.5.0/24/12", []string{lhr4}},
		{"shared 100.64.1.0/24 gets scope 10", []string{"www.example.org", "-b", "127.0.0.2", "+subnet=100.64.1.0/24"}, "100.64.1.0/24/10", []string{lhr4}},
		{"unique-local fd00::/64 gets scope 7", []string{"www.example.org", "AAAA", "-b", "127.0.0.3", "+subnet=fd00::/64"}, "fd00::/64/7", []string{nrt6}},
		{"loopback ECS 127.0.0.2/32 is not used: scope 8, located by the source", []string{"www.example.org", "-b", "127.0.0.3", "+subnet=127.0.0.2/32"}, "127.0.0.2/32/8", []string{nrt4}},

		// Not located: the prefix of the record's network or the no-match block.
		{"network without coordinates gets its /24", []string{"www.example.org", noCoords}, "198.18.7.0/24/24", []string{nyc4, lhr4, nrt4}},
		{"network not in the database gets the no-match block /23", []string{"www.example.org", notInDB}, "198.18.10.0/24/23", []string{nyc4, lhr4, nrt4}},
		{"IPv6 network not in the database gets the no-match block /37", []string{"www.example.org", "+subnet=2001:db8:999::/48"}, "2001:db8:999::/48/37", []string{nyc4, lhr4, nrt4}},

		// Not tailored: scope 0, ECS still echoed.
		{"MX of a routed name gets scope 0", []string{"www.example.org", "MX", london}, "198.18.2.0/24/0", nil},
		{"TXT of a routed name gets scope 0", []string{"www.example.org", "TXT", london}, "198.18.2.0/24/0", nil},
		{"SOA gets scope 0", []string{"example.org", "SOA", london}, "198.18.2.0/24/0", nil},
		{"NXDOMAIN gets scope 0", []string{"nope.example.org", london}, "198.18.2.0/24/0", nil},
		{"NODATA gets scope 0", []string{"mixed.example.org", "AAAA", london}, "198.18.2.0/24/0", nil},
		{"unrouted name gets scope 0 and all its addresses", []string{"static.example.org", london}, "198.18.2.0/24/0", []string{nyc4, lhr4, nrt4}},
		{"unrouted name with IPv6 ECS gets scope 0", []string{"ns1.example.org", london6}, "2001:db8:200::/48/0", []string{"192.0.2.53"}},
	}
	noECS := [][]string{
		{"www.example.org"},
		{"www.example.org", "-b", "127.0.0.2"},
		{"www.example.org", "MX"},
		{"nope.example.org"},
		{"www.example.org", "+noedns"},
	}
	sameNetwork := []string{"198.18.4.1/32", "198.18.4.77/32", "198.18.4.254/32", "198.18.4.128/25"}
	var queries [][]string
	for _, tc := range tests {
		queries = append(queries, tc.args)
	}
	queries = append(queries, noECS...)
	for _, sub := range sameNetwork {
		queries = append(queries, []string{"www.example.org", "+subnet=" + sub})
	}
	replies := s.queryAll(queries...)

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := replies[i]
			if r.status == "FORMERR" || r.status == "SERVFAIL" {
				t.Fatalf("status %s\n%s", r.status, r.raw)
			}
			if r.ecs != tc.ecs {
				t.Errorf("ECS %q, want %q", r.ecs, tc.ecs)
			}
			if n := strings.Count(r.raw, "; CLIENT-SUBNET:"); n != 1 {
				t.Errorf("%d ECS options in the reply, want exactly 1", n)
			}
			if !slices.Equal(r.addresses(), tc.want) {
				t.Errorf("addresses %v, want %v", r.addresses(), tc.want)
			}
			if t.Failed() {
				t.Log(r.raw)
			}
		})
	}
	replies = replies[len(tests):]

	t.Run("no ECS in the query means no ECS in the reply", func(t *testing.T) {
		for i, args := range noECS {
			if r := replies[i]; r.ecs != "" || strings.Contains(r.raw, "CLIENT-SUBNET") {
				t.Errorf("%v: reply carries ECS %q\n%s", args, r.ecs, r.raw)
			}
		}
	})
	replies = replies[len(noECS):]

	t.Run("same network, same answer and scope", func(t *testing.T) {
		for i, sub := range sameNetwork {
			if r := replies[i]; !slices.Equal(r.addresses(), []string{lhr4}) || r.ecs != sub+"/24" {
				t.Errorf("%s: %v ECS %q, want [%s] with scope 24", sub, r.addresses(), r.ecs, lhr4)
			}
		}
	})
}

func TestECSOneSiteAnswer(t *testing.T) {
	t.Parallel()
	s, _ := manyServer(t)
	tests := []struct {
		name string
		args []string
		ecs  string
		want []string
	}{
		{"answer whose every candidate is one pop gets scope 0", []string{"one.example.net", london}, "198.18.2.0/24/0", []string{nyc4, "192.0.2.11"}},
		{"one-pop answer to an unlocated client gets scope 0", []string{"one.example.net", notInDB}, "198.18.10.0/24/0", []string{nyc4, "192.0.2.11"}},
		{"one-pop answer to a client far away keeps both addresses", []string{"one.example.net", tokyo}, "198.18.3.0/24/0", []string{nyc4, "192.0.2.11"}},
		{"answer with two pops gets the database's scope", []string{"many.example.net", newYork}, "198.18.1.0/24/24", []string{nyc4}},
	}
	var queries [][]string
	for _, tc := range tests {
		queries = append(queries, tc.args)
	}
	replies := s.queryAll(queries...)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := replies[i]; r.ecs != tc.ecs || !slices.Equal(r.addresses(), tc.want) {
				t.Fatalf("got %v ECS %q, want %v ECS %q\n%s", r.addresses(), r.ecs, tc.want, tc.ecs, r.raw)
			}
		})
	}
}

func TestECSPolicy(t *testing.T) {
	t.Parallel()
	// The resolver is 127.0.0.3 (Tokyo); its client's ECS says London.
	fromTokyo := []string{"-b", "127.0.0.3", "www.example.org"}
	const malformed = "+ednsopt=8:0001180800c61202" // SCOPE 8
	tests := []struct {
		name     string
		property string
		honoured bool
	}{
		{"ecs off", "ecs off", false},
		{"ecs trust 127.0.0.0/8 honours a loopback resolver", "ecs trust 127.0.0.0/8", true},
		{"ecs trust 192.0.2.0/24 treats a loopback resolver as off", "ecs trust 192.0.2.0/24", false},
		{"ecs on", "ecs on", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, demoCorefile(tc.property), nil)
			replies := s.queryAll(
				slices.Concat(fromTokyo, []string{london}),
				slices.Concat(fromTokyo, []string{malformed}),
				[]string{"www.example.org", "MX", london},
			)
			r, bad, mx := replies[0], replies[1], replies[2]
			if tc.honoured {
				t.Run("ECS locates the client and is echoed", func(t *testing.T) {
					if !slices.Equal(r.addresses(), []string{lhr4}) || r.ecs != "198.18.2.0/24/24" {
						t.Fatalf("got %v ECS %q, want London with 198.18.2.0/24/24\n%s", r.addresses(), r.ecs, r.raw)
					}
				})
				t.Run("malformed ECS gets FORMERR with OPT", func(t *testing.T) {
					if bad.status != "FORMERR" || !bad.hasOPT {
						t.Fatalf("got %s OPT %v, want FORMERR with OPT\n%s", bad.status, bad.hasOPT, bad.raw)
					}
				})
				t.Run("other types are echoed with scope 0", func(t *testing.T) {
					if mx.ecs != "198.18.2.0/24/0" {
						t.Fatalf("ECS %q, want 198.18.2.0/24/0", mx.ecs)
					}
				})
				return
			}
			t.Run("ECS is not used and not echoed", func(t *testing.T) {
				if !slices.Equal(r.addresses(), []string{nrt4}) || r.ecs != "" {
					t.Fatalf("got %v ECS %q, want Tokyo by source address, no ECS\n%s", r.addresses(), r.ecs, r.raw)
				}
			})
			t.Run("malformed ECS is ignored like an unknown option", func(t *testing.T) {
				if bad.status != "NOERROR" || !slices.Equal(bad.addresses(), []string{nrt4}) || bad.ecs != "" {
					t.Fatalf("got %s %v ECS %q, want NOERROR Tokyo, no ECS\n%s", bad.status, bad.addresses(), bad.ecs, bad.raw)
				}
			})
			t.Run("other types are not echoed either", func(t *testing.T) {
				if mx.ecs != "" {
					t.Fatalf("ECS %q, want none", mx.ecs)
				}
			})
			t.Run("ECS counts as ignored, never used or formerr", func(t *testing.T) {
				s := s.withT(t)
				if got := s.metricSum("coredns_georoute_ecs_total", `result="ignored"`); got != 3 {
					t.Errorf("ignored = %v, want 3", got)
				}
				if got := s.metricSum("coredns_georoute_ecs_total", `result="formerr"`) + s.metricSum("coredns_georoute_ecs_total", `result="used"`); got != 0 {
					t.Errorf("formerr + used = %v, want 0", got)
				}
			})
		})
	}
}

func TestECSFormerr(t *testing.T) {
	t.Parallel()
	s := startServer(t, demoCorefile(), nil)
	tests := []struct {
		name string
		opts []string
		// withOPT: georoute answers (FORMERR with OPT, counted); without,
		// miekg/dns refused the option while unpacking and the server
		// answered FORMERR before any plugin ran.
		withOPT bool
	}{
		{"SCOPE not 0 gets FORMERR with OPT", []string{"+ednsopt=8:0001180800c61202"}, true},
		{"address bits beyond SOURCE get FORMERR with OPT", []string{"+ednsopt=8:00011700c61203"}, true},
		{"address longer than SOURCE needs gets FORMERR with OPT", []string{"+ednsopt=8:00011800c6120200"}, true},
		{"address shorter than SOURCE needs gets FORMERR with OPT", []string{"+ednsopt=8:00011800c612"}, true},
		{"SOURCE 0 with an address octet gets FORMERR with OPT", []string{"+ednsopt=8:0001000000"}, true},
		{"IPv6 address longer than SOURCE needs gets FORMERR with OPT", []string{"+ednsopt=8:00023000" + "20010db8020000"}, true},
		{"IPv6 bits beyond SOURCE get FORMERR with OPT", []string{"+ednsopt=8:00022f00" + "20010db80201"}, true},
		{"two ECS options get FORMERR with OPT", []string{"+ednsopt=8:00011800c61202", "+ednsopt=8:00011800c61201"}, true},
		{"+subnet plus a second ECS option gets FORMERR with OPT", []string{london, "+ednsopt=8:00011800c61201"}, true},
		{"FAMILY 0 with SOURCE 0 gets FORMERR with OPT", []string{"+ednsopt=8:00000000"}, true},
		{"SCOPE not 0 over TCP gets FORMERR with OPT", []string{"+ednsopt=8:0001180800c61202", "+tcp"}, true},
		{"option shorter than 4 octets gets FORMERR from the server", []string{"+ednsopt=8:000118"}, false},
		{"FAMILY 3 gets FORMERR from the server", []string{"+ednsopt=8:0003180000c61202"}, false},
		{"FAMILY 0 with SOURCE 8 gets FORMERR from the server", []string{"+ednsopt=8:0000080000"}, false},
		{"SOURCE 33 gets FORMERR from the server", []string{"+ednsopt=8:00012100c6121202"}, false},
		{"SOURCE 129 for IPv6 gets FORMERR from the server", []string{"+ednsopt=8:00028100" + "20010db8020000000000000000000000"}, false},
	}
	before := s.metricSum("coredns_georoute_ecs_total", `result="formerr"`)
	requests := s.metricSum("coredns_georoute_requests_total")
	// Each malformed query is followed by a normal one, which must still be
	// answered correctly.
	var queries [][]string
	for _, tc := range tests {
		queries = append(queries, append([]string{"www.example.org"}, tc.opts...), []string{"www.example.org", paris})
	}
	replies := s.queryAll(queries...)
	bad, next := make([]reply, len(tests)), make([]reply, len(tests))
	for i := range tests {
		bad[i], next[i] = replies[2*i], replies[2*i+1]
	}
	counted := 0
	for i, tc := range tests {
		if tc.withOPT {
			counted++
		}
		t.Run(tc.name, func(t *testing.T) {
			r := bad[i]
			if r.status != "FORMERR" || r.hasOPT != tc.withOPT || len(r.answer) != 0 {
				t.Errorf("got %s OPT %v answer %q, want FORMERR OPT %v and no answer\n%s", r.status, r.hasOPT, r.answer, tc.withOPT, r.raw)
			}
			if r.ecs != "" {
				t.Errorf("FORMERR carries ECS %q", r.ecs)
			}
			if slices.Contains(tc.opts, "+tcp") && !strings.Contains(r.raw, "(TCP)") {
				t.Errorf("not sent over TCP")
			}
			if ok := next[i]; ok.status != "NOERROR" || !slices.Equal(ok.addresses(), []string{lhr4}) || ok.ecs != "198.18.4.0/24/24" {
				t.Errorf("the next normal query got %s %v ECS %q, want London with 198.18.4.0/24/24\n%s", ok.status, ok.addresses(), ok.ecs, ok.raw)
			}
		})
	}
	t.Run("malformed options that reach georoute count as formerr", func(t *testing.T) {
		s := s.withT(t)
		if got := s.metricSum("coredns_georoute_ecs_total", `result="formerr"`) - before; got != float64(counted) {
			t.Fatalf("ecs_total{result=formerr} grew by %v, want %d", got, counted)
		}
	})
	t.Run("FORMERR replies are not counted as routed requests", func(t *testing.T) {
		s := s.withT(t)
		if got := s.metricSum("coredns_georoute_requests_total") - requests; got != float64(len(tests)) {
			t.Fatalf("requests_total grew by %v, want %d (only the normal queries)", got, len(tests))
		}
	})
}
