// Command mmdbgen writes a small MaxMind-format City database from a readable
// CSV of networks, so that tests and the demo need no real database. The
// output is byte-for-byte reproducible: the build time comes from a flag.
//
//	mmdbgen -in testdata/geo.csv -out testdata/geo.mmdb [-layout city|flat] [-ip 4|6]
//
// The CSV has a header and the columns network,city,country,latitude,longitude;
// an empty latitude/longitude writes a record without coordinates. The
// `city` layout is MaxMind GeoIP2 City (city.names.en, country.iso_code,
// location.latitude/longitude/accuracy_radius); the `flat` layout is DB-IP
// City Lite as packaged by ip-location-db (city, country_code, latitude,
// longitude at the top).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/georoute/georoute/internal/mmdbwrite"
)

func main() {
	in := flag.String("in", "testdata/geo.csv", "readable source: network,city,country,latitude,longitude")
	out := flag.String("out", "testdata/geo.mmdb", "database to write")
	layout := flag.String("layout", "city", "record layout: city (MaxMind GeoIP2 City) or flat (DB-IP City Lite)")
	ipVersion := flag.Int("ip", 6, "ip_version of the tree: 6 holds IPv4 and IPv6, 4 holds IPv4 only")
	epoch := flag.Int64("epoch", 1767225600, "build_epoch written to the metadata (Unix seconds)")
	flag.Parse()
	if err := run(*in, *out, *layout, *ipVersion, *epoch); err != nil {
		fmt.Fprintln(os.Stderr, "mmdbgen:", err)
		os.Exit(1)
	}
}

func run(in, out, layout string, ipVersion int, epoch int64) error {
	if layout != "city" && layout != "flat" {
		return fmt.Errorf("layout %q; expected city or flat", layout)
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	places, err := mmdbwrite.ReadCSV(f)
	if err != nil {
		return fmt.Errorf("%s: %v", in, err)
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	opts := mmdbwrite.Options{Layout: layout, IPVersion: ipVersion, Epoch: epoch, Description: "georoute test database (fictional locations)"}
	if err := mmdbwrite.Write(o, opts, places); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
