package georoute

import (
	"context"
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// geoFile is one MMDB file as loaded into memory. The whole file is read
// rather than mmapped: an operator who rewrites the file in place (truncate,
// then write) would otherwise pull pages out from under a running lookup, and
// a swapped-out reader can simply be left to the garbage collector instead of
// being unmapped while a query may still hold it.
type geoFile struct {
	reader *maxminddb.Reader
	// raw is the file's bytes, which reader reads from: the merged SCOPE
	// views walk its search tree with walkTree.
	raw       []byte
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
	subnets subnetCache
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
	// place is the database record's (unlocatedPlace when not located).
	place *place
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
// An IPv4 address's /24 is remembered (subnetcache.go).
func (db *geoDB) locate(addr netip.Addr) clientLocation {
	addr = addr.Unmap()
	if !addr.Is4() {
		return db.lookup(addr)
	}
	a4 := addr.As4()
	net24 := uint32(a4[0])<<16 | uint32(a4[1])<<8 | uint32(a4[2])
	gen := db.gen.Load()
	if p, prefix, ok := db.subnets.get(net24, gen); ok {
		return p.location(prefix)
	}
	loc := db.lookup(addr)
	if loc.prefix <= 24 {
		db.subnets.put(net24, gen, loc.prefix, loc.place)
	}
	return loc
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
	found, prefix := &unlocatedPlace, 0
	db.each(addr, func(_ *geoSource, f *geoFile, res lookupResult) bool {
		if res.Err() != nil {
			return true
		}
		// Every address inside the intersection of the networks consulted
		// gets this same result, so the SCOPE is the longest of them.
		prefix = max(prefix, res.Prefix().Bits())
		if !res.Found() {
			return true
		}
		// The file, not its source: a swap may have replaced the source's
		// copy since, and places are cached per file.
		if p := f.places.get(res); p.located {
			found = p
			return false
		}
		return true
	})
	return found.location(prefix)
}

// location is where pl puts a client whose database network is prefix long.
func (pl *place) location(prefix int) clientLocation {
	return clientLocation{at: pl.at, lat: pl.lat, lon: pl.lon, located: pl.located, prefix: prefix, place: pl}
}

// unlocatedPlace stands for every address no file has coordinates for.
var unlocatedPlace place

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
	// near remembers the distance to the pop its clients were last sent
	// to, for the distance_km histogram: the rank + 1 of the pop in the
	// high 32 bits, the kilometres as a float32 in the low ones. The pops
	// of a block never change, and each block has its own places.
	near atomic.Uint64
}

// kmTo is the distance from pl to p in kilometres, to float32 precision
// (a metre at the antipodes): computed once per place and pop rather than
// with an arcsine at every query.
func (pl *place) kmTo(p *pop) float64 {
	key := uint64(p.rank+1) << 32
	if v := pl.near.Load(); v&^0xffffffff == key {
		return float64(math.Float32frombits(uint32(v)))
	}
	km := math.Float32bits(float32(distanceKm(pl.at, p.at)))
	pl.near.Store(key | uint64(km))
	return float64(math.Float32frombits(km))
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
