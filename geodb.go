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
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"
)

// geoFile is one MMDB file as loaded into memory. The whole file is read
// rather than mmapped: an operator who rewrites the file in place (truncate,
// then write) would otherwise pull pages out from under a running lookup, and
// a swapped-out reader can simply be left to the garbage collector instead of
// being unmapped while a query may still hold it.
type geoFile struct {
	reader    *maxminddb.Reader
	places    placeCache
	ipVersion uint
	buildTime time.Time
	modTime   time.Time
	size      int64
}

// geoSource is one `db` path and the copy of it that is in service.
type geoSource struct {
	path    string
	current atomic.Pointer[geoFile]
	// gen is the database's generation, advanced at every swap.
	gen *atomic.Uint64
	// lastErr is the text of the last failure to load, so that a bad file
	// is logged once per distinct error rather than at every poll. Only the
	// watcher goroutine touches it.
	lastErr string
}

// geoDB is every `db` file of a georoute block, in declaration order.
type geoDB struct {
	sources []*geoSource
	// gen counts the files swapped in since start-up: whatever was located
	// in an older generation (subnets, answerCache) is stale.
	gen atomic.Uint64
	// subnets caches the location of IPv4 /24s (see locate).
	subnets [1 << subnetCacheBits]atomic.Pointer[subnetPlace]
}

// clientLocation is where the database puts an address.
type clientLocation struct {
	at       point
	lat, lon float64
	// located is false when no file holds coordinates for the address; a record
	// without coordinates is not at 0,0.
	located bool
	// prefix is the length of the database network that decided the lookup
	// (the matching network, or the no-match block), in the address's own
	// family: 0..32 for IPv4, 0..128 for IPv6. It becomes the ECS SCOPE.
	prefix int
}

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

// covers reports whether f can hold addr: an IPv4-only file holds no IPv6
// address (an IPv6 file may hold both).
func (f *geoFile) covers(addr netip.Addr) bool { return addr.Is4() || f.ipVersion == 6 }

// newGeoDB loads every path; any failure is a start-up error.
func newGeoDB(paths []string) (*geoDB, error) {
	db := &geoDB{}
	for _, p := range paths {
		f, err := openGeoFile(context.Background(), p)
		if err != nil {
			return nil, err
		}
		src := &geoSource{path: p, gen: &db.gen}
		src.current.Store(f)
		db.sources = append(db.sources, src)
	}
	return db, nil
}

// locate finds addr's coordinates. An IPv4 address (IPv4-mapped IPv6
// included) is looked up in the files that hold IPv4 networks, an IPv6 one in
// IPv6 files, in declaration order; the first file with coordinates wins.
func (db *geoDB) locate(addr netip.Addr) clientLocation {
	addr = addr.Unmap()
	if !addr.Is4() {
		return db.lookup(addr)
	}
	// Resolvers send IPv4 ECS as /24s: remember where each /24 stands, so
	// that a repeat skips walking the database's tree (two dozen cache
	// misses in a large file). Only a /24 that lies inside one network of
	// every file consulted is remembered: every address in it gets the same
	// result, SCOPE included. The generation ties an entry to the database
	// files it was looked up in.
	a4 := addr.As4()
	net24 := uint32(a4[0])<<16 | uint32(a4[1])<<8 | uint32(a4[2])
	slot := &db.subnets[(net24*0x9E3779B1)>>(32-subnetCacheBits)]
	gen := db.gen.Load()
	if e := slot.Load(); e != nil && e.net24 == net24 && e.gen == gen {
		return e.loc
	}
	loc := db.lookup(addr)
	if loc.prefix <= 24 {
		slot.Store(&subnetPlace{net24: net24, gen: gen, loc: loc})
	}
	return loc
}

// subnetCacheBits sizes the /24 cache: 2^16 slots of one pointer.
const subnetCacheBits = 16

// subnetPlace is where the database puts every address of one IPv4 /24.
type subnetPlace struct {
	net24 uint32
	gen   uint64
	loc   clientLocation
}

// lookupResult is one file's answer for an address.
type lookupResult = maxminddb.Result

// each looks addr up in every file that can hold it, in declaration order,
// while visit returns true: the one walk that lookup and describe share.
func (db *geoDB) each(addr netip.Addr, visit func(src *geoSource, f *geoFile, res lookupResult) bool) {
	for _, src := range db.sources {
		f := src.current.Load()
		if !f.covers(addr) {
			continue
		}
		if !visit(src, f, f.reader.Lookup(addr)) {
			return
		}
	}
}

