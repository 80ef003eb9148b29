package georoute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"
)

// maxDBSize is the largest database file read. The largest real City
// databases are a few hundred MB; a file far beyond that is a mistake (or
// an attack) that would cost its size in memory, and is refused unread.
const maxDBSize = 1 << 30

// openGeoFile reads path and checks that it is a City-style database with
// coordinates: it is a regular file (or a symlink to one) of at most
// maxDBSize bytes, it opens, its ip_version is 4 or 6, its search tree is
// a tree whose every network leads to a record that decodes, and at least
// one record carries a location. (The library's own Verify is stricter
// about metadata than real databases are: it refuses DB-IP City Lite for
// its empty description.) Validation ends early when ctx does.
func openGeoFile(ctx context.Context, path string) (*geoFile, error) {
	raw, st, err := readDBFile(path)
	if err != nil {
		return nil, err
	}
	f, err := parseGeoFile(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	f.modTime, f.size = st.ModTime(), st.Size()
	return f, nil
}

// parseGeoFile opens and validates the bytes of a database file (see
// openGeoFile).
func parseGeoFile(ctx context.Context, raw []byte) (*geoFile, error) {
	r, err := maxminddb.OpenBytes(raw)
	if err != nil {
		return nil, err
	}
	if v := r.Metadata.IPVersion; v != 4 && v != 6 {
		return nil, fmt.Errorf("ip_version %d, expected 4 or 6", v)
	}
	if err := checkRecords(ctx, raw, r); err != nil {
		return nil, err
	}
	return &geoFile{
		reader:    r,
		raw:       raw,
		ipVersion: r.Metadata.IPVersion,
		buildTime: time.Unix(int64(r.Metadata.BuildEpoch), 0),
	}, nil
}

// readDBFile reads a whole database file. It opens without blocking and
// checks the opened file itself, so that a FIFO or device put at the path
// (even between a stat and the open) is refused instead of blocking the
// reader, and reads at most maxDBSize bytes even from a file that grows.
func readDBFile(path string) ([]byte, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file (%s); expected an MMDB file or a symlink to one", path, st.Mode().Type())
	}
	if st.Size() > maxDBSize {
		return nil, nil, fmt.Errorf("%s: %d bytes, larger than the %d bytes a database may have", path, st.Size(), maxDBSize)
	}
	raw := make([]byte, 0, st.Size()+1)
	for {
		n, err := f.Read(raw[len(raw):cap(raw)])
		raw = raw[:len(raw)+n]
		if err == io.EOF {
			return raw, st, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if len(raw) > maxDBSize {
			return nil, nil, fmt.Errorf("%s: grew past the %d bytes a database may have while being read", path, maxDBSize)
		}
		if len(raw) == cap(raw) {
			raw = append(raw, 0)[:len(raw)]
		}
	}
}

// checkRecords walks the search tree of r (raw is its file): the tree must
// be a tree that leads to records that decode, and at least one of them
// must have coordinates. Each distinct record is decoded once. A file that
// passes never makes a lookup fail; it takes about a second per million
// networks, once per load.
func checkRecords(ctx context.Context, raw []byte, r *maxminddb.Reader) error {
	// One bit per byte of the file marks the records already decoded: an
	// eighth of the file, far less than a map of the millions of distinct
	// records of a real City database.
	seen := make([]uint64, len(raw)/64+1)
	located := false
	leaves := 0
	err := walkTree(raw, r.Metadata, func(prefix netip.Prefix, off uintptr, found bool) error {
		if leaves++; leaves%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if !found {
			return nil
		}
		if seen[off/64]&(1<<(off%64)) != 0 {
			return nil
		}
		seen[off/64] |= 1 << (off % 64)
		var c coordinates
		if err := r.LookupOffset(off).Decode(&c); err != nil {
			return fmt.Errorf("network %s: %w", prefix, err)
		}
		located = located || c.complete()
		return nil
	})
	if err != nil {
		return err
	}
	if !located {
		return errors.New("no network carries latitude/longitude; expected a City database")
	}
	return nil
}

// coordinates decodes only latitude and longitude of a record, from either
// layout: MaxMind City (location.latitude) or the flat one of DB-IP City Lite
// (latitude at the top). Decoding nothing else keeps a lookup allocation-free.
type coordinates struct {
	lat, lon       float64
	hasLat, hasLon bool
}

func (c *coordinates) complete() bool {
	return c.hasLat && c.hasLon && c.lat >= -90 && c.lat <= 90 && c.lon >= -180 && c.lon <= 180
}

// UnmarshalMaxMindDBCursor implements mmdbdata.CursorUnmarshaler.
func (c *coordinates) UnmarshalMaxMindDBCursor(cur mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	return c.readMap(cur, true)
}

func (c *coordinates) readMap(cur mmdbdata.Cursor, top bool) (mmdbdata.Cursor, error) {
	entries, err := cur.Map()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var next mmdbdata.Cursor
	for {
		key, value, ok := entries.Next(next)
		if !ok {
			break
		}
		switch {
		case string(key) == "latitude":
			c.lat, next, err = readNumber(value)
			c.hasLat = err == nil
		case string(key) == "longitude":
			c.lon, next, err = readNumber(value)
			c.hasLon = err == nil
		case top && string(key) == "location":
			next, err = c.readMap(value, false)
		default:
			next, err = value.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return entries.End()
}

// readNumber accepts the float kinds both layouts use.
func readNumber(cur mmdbdata.Cursor) (float64, mmdbdata.Cursor, error) {
	v, next, err := cur.ReadFloat()
	if err != nil {
		return 0, mmdbdata.Cursor{}, errors.Join(errors.New("coordinate is not a number"), err)
	}
	return v, next, nil
}
