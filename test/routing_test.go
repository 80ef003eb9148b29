package test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Demo pop addresses (testdata/Corefile).
const (
	nyc4, lhr4, nrt4 = "192.0.2.10", "198.51.100.10", "203.0.113.10"
	nyc6, lhr6, nrt6 = "2001:db8:1::10", "2001:db8:2::10", "2001:db8:3::10"
	// Servers no pop claims; the database places them in Frankfurt and Sydney.
	fra4, syd4 = "192.0.2.200", "203.0.113.200"
)

// Client networks of testdata/geo.csv, as dig +subnet= arguments.
const (
	newYork   = "+subnet=198.18.1.0/24"
	london    = "+subnet=198.18.2.0/24"
	tokyo     = "+subnet=198.18.3.0/24"
	paris     = "+subnet=198.18.4.0/24"
	sydney    = "+subnet=198.18.5.0/24"
	saoPaulo  = "+subnet=198.18.6.0/24"
	frankfurt = "+subnet=198.18.9.0/24"
	noCoords  = "+subnet=198.18.7.0/24"  // in the db, without coordinates
	notInDB   = "+subnet=198.18.10.0/24" // no-match block 198.18.10.0/23
	newYork6  = "+subnet=2001:db8:100::/48"
	london6   = "+subnet=2001:db8:200::/48"
	tokyo6    = "+subnet=2001:db8:300::/48"
)

// demoPops are the three pops of the demo Corefile, in its order.
const demoPops = `
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10`

// demoCorefile is the demo server block of testdata/Corefile on the test's
// port, with metrics and readiness, and extra georoute properties.
func demoCorefile(props ...string) string {
	bind := "127.0.0.1"
	if haveIPv6Loopback() {
		bind += " ::1"
	}
	return fmt.Sprintf(`example.org:{port} {
    bind %s
    georoute www.example.org mixed.example.org {
        db {testdata}/geo.mmdb%s
        %s
    }
    file {testdata}/example.org.zone
    prometheus {metrics}
    ready {ready}
}
`, bind, demoPops, strings.Join(props, "\n        "))
}

// plainCorefile serves the demo zone without georoute: the reference for
// what the next plugin produces.
const plainCorefile = `example.org:{port} {
    bind 127.0.0.1
    file {testdata}/example.org.zone
}
`

// haveIPv6Loopback reports whether ::1 can be bound here.
func haveIPv6Loopback() bool {
	c, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// queryAll sends every query (dig arguments, as for s.query) and returns
// the replies in order. dig takes about 0.1 s just to start, so the queries
// go in as few dig runs as possible: one per source address (-b), each
// asking its lookups one after the other, the runs side by side. Any dig
// that fails fails the test.
func (s *server) queryAll(queries ...[]string) []reply {
	s.t.Helper()
	return s.digAll("127.0.0.1", queries)
}

// query6All is queryAll over ::1, so that the source address is ::1.
func (s *server) query6All(queries ...[]string) []reply {
	s.t.Helper()
	return s.digAll("::1", queries)
}

// lookup is one query of a dig run: its name first, then its options.
type lookup struct {
	source string // -b, "" for the default
	args   []string
}

func parseLookup(query []string) lookup {
	var l lookup
	var name string
	for i := 0; i < len(query); i++ {
		switch a := query[i]; {
		case a == "-b" && i+1 < len(query):
			l.source = query[i+1]
			i++
		case name == "" && !strings.HasPrefix(a, "+") && !strings.HasPrefix(a, "-"):
			name = a
		default:
			l.args = append(l.args, a)
		}
	}
	l.args = append([]string{name}, l.args...)
	return l
}

func (s *server) digAll(host string, queries [][]string) []reply {
	s.t.Helper()
	bySource := map[string][]int{}
	var sources []string
	lookups := make([]lookup, len(queries))
	for i, q := range queries {
		lookups[i] = parseLookup(q)
		src := lookups[i].source
		if _, ok := bySource[src]; !ok {
			sources = append(sources, src)
		}
		bySource[src] = append(bySource[src], i)
	}
	replies := make([]reply, len(queries))
	errs := make([]error, len(sources))
	var wg sync.WaitGroup
	for n, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[n] = digRun(host, s.port, src, lookups, bySource[src], replies)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.t.Fatal(err)
	}
	return replies
}

