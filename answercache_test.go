package georoute

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/miekg/dns"
)

// answerCacheSetup is a block with 40 pops and a zone whose answer holds
// every pop's address plus two anonymous ones (Frankfurt and Sydney in the
// test database), handed out as one shared slice as file does — large
// enough to be cached.
func answerCacheSetup(t *testing.T, db string) (*GeoRoute, *benchZone, []answerCacheSite) {
	t.Helper()
	r := rand.New(rand.NewPCG(40, 2))
	var cf strings.Builder
	fmt.Fprintf(&cf, "georoute www.example.org {\n    db %s\n", db)
	z := &benchZone{}
	var sites []answerCacheSite
	for i := range 40 {
		lat, lon := r.Float64()*140-70, r.Float64()*360-180
		addr := netip.AddrFrom4([4]byte{11, 0, byte(i), 1})
		sites = append(sites, answerCacheSite{addr.String(), lat, lon})
		fmt.Fprintf(&cf, "    pop p%d %.4f %.4f %s\n", i, lat, lon, addr)
		z.answer = append(z.answer, &dns.A{Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: addr.AsSlice()})
	}
	// Anonymous servers, where the test database puts them.
	for _, anon := range []answerCacheSite{{"192.0.2.200", 50.1109, 8.6821}, {"203.0.113.200", -33.8688, 151.2093}} {
		sites = append(sites, anon)
		z.answer = append(z.answer, &dns.A{Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: netip.MustParseAddr(anon.addr).AsSlice()})
	}
	cf.WriteString("}")
	g := georouteTestNewFrom(t, cf.String())
	g.Next = z
	if len(z.answer) <= largeAnswer {
		t.Fatalf("the answer has %d records; the cache only takes more than %d", len(z.answer), largeAnswer)
	}
	return g, z, sites
}

// answerCacheSite is an address of the answer and where it stands.
type answerCacheSite struct {
	addr     string
	lat, lon float64
}

// answerCacheAsk routes www.example.org/A for a client in subnet and
// returns the address served.
func answerCacheAsk(t *testing.T, g *GeoRoute, subnet string) string {
	t.Helper()
	rec := dnstest.NewRecorder(georouteTestRemote("10.240.0.1"))
	if _, err := g.ServeDNS(context.Background(), rec, ecsTestQuery(t, "www.example.org.", dns.TypeA, subnet)); err != nil {
		t.Fatal(err)
	}
	if rec.Msg == nil || len(rec.Msg.Answer) != 1 {
		t.Fatalf("reply for %s: %v", subnet, rec.Msg)
	}
	return addrOf(rec.Msg.Answer[0]).String()
}

// answerCacheNearest works out by brute force, with the textbook haversine
// formula, which address is nearest to lat, lon among those not down.
func answerCacheNearest(sites []answerCacheSite, lat, lon float64, down map[string]bool) string {
	best, bestKm := "", math.Inf(1)
	for _, s := range sites {
		if down[s.addr] {
			continue
		}
		if km := haversineTextbookKm(lat, lon, s.lat, s.lon); km < bestKm {
			best, bestKm = s.addr, km
		}
	}
	return best
}

