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
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
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
	dbType := "GeoIP2-City"
	if layout == "flat" {
		dbType = "DBIP-City-Lite"
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "georoute test database (fictional locations)"},
		Languages:               []string{"en"},
		IPVersion:               ipVersion,
		RecordSize:              24,
		BuildEpoch:              epoch,
		IncludeReservedNetworks: true, // test networks live in documentation ranges
	})
	if err != nil {
		return err
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	r.FieldsPerRecord = 5
	r.TrimLeadingSpace = true
	line := 0
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		line++
		if line == 1 {
			continue // header
		}
		_, network, err := net.ParseCIDR(rec[0])
		if err != nil {
			return fmt.Errorf("%s: %v", in, err)
		}
		if ipVersion == 4 && network.IP.To4() == nil {
			continue
		}
		value, err := record(layout, rec[1], rec[2], rec[3], rec[4])
		if err != nil {
			return fmt.Errorf("%s: %s: %v", in, rec[0], err)
		}
		if err := tree.Insert(network, value); err != nil {
			return fmt.Errorf("%s: %s: %v", in, rec[0], err)
		}
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(o); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}

func record(layout, city, country, lat, lon string) (mmdbtype.Map, error) {
	city, country = strings.TrimSpace(city), strings.TrimSpace(country)
	m := mmdbtype.Map{}
	var coords mmdbtype.Map
	if lat != "" || lon != "" {
		la, err := strconv.ParseFloat(strings.TrimSpace(lat), 64)
		if err != nil {
			return nil, fmt.Errorf("latitude %q", lat)
		}
		lo, err := strconv.ParseFloat(strings.TrimSpace(lon), 64)
		if err != nil {
			return nil, fmt.Errorf("longitude %q", lon)
		}
		coords = mmdbtype.Map{"latitude": mmdbtype.Float64(la), "longitude": mmdbtype.Float64(lo)}
	}
	if layout == "flat" {
		m["city"] = mmdbtype.String(city)
		m["country_code"] = mmdbtype.String(country)
		for k, v := range coords {
			m[k] = v
		}
		return m, nil
	}
	m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(city)}}
	m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(country)}
	if coords != nil {
		coords["accuracy_radius"] = mmdbtype.Uint16(50)
		m["location"] = coords
	}
	return m, nil
}