// digRun asks lookups[idx...] in one dig run from source and stores the
// replies at the same indexes. It never touches a testing.T.
func digRun(host string, port int, source string, lookups []lookup, idx []int, replies []reply) error {
	args := []string{"@" + host, "-p", strconv.Itoa(port), "+time=2", "+tries=1"}
	if source != "" {
		args = append(args, "-b", source)
	}
	for _, i := range idx {
		args = append(args, lookups[i].args...)
	}
	out, err := exec.Command("dig", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	chunks := strings.Split(string(out), ";; Got answer:\n")[1:]
	if len(chunks) != len(idx) {
		return fmt.Errorf("dig %s: %d replies for %d lookups\n%s", strings.Join(args, " "), len(chunks), len(idx), out)
	}
	for n, i := range idx {
		question := ";" + strings.ToLower(strings.TrimSuffix(lookups[i].args[0], ".")) + ".\t"
		if !strings.Contains(strings.ToLower(chunks[n]), question) {
			return fmt.Errorf("dig %s: reply %d is not for %s\n%s", strings.Join(args, " "), n, lookups[i].args[0], out)
		}
		replies[i] = parseDig(chunks[n])
	}
	return nil
}

// withT is s for use in subtest t: failures are reported on t, so that a
// subtest never calls FailNow on its parent.
func (s *server) withT(t *testing.T) *server {
	c := *s
	c.t = t
	return &c
}

// sections returns the records of dig's ANSWER, AUTHORITY and ADDITIONAL
// sections, whitespace folded, keyed by section name.
func (r reply) sections() map[string][]string {
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(r.raw))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ";; ") && strings.HasSuffix(line, " SECTION:"):
			section = strings.TrimSuffix(strings.TrimPrefix(line, ";; "), " SECTION:")
		case strings.HasPrefix(line, ";") || line == "":
			section = ""
		case section != "":
			out[section] = append(out[section], strings.Join(strings.Fields(line), " "))
		}
	}
	return out
}

// addressTTLs returns the TTLs of the A/AAAA records of an answer.
func (r reply) addressTTLs() []string {
	var out []string
	for _, rr := range r.answer {
		f := strings.Fields(rr)
		if len(f) == 5 && (f[3] == "A" || f[3] == "AAAA") {
			out = append(out, f[1])
		}
	}
	return out
}

// hasFlag reports whether the reply's header has flag (qr, aa, tc …).
func hasFlag(r reply, flag string) bool {
	return slices.Contains(strings.Fields(r.flags), flag)
}

// claim is one query and the addresses its answer must hold, in order.
type claim struct {
	name string
	args []string
	want []string
}