// The analysis of a large answer is cached, and caching never changes an
// answer: every client gets the pop a brute-force search picks, health is
// read at every query, and a database swap is seen at once.
func TestAnswerCacheNeverChangesAnAnswer(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "geo.mmdb")
	original, err := os.ReadFile("testdata/geo.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dbPath, original, 0o644); err != nil {
		t.Fatal(err)
	}
	g, z, sites := answerCacheSetup(t, dbPath)

	clients := []struct {
		subnet   string
		lat, lon float64
	}{
		{"198.18.1.0/24", 40.7128, -74.0060},
		{"198.18.2.0/24", 51.5074, -0.1278},
		{"198.18.3.0/24", 35.6762, 139.6503},
		{"198.18.5.0/24", -33.8688, 151.2093},
		{"198.18.6.0/24", -23.5505, -46.6333},
	}
	check := func(t *testing.T, down map[string]bool) {
		t.Helper()
		for round := range 2 { // the second round is answered from the cache
			for _, c := range clients {
				if got, want := answerCacheAsk(t, g, c.subnet), answerCacheNearest(sites, c.lat, c.lon, down); got != want {
					t.Errorf("round %d: client %s got %s; brute force says %s", round, c.subnet, got, want)
				}
			}
		}
	}

	t.Run("every client gets the nearest pop, cached or not", func(t *testing.T) {
		check(t, nil)
		if g.bigAnswers.get(z.answer, "www.example.org.", dns.TypeA, g.db.gen.Load()) == nil {
			t.Fatal("the large answer was not cached")
		}
	})

	t.Run("a pop that goes down is skipped at the next query", func(t *testing.T) {
		down := map[string]bool{}
		for _, c := range clients {
			down[answerCacheNearest(sites, c.lat, c.lon, down)] = true
		}
		setDown := func(on bool) {
			for _, p := range g.pops {
				if down[p.addrs[0].addr.String()] {
					p.addrs[0].down.Store(on)
				}
			}
		}
		// Anonymous sites are always healthy: keep them in the reckoning.
		for _, s := range sites[40:] {
			delete(down, s.addr)
		}
		setDown(true)
		t.Cleanup(func() { setDown(false) })
		check(t, down)
	})

	t.Run("a database swap relocates anonymous sites at once", func(t *testing.T) {
		// Every pop down but one far away, in the middle of the Pacific: a
		// client in Frankfurt is then nearest to the anonymous Frankfurt
		// server, until the new database moves that server to Sydney.
		for i, p := range g.pops {
			p.addrs[0].down.Store(i != 0)
		}
		t.Cleanup(func() {
			for _, p := range g.pops {
				p.addrs[0].down.Store(false)
			}
		})
		if got := answerCacheAsk(t, g, "198.18.9.0/24"); got != "192.0.2.200" {
			t.Fatalf("client in Frankfurt got %s; want the anonymous Frankfurt server 192.0.2.200", got)
		}
		csv, err := os.ReadFile("testdata/geo.csv")
		if err != nil {
			t.Fatal(err)
		}
		moved := strings.Replace(string(csv), "192.0.2.128/25,Frankfurt,DE,50.1109,8.6821", "192.0.2.128/25,Sydney,AU,-33.8688,151.2093", 1)
		src := filepath.Join(dir, "moved.csv")
		if err := os.WriteFile(src, []byte(moved), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("go", "run", "./internal/mmdbgen", "-in", src, "-out", dbPath+".new", "-epoch", "1780000000").CombinedOutput()
		if err != nil {
			t.Fatalf("mmdbgen: %v\n%s", err, out)
		}
		if err := os.Rename(dbPath+".new", dbPath); err != nil {
			t.Fatal(err)
		}
		if !g.db.sources[0].reloadIfChanged(context.Background()) {
			t.Fatal("the new database was not swapped in")
		}
		if got := answerCacheAsk(t, g, "198.18.9.0/24"); got == "192.0.2.200" {
			t.Errorf("after the swap the Frankfurt client still gets 192.0.2.200, which the new database puts in Sydney")
		}
	})

	t.Run("an answer slice changed in place is analyzed anew", func(t *testing.T) {
		shared := z.answer
		defer func() { z.answer = shared }()
		// A copy with the first pop's record replaced: same length, other
		// backing array, then the original array with one record swapped.
		changed := append([]dns.RR(nil), shared...)
		z.answer = changed
		answerCacheAsk(t, g, "198.18.2.0/24")
		nearest := answerCacheNearest(sites[:40], 51.5074, -0.1278, nil)
		for i, rr := range changed {
			if addrOf(rr).String() == nearest {
				changed[i] = &dns.A{Hdr: *rr.Header(), A: netip.MustParseAddr("192.0.2.201").AsSlice()}
			}
		}
		got := answerCacheAsk(t, g, "198.18.2.0/24")
		if got == nearest {
			t.Errorf("the client still gets %s, which the changed answer no longer holds", nearest)
		}
	})
}