// lookup finds addr in the database files: the first file with coordinates
// for it wins.
func (db *geoDB) lookup(addr netip.Addr) clientLocation {
	var loc clientLocation
	db.each(addr, func(_ *geoSource, f *geoFile, res lookupResult) bool {
		if res.Err() != nil {
			return true
		}
		// Every address inside the intersection of the networks consulted
		// gets this same result, so the SCOPE is the longest of them.
		if p := res.Prefix().Bits(); p > loc.prefix {
			loc.prefix = p
		}
		if !res.Found() {
			return true
		}
		// The file, not its source: a swap may have replaced the source's
		// copy since, and places are cached per file.
		p := f.places.get(res)
		if !p.located {
			return true
		}
		loc.lat, loc.lon, loc.at, loc.located = p.lat, p.lon, p.at, true
		return false
	})
	return loc
}

// placeCacheSize is the number of slots of a file's place cache: a power of
// two, large enough that the networks of a busy server's clients rarely
// evict each other (each slot is one pointer).
const placeCacheSize = 1 << 16

// placeCache remembers the coordinates of database records by their offset
// in the file, so that a lookup decodes a record once rather than at every
// query. Records never change within a loaded file, and each file has its
// own cache, so a swapped-in file starts empty and no entry is ever stale.
// Slots are replaced whole through atomic pointers: readers take no lock.
type placeCache struct {
	slots [placeCacheSize]atomic.Pointer[place]
}

// place is the decoded location of one record.
type place struct {
	offset   uintptr
	lat, lon float64
	at       point
	located  bool
}

// get returns the location of the record res found.
func (pc *placeCache) get(res maxminddb.Result) *place {
	off := res.Offset()
	slot := &pc.slots[(off*0x9E3779B97F4A7C15)>>48&(placeCacheSize-1)]
	if p := slot.Load(); p != nil && p.offset == off {
		return p
	}
	p := &place{offset: off}
	var c coordinates
	if res.Decode(&c) == nil && c.complete() {
		p.lat, p.lon, p.at, p.located = c.lat, c.lon, pointAt(c.lat, c.lon), true
	}
	slot.Store(p)
	return p
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

// watch re-reads every file that changed on disk, once per interval, until
// ctx ends. A reload or shutdown never waits for it (see stop).
func (db *geoDB) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, src := range db.sources {
			src.reloadIfChanged(ctx)
		}
	}
}

// reloadIfChanged swaps in the file at src.path when it differs from the
// copy in service, and says whether it did. A file that does not open or
// validate keeps the old copy in service and is tried again at every call
// (the fault may be transient: permissions, EMFILE, a half-written file);
// every failure is counted, each distinct error logged once. Nothing is
// swapped in once ctx has ended.
func (src *geoSource) reloadIfChanged(ctx context.Context) bool {
	st, err := os.Stat(src.path)
	cur := src.current.Load()
	if err == nil && st.ModTime().Equal(cur.modTime) && st.Size() == cur.size {
		src.lastErr = ""
		return false
	}
	f, err := openGeoFile(ctx, src.path)
	if ctx.Err() != nil {
		return false
	}
	if err == nil && f.ipVersion != cur.ipVersion {
		err = fmt.Errorf("ip_version %d, expected %d like the file in service", f.ipVersion, cur.ipVersion)
	}
	if err != nil {
		dbReloadCount.WithLabelValues("error").Inc()
		if msg := err.Error(); msg != src.lastErr {
			src.lastErr = msg
			log.Errorf("db %s not reloaded, keeping the copy built %s (tried again every poll): %v", src.path, cur.buildTime.UTC().Format(time.RFC3339), err)
		}
		return false
	}
	src.lastErr = ""
	src.current.Store(f)
	src.gen.Add(1)
	// The copy swapped out is garbage now, as big as the file: collect it
	// and hand its pages back at once, instead of letting the heap grow
	// to twice the files before the next collection (measured with DB-IP:
	// 500 MiB after three swaps rather than 310).
	debug.FreeOSMemory()
	dbReloadCount.WithLabelValues("ok").Inc()
	dbBuildTime.WithLabelValues(src.path).Set(float64(f.buildTime.Unix()))
	log.Infof("db %s reloaded, built %s", src.path, f.buildTime.UTC().Format(time.RFC3339))
	return true
}

// publishBuildTimes sets the build-time gauge of every file in service.
func (db *geoDB) publishBuildTimes() {
	for _, src := range db.sources {
		dbBuildTime.WithLabelValues(src.path).Set(float64(src.current.Load().buildTime.Unix()))
	}
}