// checkClaims sends every claim's query at once, then checks each reply in
// a subtest named by the claim.
func checkClaims(t *testing.T, s *server, claims []claim, check func(t *testing.T, r reply)) {
	t.Helper()
	queries := make([][]string, len(claims))
	for i, c := range claims {
		queries[i] = c.args
	}
	replies := s.withT(t).queryAll(queries...)
	for i, c := range claims {
		t.Run(c.name, func(t *testing.T) {
			r := replies[i]
			if r.status != "NOERROR" || !slices.Equal(r.addresses(), c.want) {
				t.Fatalf("got %s %v, want NOERROR %v\n%s", r.status, r.addresses(), c.want, r.raw)
			}
			if check != nil {
				check(t, r)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	s := startServer(t, demoCorefile(), nil)

	t.Run("nearest pop", func(t *testing.T) {
		checkClaims(t, s, []claim{
			{"client in New York gets New York", []string{"www.example.org", newYork}, []string{nyc4}},
			{"client in London gets London", []string{"www.example.org", london}, []string{lhr4}},
			{"client in Tokyo gets Tokyo", []string{"www.example.org", tokyo}, []string{nrt4}},
			{"client in Paris gets London", []string{"www.example.org", paris}, []string{lhr4}},
			{"client in Sydney gets Tokyo", []string{"www.example.org", sydney}, []string{nrt4}},
			{"client in Sao Paulo gets New York", []string{"www.example.org", saoPaulo}, []string{nyc4}},
			{"client in San Francisco gets New York", []string{"www.example.org", "+subnet=198.18.8.0/24"}, []string{nyc4}},
			{"client in Frankfurt gets London", []string{"www.example.org", frankfurt}, []string{lhr4}},
			{"client in Paris gets London's AAAA", []string{"www.example.org", "AAAA", paris}, []string{lhr6}},
			{"client in Sydney gets Tokyo's AAAA", []string{"www.example.org", "AAAA", sydney}, []string{nrt6}},
			{"IPv6 client in New York gets New York's AAAA", []string{"www.example.org", "AAAA", newYork6}, []string{nyc6}},
			{"IPv6 client in London gets London's AAAA", []string{"www.example.org", "AAAA", london6}, []string{lhr6}},
			{"IPv6 client in Tokyo gets Tokyo's AAAA", []string{"www.example.org", "AAAA", tokyo6}, []string{nrt6}},
			{"IPv6 client in Tokyo gets Tokyo's A", []string{"www.example.org", tokyo6}, []string{nrt4}},
			{"configured name matches case-insensitively", []string{"WWW.Example.ORG", london}, []string{lhr4}},
		}, nil)
	})

	t.Run("TTL capped at 30 while the zone says 300", func(t *testing.T) {
		checkClaims(t, s, []claim{
			{"located by ECS", []string{"www.example.org", london}, []string{lhr4}},
			{"IPv6 client, AAAA", []string{"www.example.org", "AAAA", tokyo6}, []string{nrt6}},
			{"located by source address", []string{"www.example.org", "-b", "127.0.0.2"}, []string{lhr4}},
			{"fallback all", []string{"www.example.org"}, []string{nyc4, lhr4, nrt4}},
			{"address no pop claims", []string{"mixed.example.org", frankfurt}, []string{fra4}},
		}, func(t *testing.T, r reply) {
			for _, ttl := range r.addressTTLs() {
				if ttl != "30" {
					t.Fatalf("TTL %s, want 30\n%s", ttl, r.raw)
				}
			}
		})
	})

	t.Run("client without ECS is located by its source address", func(t *testing.T) {
		checkClaims(t, s, []claim{
			{"source 127.0.0.2 in London gets London", []string{"-b", "127.0.0.2", "www.example.org"}, []string{lhr4}},
			{"source 127.0.0.3 in Tokyo gets Tokyo", []string{"-b", "127.0.0.3", "www.example.org"}, []string{nrt4}},
			{"source 127.0.0.4 in New York gets New York", []string{"-b", "127.0.0.4", "www.example.org"}, []string{nyc4}},
			{"source 127.0.0.2 in London gets London's AAAA", []string{"-b", "127.0.0.2", "www.example.org", "AAAA"}, []string{lhr6}},
		}, func(t *testing.T, r reply) {
			if r.ecs != "" {
				t.Fatalf("ECS %q in a reply to a query without ECS", r.ecs)
			}
		})
	})

	t.Run("IPv6 source ::1 in Tokyo gets Tokyo", func(t *testing.T) {
		if !haveIPv6Loopback() {
			t.Skip("no ::1 here")
		}
		replies := s.withT(t).query6All([]string{"www.example.org", "A"}, []string{"www.example.org", "AAAA"})
		for i, want := range []string{nrt4, nrt6} {
			if r := replies[i]; !slices.Equal(r.addresses(), []string{want}) {
				t.Errorf("got %v, want [%s]\n%s", r.addresses(), want, r.raw)
			}
		}
	})

	t.Run("unlocated client keeps every address with fallback all", func(t *testing.T) {
		all4 := []string{nyc4, lhr4, nrt4}
		checkClaims(t, s, []claim{
			{"client network without coordinates", []string{"www.example.org", noCoords}, all4},
			{"client network not in the database", []string{"www.example.org", notInDB}, all4},
			{"IPv6 client network not in the database", []string{"www.example.org", "+subnet=2001:db8:999::/48"}, all4},
			{"source 127.0.0.1 not in the database", []string{"www.example.org"}, all4},
			{"source 127.0.0.1 not in the database, AAAA", []string{"www.example.org", "AAAA"}, []string{nyc6, lhr6, nrt6}},
		}, nil)
	})

	t.Run("addresses no pop claims are located by the database", func(t *testing.T) {
		checkClaims(t, s, []claim{
			{"client in Frankfurt gets the Frankfurt server", []string{"mixed.example.org", frankfurt}, []string{fra4}},
			{"client in Sydney gets the Sydney server", []string{"mixed.example.org", sydney}, []string{syd4}},
			{"client in Tokyo gets the Sydney server before London", []string{"mixed.example.org", tokyo}, []string{syd4}},
			{"client in Paris gets London before Frankfurt", []string{"mixed.example.org", paris}, []string{lhr4}},
			{"client in New York gets New York", []string{"mixed.example.org", newYork}, []string{nyc4}},
			{"unlocated client gets all four", []string{"mixed.example.org", noCoords}, []string{nyc4, lhr4, fra4, syd4}},
		}, nil)
	})

	t.Run("CNAME to a routed name keeps the CNAME and routes the A at its end", func(t *testing.T) {
		r := s.withT(t).query("alias.example.org", london)
		want := []string{
			"alias.example.org. 300 IN CNAME www.example.org.",
			"www.example.org. 30 IN A " + lhr4,
		}
		if !slices.Equal(r.answer, want) {
			t.Fatalf("answer %q, want %q\n%s", r.answer, want, r.raw)
		}
	})

	t.Run("other types and names pass as the next plugin produced them", func(t *testing.T) {
		s := s.withT(t)
		plain := startServer(t, plainCorefile, nil)
		tests := []struct {
			name string
			args []string
		}{
			{"MX of a routed name", []string{"www.example.org", "MX"}},
			{"TXT of a routed name", []string{"www.example.org", "TXT"}},
			{"MX of a routed name with ECS", []string{"www.example.org", "MX", tokyo}},
			{"SOA of the zone", []string{"example.org", "SOA", london}},
			{"NS of the zone", []string{"example.org", "NS"}},
			{"unrouted name keeps all three addresses", []string{"static.example.org", london}},
			{"unrouted name keeps all three addresses without ECS", []string{"static.example.org", "-b", "127.0.0.3"}},
			{"NXDOMAIN", []string{"nope.example.org", london}},
			{"NODATA of a routed name", []string{"mixed.example.org", "AAAA", london}},
			{"ANY of a routed name", []string{"www.example.org", "ANY"}},
			{"authority and flags of a routed answer", []string{"www.example.org", london}},
		}
		var queries [][]string
		for _, tc := range tests {
			queries = append(queries, tc.args)
		}
		got, want := s.queryAll(queries...), plain.queryAll(queries...)
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, want := got[i], want[i]
				if got.status != want.status || got.flags != want.flags {
					t.Errorf("status %s flags %q, want %s %q", got.status, got.flags, want.status, want.flags)
				}
				gs, ws := got.sections(), want.sections()
				sections := []string{"ANSWER", "AUTHORITY", "ADDITIONAL"}
				if i == len(tests)-1 {
					sections = sections[1:] // the answer is routed
				}
				for _, sec := range sections {
					if !slices.Equal(gs[sec], ws[sec]) {
						t.Errorf("%s section\n got %q\nwant %q", sec, gs[sec], ws[sec])
					}
				}
				if t.Failed() {
					t.Logf("georoute:\n%s\nplain:\n%s", got.raw, want.raw)
				}
			})
		}
		t.Run("unrouted name has three addresses", func(t *testing.T) {
			if r, want := got[5], []string{nyc4, lhr4, nrt4}; !slices.Equal(r.addresses(), want) {
				t.Fatalf("got %v, want %v", r.addresses(), want)
			}
		})
		t.Run("the zone's TTL is 300", func(t *testing.T) {
			if ttls := want[len(want)-1].addressTTLs(); len(ttls) != 3 || ttls[0] != "300" {
				t.Fatalf("plain server's TTLs %v, expected three of 300", ttls)
			}
		})
	})
}

func TestAnswersTwoAndFallbackPoint(t *testing.T) {
	t.Parallel()
	// answers 2, unlocated clients stand in Tokyo, and a ttl above the
	// zone's 300 that must not raise it.
	s := startServer(t, demoCorefile("answers 2", "fallback 35.6762 139.6503", "ttl 600"), nil)
	checkClaims(t, s, []claim{
		{"client in Paris gets London then New York", []string{"www.example.org", paris}, []string{lhr4, nyc4}},
		{"client in Sydney gets Tokyo then New York", []string{"www.example.org", sydney}, []string{nrt4, nyc4}},
		{"client in Sao Paulo gets New York then London", []string{"www.example.org", saoPaulo}, []string{nyc4, lhr4}},
		{"client in Tokyo gets Tokyo then London", []string{"www.example.org", tokyo}, []string{nrt4, lhr4}},
		{"IPv6 client in New York gets New York then London", []string{"www.example.org", "AAAA", newYork6}, []string{nyc6, lhr6}},
		{"client without coordinates stands in Tokyo", []string{"www.example.org", noCoords}, []string{nrt4, lhr4}},
		{"client not in the database stands in Tokyo", []string{"www.example.org", notInDB}, []string{nrt4, lhr4}},
		{"unlocated source address stands in Tokyo", []string{"www.example.org"}, []string{nrt4, lhr4}},
		{"located source address is not moved to Tokyo", []string{"www.example.org", "-b", "127.0.0.4"}, []string{nyc4, lhr4}},
		{"client in Sydney gets the Sydney server then New York", []string{"mixed.example.org", sydney}, []string{syd4, nyc4}},
	}, func(t *testing.T, r reply) {
		for _, ttl := range r.addressTTLs() {
			if ttl != "300" {
				t.Fatalf("TTL %s, want the zone's 300 (ttl 600 never raises it)\n%s", ttl, r.raw)
			}
		}
	})
	t.Run("clients placed by fallback count for the pop chosen there", func(t *testing.T) {
		s := s.withT(t)
		if got := s.metricSum("coredns_georoute_requests_total", `pop="nrt"`, `source="fallback"`); got != 3 {
			t.Fatalf("requests_total{pop=nrt,source=fallback} = %v, want 3", got)
		}
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startServer(t, demoCorefile(), nil)
	queries := [][]string{
		{"www.example.org", london},                                         // ecs, lhr
		{"www.example.org", "-b", "127.0.0.3"},                              // remote, nrt
		{"www.example.org", "AAAA", "-b", "127.0.0.4", "+subnet=0.0.0.0/0"}, // ECS ignored, remote, nyc
		{"www.example.org"},                                                 // fallback
		{"www.example.org", "MX"},                                           // not counted
		{"static.example.org"},                                              // not a georoute name
	}
	for i, r := range s.queryAll(queries...) {
		if r.status != "NOERROR" {
			t.Fatalf("%v: %s", queries[i], r.status)
		}
	}
	const requests = "coredns_georoute_requests_total"
	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"ECS client in London counts for lhr by ecs", requests, []string{`pop="lhr"`, `source="ecs"`}, 1},
		{"source address in Tokyo counts for nrt by remote", requests, []string{`pop="nrt"`, `source="remote"`}, 1},
		{"SOURCE 0 client in New York counts for nyc by remote", requests, []string{`pop="nyc"`, `source="remote"`}, 1},
		{"unlocated client counts with an empty pop by fallback", requests, []string{`pop=""`, `source="fallback"`}, 1},
		{"only routed A/AAAA queries count", requests, nil, 4},
		{"each located client observes a distance", "coredns_georoute_distance_km_count", nil, 3},
		{"ECS that located the client counts as used", "coredns_georoute_ecs_total", []string{`result="used"`}, 1},
		{"SOURCE 0 counts as ignored", "coredns_georoute_ecs_total", []string{`result="ignored"`}, 1},
		{"nothing counts as formerr", "coredns_georoute_ecs_total", []string{`result="formerr"`}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := s.withT(t)
			if got := s.metricSum(tc.metric, tc.labels...); got != tc.want {
				t.Fatalf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	t.Run("distances are within the Earth's half circumference", func(t *testing.T) {
		s := s.withT(t)
		if sum := s.metricSum("coredns_georoute_distance_km_sum"); sum <= 0 || sum > 3*20016 {
			t.Fatalf("distance_km_sum = %v", sum)
		}
	})
}

// manyCorefile serves example.net: many has more addresses at one pop than
// fit a 512-byte reply, one is served by one pop only, lost mixes a pop with
// an address the database cannot place, nowhere has only such addresses.
const manyCorefile = `example.net:{port} {
    bind 127.0.0.1
    georoute many.example.net one.example.net lost.example.net nowhere.example.net {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10 192.0.2.11
        pop lhr 51.4700 -0.4543 %s
    }
    file many.zone
    prometheus {metrics}
}
`

func manyServer(t *testing.T) (*server, []string) {
	var lhr []string
	zone := "$ORIGIN example.net.\n$TTL 300\n" +
		"@ IN SOA ns1 hostmaster 1 3600 600 604800 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n" +
		"many IN A 192.0.2.10\n"
	for i := 1; i <= 60; i++ {
		a := fmt.Sprintf("198.51.100.%d", i)
		lhr = append(lhr, a)
		zone += "many IN A " + a + "\n"
	}
	zone += "one IN A 192.0.2.10\none IN A 192.0.2.11\n" +
		"lost IN A 192.0.2.1\nlost IN A 192.0.2.10\n" +
		"nowhere IN A 192.0.2.1\nnowhere IN A 192.0.2.2\n"
	s := startServer(t, fmt.Sprintf(manyCorefile, strings.Join(lhr, " ")), map[string]string{"many.zone": zone})
	return s, lhr
}

func TestAddressesTheDatabaseCannotPlace(t *testing.T) {
	t.Parallel()
	s, _ := manyServer(t)
	// 192.0.2.1 and 192.0.2.2 are in no pop and in no network of the
	// database.
	checkClaims(t, s, []claim{
		{"located client drops them for a located pop", []string{"lost.example.net", london}, []string{nyc4}},
		{"unlocated client keeps them with fallback all", []string{"lost.example.net", notInDB}, []string{"192.0.2.1", nyc4}},
		{"located client keeps them all when none can be placed", []string{"nowhere.example.net", london}, []string{"192.0.2.1", "192.0.2.2"}},
	}, nil)
}

func TestTruncation(t *testing.T) {
	t.Parallel()
	s, lhr := manyServer(t)
	// The first query of an answer state gets the database network's
	// SCOPE and asks for the merged view; wait for it, so that both
	// replies below carry the same SCOPE.
	for prev, i := "", 0; i < 50; i++ {
		ecs := s.query("many.example.net", london).ecs
		if ecs == prev {
			break
		}
		prev = ecs
		time.Sleep(100 * time.Millisecond)
	}
	replies := s.queryAll(
		[]string{"many.example.net", london, "+tcp"},
		[]string{"many.example.net", london, "+bufsize=512", "+ignore"},
	)
	tcp, udp := replies[0], replies[1]
	t.Run("TCP gives the whole set of the nearest pop", func(t *testing.T) {
		got := slices.Clone(tcp.addresses())
		slices.Sort(got)
		want := slices.Clone(lhr)
		slices.Sort(want)
		if !slices.Equal(got, want) || hasFlag(tcp, "tc") || !strings.Contains(tcp.raw, "(TCP)") {
			t.Fatalf("flags %q, %d addresses %v, want the 60 London ones\n%s", tcp.flags, len(got), got, tcp.raw)
		}
		if !strings.HasPrefix(tcp.ecs, "198.18.2.0/24/") {
			t.Fatalf("ECS %q, want 198.18.2.0/24 with a SCOPE", tcp.ecs)
		}
	})
	t.Run("UDP with a small buffer is truncated with OPT and ECS kept", func(t *testing.T) {
		if !hasFlag(udp, "tc") || !strings.Contains(udp.raw, "(UDP)") {
			t.Fatalf("flags %q, want tc\n%s", udp.flags, udp.raw)
		}
		if !udp.hasOPT || udp.ecs != tcp.ecs {
			t.Fatalf("OPT %v ECS %q, want OPT and the TCP reply's ECS %q\n%s", udp.hasOPT, udp.ecs, tcp.ecs, udp.raw)
		}
		got := udp.addresses()
		t.Logf("UDP kept %d of %d addresses", len(got), len(tcp.addresses()))
		if len(got) >= len(tcp.addresses()) || !slices.Equal(got, tcp.addresses()[:len(got)]) {
			t.Fatalf("UDP addresses %v are not a proper prefix of the TCP order %v", got, tcp.addresses())
		}
	})
}
