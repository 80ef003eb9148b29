// Package mmdbwrite writes small MaxMind-format City databases: the one
// writer behind the bundled test database (internal/mmdbgen) and every test
// that needs a database of its own.
package mmdbwrite

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Place is one network of a database and where its clients are. NoCoords
// writes a record that names a place but carries no coordinates.
type Place struct {
	Network       netip.Prefix
	City, Country string
	Lat, Lon      float64
	NoCoords      bool
}

// Options say how a database is laid out.
type Options struct {
	// Layout is "city" (MaxMind GeoIP2 City: city.names.en,
	// country.iso_code, location.latitude/longitude/accuracy_radius),
	// "flat" (DB-IP City Lite as ip-location-db packages it: city,
	// country_code, latitude, longitude at the top) or "flat32" (flat with
	// float32 coordinates, as DB-IP ships them).
	Layout string
	// IPVersion is 6 (a tree for IPv4 and IPv6) or 4; an ip_version 4 tree
	// leaves out IPv6 places.
	IPVersion int
	// RecordSize is 24 (default), 28 or 32 bits.
	RecordSize int
	// Epoch is the build time written to the metadata, in Unix seconds: a
	// fixed one makes the output reproducible byte for byte.
	Epoch       int64
	Description string
}

// Write writes the database of places to w.
func Write(w io.Writer, o Options, places []Place) error {
	dbType := "GeoIP2-City"
	switch o.Layout {
	case "city":
	case "flat", "flat32":
		dbType = "DBIP-City-Lite"
	default:
		return fmt.Errorf("layout %q; expected city, flat or flat32", o.Layout)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": o.Description},
		Languages:               []string{"en"},
		IPVersion:               o.IPVersion,
		RecordSize:              max(o.RecordSize, 24),
		BuildEpoch:              o.Epoch,
		IncludeReservedNetworks: true, // test networks live in documentation ranges
	})
	if err != nil {
		return err
	}
	for _, p := range places {
		if o.IPVersion == 4 && !p.Network.Addr().Is4() {
			continue
		}
		_, network, err := net.ParseCIDR(p.Network.String())
		if err != nil {
			return err
		}
		if err := tree.Insert(network, record(o.Layout, p)); err != nil {
			return fmt.Errorf("%s: %w", p.Network, err)
		}
	}
	_, err = tree.WriteTo(w)
	return err
}

func record(layout string, p Place) mmdbtype.Map {
	var coords mmdbtype.Map
	switch {
	case p.NoCoords:
	case layout == "flat32":
		coords = mmdbtype.Map{"latitude": mmdbtype.Float32(p.Lat), "longitude": mmdbtype.Float32(p.Lon)}
	default:
		coords = mmdbtype.Map{"latitude": mmdbtype.Float64(p.Lat), "longitude": mmdbtype.Float64(p.Lon)}
	}
	if layout != "city" {
		m := mmdbtype.Map{"city": mmdbtype.String(p.City), "country_code": mmdbtype.String(p.Country)}
		for k, v := range coords {
			m[k] = v
		}
		return m
	}
	m := mmdbtype.Map{
		"city":    mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(p.City)}},
		"country": mmdbtype.Map{"iso_code": mmdbtype.String(p.Country)},
	}
	if coords != nil {
		coords["accuracy_radius"] = mmdbtype.Uint16(50)
		m["location"] = coords
	}
	return m
}

// ReadCSV reads places from a CSV with a header and the columns
// network,city,country,latitude,longitude (`#` comments); an empty
// latitude and longitude is a place without coordinates.
func ReadCSV(r io.Reader) ([]Place, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = 5
	cr.TrimLeadingSpace = true
	var places []Place
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return places, nil
		}
		if err != nil {
			return nil, err
		}
		if line == 1 {
			continue // header
		}
		p, err := parsePlace(rec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rec[0], err)
		}
		places = append(places, p)
	}
}

func parsePlace(rec []string) (Place, error) {
	network, err := netip.ParsePrefix(strings.TrimSpace(rec[0]))
	if err != nil {
		return Place{}, err
	}
	p := Place{Network: network.Masked(), City: strings.TrimSpace(rec[1]), Country: strings.TrimSpace(rec[2])}
	lat, lon := strings.TrimSpace(rec[3]), strings.TrimSpace(rec[4])
	if lat == "" && lon == "" {
		p.NoCoords = true
		return p, nil
	}
	if p.Lat, err = strconv.ParseFloat(lat, 64); err != nil {
		return Place{}, fmt.Errorf("latitude %q", lat)
	}
	if p.Lon, err = strconv.ParseFloat(lon, 64); err != nil {
		return Place{}, fmt.Errorf("longitude %q", lon)
	}
	return p, nil
}
