package georoute

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	stdlog "log"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georoute/georoute/internal/mmdbcraft"
	"github.com/georoute/georoute/internal/mmdbwrite"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// geodbTestPlace is one network of a generated test database; noCoords
// writes a record that names a city but carries no coordinates.
type geodbTestPlace struct {
	network  string
	lat, lon float64
	noCoords bool
}

// geodbTestWrite writes an MMDB file to path in the given layout ("city":
// MaxMind GeoIP2 City, "flat": DB-IP City Lite, "flat32": flat with float32
// coordinates as DB-IP ships them) and ip_version, with 24-bit records.
func geodbTestWrite(tb testing.TB, path, layout string, ipVersion int, places ...geodbTestPlace) {
	tb.Helper()
	geodbTestWriteWith(tb, path, layout, ipVersion, 24, places...)
}

// geodbTestWriteWith is geodbTestWrite with a record size (24, 28, 32).
func geodbTestWriteWith(tb testing.TB, path, layout string, ipVersion, recordSize int, places ...geodbTestPlace) {
	tb.Helper()
	var ps []mmdbwrite.Place
	for _, p := range places {
		ps = append(ps, mmdbwrite.Place{Network: netip.MustParsePrefix(p.network), City: "somewhere", Lat: p.lat, Lon: p.lon, NoCoords: p.noCoords})
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	opts := mmdbwrite.Options{Layout: layout, IPVersion: ipVersion, RecordSize: recordSize, Epoch: 1767225600, Description: "georoute test database"}
	if err := mmdbwrite.Write(f, opts, ps); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

func geodbTestOpen(tb testing.TB, paths ...string) *geoDB {
	tb.Helper()
	db, err := newGeoDB(paths)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// syncBuffer is a bytes.Buffer that several goroutines may write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// geodbTestCaptureLog collects what the package logs until the test ends.
func geodbTestCaptureLog(t *testing.T) *syncBuffer {
	var buf syncBuffer
	stdlog.SetOutput(&buf)
	t.Cleanup(func() { stdlog.SetOutput(os.Stderr) })
	return &buf
}

// geodbTestCounter reads a counter of the package's metrics.
func geodbTestCounter(tb testing.TB, c prometheus.Counter) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

const (
	geodbTestCity = "testdata/geo.mmdb"
	geodbTestFlat = "testdata/geo-flat-v4.mmdb"
)

func TestLocate(t *testing.T) {
	type place struct{ lat, lon float64 }
	var (
		newYork  = &place{40.7128, -74.0060}
		london   = &place{51.5074, -0.1278}
		tokyo    = &place{35.6762, 139.6503}
		paris    = &place{48.8566, 2.3522}
		sf       = &place{37.7749, -122.4194}
		frankfur = &place{50.1109, 8.6821}
	)
	tests := []struct {
		name  string
		files []string
		addr  string
		at    *place // nil: not located
		// prefix is the network length expected; -1: only checked to be the
		// no-match block (see below).
		prefix int
	}{
		{"city layout: client in New York is located with its /24", []string{geodbTestCity}, "198.18.1.77", newYork, 24},
		{"flat layout: client in New York is located with its /24", []string{geodbTestFlat}, "198.18.1.77", newYork, 24},
		{"city layout: Paris", []string{geodbTestCity}, "198.18.4.1", paris, 24},
		{"flat layout: Paris", []string{geodbTestFlat}, "198.18.4.1", paris, 24},
		{"city layout: a /25 network gives /25", []string{geodbTestCity}, "198.18.8.1", sf, 25},
		{"flat layout: a /25 network gives /25", []string{geodbTestFlat}, "198.18.8.1", sf, 25},
		{"city layout: a /32 gives /32", []string{geodbTestCity}, "127.0.0.2", london, 32},
		{"city layout: documentation range is located", []string{geodbTestCity}, "192.0.2.130", frankfur, 25},
		{"IPv4 in an IPv6 tree gives an IPv4 prefix (/24, not /120)", []string{geodbTestCity}, "198.18.2.9", london, 24},
		{"IPv4-mapped address is looked up as IPv4 in an IPv6 tree", []string{geodbTestCity}, "::ffff:198.18.2.9", london, 24},
		{"IPv4-mapped address is looked up as IPv4 in an IPv4-only tree", []string{geodbTestFlat}, "::ffff:198.18.3.9", tokyo, 24},
		{"IPv6 client is located with its /48", []string{geodbTestCity}, "2001:db8:300::1", tokyo, 48},
		{"IPv6 /128 gives /128", []string{geodbTestCity}, "::1", tokyo, 128},
		{"city layout: record without coordinates is not located but gives its /24", []string{geodbTestCity}, "198.18.7.200", nil, 24},
		{"flat layout: record without coordinates is not located but gives its /24", []string{geodbTestFlat}, "198.18.7.200", nil, 24},
		{"city layout: a /25 gap next to a /25 network gives /25", []string{geodbTestCity}, "198.18.8.200", nil, 25},
		{"city layout: address not in the db gives the no-match block", []string{geodbTestCity}, "8.8.8.8", nil, -1},
		{"flat layout: address not in the db gives the no-match block", []string{geodbTestFlat}, "8.8.8.8", nil, -1},
		{"IPv6 address not in the db gives the no-match block", []string{geodbTestCity}, "2001:db8:999::1", nil, -1},
		{"IPv6 address skips an IPv4-only file", []string{geodbTestFlat}, "2001:db8:100::1", nil, 0},
		{"IPv6 address skips the IPv4-only file and is found in the next", []string{geodbTestFlat, geodbTestCity}, "2001:db8:100::1", newYork, 48},
		{"IPv4 address is found in the first file", []string{geodbTestFlat, geodbTestCity}, "198.18.9.1", &place{50.1109, 8.6821}, 24},
		{"invalid address is not located", []string{geodbTestCity}, "", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := geodbTestOpen(t, tc.files...)
			var addr netip.Addr
			if tc.addr != "" {
				addr = netip.MustParseAddr(tc.addr)
			}
			loc := db.locate(addr)
			switch {
			case tc.at == nil && loc.located:
				t.Fatalf("located at %v, %v; want not located", loc.lat, loc.lon)
			case tc.at == nil && (loc.lat != 0 || loc.lon != 0 || loc.at != point{}):
				t.Errorf("not located but carries a position %v, %v (%v)", loc.lat, loc.lon, loc.at)
			case tc.at != nil && !loc.located:
				t.Fatalf("not located; want %v, %v", tc.at.lat, tc.at.lon)
			case tc.at != nil && (loc.lat != tc.at.lat || loc.lon != tc.at.lon || loc.at != pointAt(tc.at.lat, tc.at.lon)):
				t.Errorf("located at %v, %v (%v); want %v, %v", loc.lat, loc.lon, loc.at, tc.at.lat, tc.at.lon)
			}
			if tc.prefix >= 0 && loc.prefix != tc.prefix {
				t.Errorf("prefix /%d, want /%d", loc.prefix, tc.prefix)
			}
			if !addr.IsValid() || tc.prefix == 0 {
				return
			}
			lookup := addr.Unmap()
			if max := lookup.BitLen(); loc.prefix < 1 || loc.prefix > max {
				t.Fatalf("prefix /%d is not a prefix length of a %d-bit address", loc.prefix, max)
			}
			geodbTestCheckBlock(t, db, lookup, loc)
		})
	}
}

// geodbTestCheckBlock checks what the ECS SCOPE promises: every address of
// the block addr/prefix gets the same location (design §1.3).
func geodbTestCheckBlock(t *testing.T, db *geoDB, addr netip.Addr, loc clientLocation) {
	t.Helper()
	block := netip.PrefixFrom(addr, loc.prefix).Masked()
	r := rand.New(rand.NewPCG(uint64(loc.prefix), 3))
	samples := []netip.Addr{block.Addr(), geodbTestLast(block)}
	for range 64 {
		samples = append(samples, geodbTestRandomIn(r, block))
	}
	for _, a := range samples {
		got := db.locate(a)
		if got.located != loc.located || got.lat != loc.lat || got.lon != loc.lon {
			t.Fatalf("%s in the same /%d block as %s located %v at %v,%v; %s: %v at %v,%v",
				a, loc.prefix, addr, got.located, got.lat, got.lon, addr, loc.located, loc.lat, loc.lon)
		}
	}
}

func geodbTestLast(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func geodbTestRandomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if r.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestLocateNoMatchPrefixIsTheReadersNetwork(t *testing.T) {
	for _, path := range []string{geodbTestCity, geodbTestFlat} {
		r, err := maxminddb.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		db := geodbTestOpen(t, path)
		for _, s := range []string{"8.8.8.8", "1.2.3.4", "203.0.113.5", "198.18.6.1", "198.18.8.129"} {
			t.Run(filepath.Base(path)+" "+s, func(t *testing.T) {
				addr := netip.MustParseAddr(s)
				res := r.Lookup(addr)
				if err := res.Err(); err != nil {
					t.Fatal(err)
				}
				want := res.Prefix().Bits()
				if got := db.locate(addr).prefix; got != want {
					t.Errorf("prefix /%d, the reader's network is /%d", got, want)
				}
			})
		}
		r.Close()
	}
}

func TestLocateFileOrder(t *testing.T) {
	dir := t.TempDir()
	paris := filepath.Join(dir, "paris.mmdb")
	tokyo := filepath.Join(dir, "tokyo.mmdb")
	londonOnly := filepath.Join(dir, "london.mmdb")
	geodbTestWrite(t, paris, "flat", 4, geodbTestPlace{network: "198.18.1.0/24", lat: 48.8566, lon: 2.3522})
	geodbTestWrite(t, tokyo, "city", 6, geodbTestPlace{network: "198.18.1.0/24", lat: 35.6762, lon: 139.6503})
	geodbTestWrite(t, londonOnly, "flat", 4, geodbTestPlace{network: "198.18.2.0/24", lat: 51.5074, lon: -0.1278})
	tests := []struct {
		name    string
		files   []string
		addr    string
		wantLat float64
	}{
		{"the first file that holds the address wins (paris first)", []string{paris, tokyo}, "198.18.1.1", 48.8566},
		{"the first file that holds the address wins (tokyo first)", []string{tokyo, paris}, "198.18.1.1", 35.6762},
		{"a file without the address leaves it to the next", []string{paris, londonOnly}, "198.18.2.1", 51.5074},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loc := geodbTestOpen(t, tc.files...).locate(netip.MustParseAddr(tc.addr))
			if !loc.located || loc.lat != tc.wantLat {
				t.Fatalf("located %v at latitude %v; want %v", loc.located, loc.lat, tc.wantLat)
			}
		})
	}
}

func TestLocateFloat32Coordinates(t *testing.T) {
	// DB-IP City Lite stores coordinates as MMDB float (32 bit).
	path := filepath.Join(t.TempDir(), "dbip.mmdb")
	geodbTestWrite(t, path, "flat32", 4, geodbTestPlace{network: "81.2.69.0/24", lat: 51.5, lon: -0.125})
	loc := geodbTestOpen(t, path).locate(netip.MustParseAddr("81.2.69.142"))
	if !loc.located || loc.lat != 51.5 || loc.lon != -0.125 || loc.prefix != 24 {
		t.Fatalf("got %+v; want London /24", loc)
	}
}

func TestOpenGeoFileErrors(t *testing.T) {
	dir := t.TempDir()
	notMMDB := filepath.Join(dir, "zone.mmdb")
	if err := os.WriteFile(notMMDB, []byte("example.org. 300 IN A 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noCoords := filepath.Join(dir, "asn.mmdb")
	geodbTestWrite(t, noCoords, "city", 6,
		geodbTestPlace{network: "198.18.1.0/24", noCoords: true},
		geodbTestPlace{network: "2001:db8::/32", noCoords: true})
	truncated := filepath.Join(dir, "truncated.mmdb")
	raw, err := os.ReadFile(geodbTestCity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing file is refused", filepath.Join(dir, "missing.mmdb"), "no such file"},
		{"a file that is not an MMDB is refused", notMMDB, "zone.mmdb"},
		{"a truncated MMDB is refused", truncated, "truncated.mmdb"},
		{"an MMDB without coordinates is refused", noCoords, "latitude/longitude"},
		{"a directory is refused", dir, "not a regular file"},
		{"a symlink to a device is refused", geodbTestSymlink(t, dir, "/dev/zero"), "not a regular file"},
		{"a file over the size limit is refused unread", geodbTestSparse(t, dir, maxDBSize+1), "larger than"},
		{"a search tree that is a DAG is refused", geodbTestCrafted(t, dir, "dag.mmdb", mmdbcraft.Chain(6, 24, 64)), "search tree is not a tree"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := openGeoFile(context.Background(), tc.path)
			if err == nil {
				t.Fatalf("opened %s (ip_version %d); want an error", tc.path, f.ipVersion)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if _, err := newGeoDB([]string{geodbTestCity, tc.path}); err == nil {
				t.Errorf("newGeoDB accepted %s as its second file", tc.path)
			}
		})
	}
	t.Run("missing file error wraps fs.ErrNotExist", func(t *testing.T) {
		if _, err := openGeoFile(context.Background(), filepath.Join(dir, "missing.mmdb")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error %v is not fs.ErrNotExist", err)
		}
	})
	t.Run("a symlink to a database opens", func(t *testing.T) {
		abs, err := filepath.Abs(geodbTestCity)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := openGeoFile(context.Background(), geodbTestSymlink(t, dir, abs)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("both bundled layouts open", func(t *testing.T) {
		for path, v := range map[string]uint{geodbTestCity: 6, geodbTestFlat: 4} {
			f, err := openGeoFile(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if f.ipVersion != v || f.buildTime.Unix() != 1767225600 {
				t.Errorf("%s: ip_version %d, build %v", path, f.ipVersion, f.buildTime)
			}
		}
	})
}

// geodbTestSymlink makes a symlink to target in dir.
func geodbTestSymlink(tb testing.TB, dir, target string) string {
	tb.Helper()
	link := filepath.Join(dir, "link-"+filepath.Base(target))
	if err := os.Symlink(target, link); err != nil {
		tb.Fatal(err)
	}
	return link
}

// geodbTestSparse makes a file of size bytes that takes no disk space.
func geodbTestSparse(tb testing.TB, dir string, size int64) string {
	tb.Helper()
	path := filepath.Join(dir, "huge.mmdb")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		tb.Fatal(err)
	}
	return path
}

// geodbTestCrafted writes a hand-built MMDB file into dir.
func geodbTestCrafted(tb testing.TB, dir, name string, f mmdbcraft.File) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, f.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// geodbTestReplace writes a new file over path the way an operator's
// download would, and moves its mtime on so that the change is seen even
// on a file system with coarse timestamps.
func geodbTestReplace(tb testing.TB, path string, write func(tmp string), age time.Duration) {
	tb.Helper()
	tmp := path + ".new"
	write(tmp)
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	when := time.Now().Add(age)
	if err := os.Chtimes(path, when, when); err != nil {
		tb.Fatal(err)
	}
}

func TestReloadIfChanged(t *testing.T) {
	newYork := geodbTestPlace{network: "198.18.1.0/24", lat: 40.7128, lon: -74.0060}
	movedToTokyo := geodbTestPlace{network: "198.18.1.0/24", lat: 35.6762, lon: 139.6503}
	client := netip.MustParseAddr("198.18.1.1")
	setup := func(t *testing.T) (string, *geoDB) {
		path := filepath.Join(t.TempDir(), "geo.mmdb")
		geodbTestWrite(t, path, "city", 6, newYork)
		return path, geodbTestOpen(t, path)
	}
	writeGarbage := func(tmp string) {
		if err := os.WriteFile(tmp, []byte("this is not a database, and is not as long as one"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lat := func(db *geoDB) float64 { return db.locate(client).lat }

	t.Run("an unchanged file is not re-read", func(t *testing.T) {
		_, db := setup(t)
		before := db.sources[0].current.Load()
		db.sources[0].reloadIfChanged(context.Background())
		if db.sources[0].current.Load() != before {
			t.Fatal("unchanged file was swapped")
		}
	})
	t.Run("replacing the file swaps in the new copy", func(t *testing.T) {
		path, db := setup(t)
		ok := geodbTestCounter(t, dbReloadCount.WithLabelValues("ok"))
		geodbTestReplace(t, path, func(tmp string) {
			geodbTestWrite(t, tmp, "city", 6, movedToTokyo, geodbTestPlace{network: "198.18.2.0/24", lat: 1, lon: 1})
		}, time.Minute)
		db.sources[0].reloadIfChanged(context.Background())
		if got := lat(db); got != 35.6762 {
			t.Fatalf("client at latitude %v after the reload; want Tokyo", got)
		}
		if d := geodbTestCounter(t, dbReloadCount.WithLabelValues("ok")) - ok; d != 1 {
			t.Errorf("db_reloads_total{result=ok} grew by %v, want 1", d)
		}
	})
	t.Run("a corrupt replacement keeps the old copy, is counted at every poll and logged once", func(t *testing.T) {
		path, db := setup(t)
		logs := geodbTestCaptureLog(t)
		errs := geodbTestCounter(t, dbReloadCount.WithLabelValues("error"))
		geodbTestReplace(t, path, writeGarbage, time.Minute)
		for range 3 {
			db.sources[0].reloadIfChanged(context.Background())
			if got := lat(db); got != 40.7128 {
				t.Fatalf("client at latitude %v; want New York from the old copy", got)
			}
		}
		if d := geodbTestCounter(t, dbReloadCount.WithLabelValues("error")) - errs; d != 3 {
			t.Errorf("db_reloads_total{result=error} grew by %v over three polls, want 3", d)
		}
		if n := strings.Count(logs.String(), "not reloaded"); n != 1 {
			t.Errorf("%d log lines over three polls of one error, want 1:\n%s", n, logs)
		}
		// Another error is logged again; a later good file is taken.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		db.sources[0].reloadIfChanged(context.Background())
		if n := strings.Count(logs.String(), "not reloaded"); n != 2 {
			t.Errorf("%d log lines after a second, different error, want 2:\n%s", n, logs)
		}
		geodbTestReplace(t, path, func(tmp string) { geodbTestWrite(t, tmp, "city", 6, movedToTokyo) }, 2*time.Minute)
		db.sources[0].reloadIfChanged(context.Background())
		if got := lat(db); got != 35.6762 {
			t.Fatalf("client at latitude %v after a good file followed the bad one; want Tokyo", got)
		}
	})
	t.Run("a file that cannot be read is tried again at every poll, untouched", func(t *testing.T) {
		path, db := setup(t)
		geodbTestReplace(t, path, func(tmp string) { geodbTestWrite(t, tmp, "city", 6, movedToTokyo) }, time.Minute)
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		geodbTestAsNobody(t, path, func() { db.sources[0].reloadIfChanged(context.Background()) })
		geodbTestAsNobody(t, path, func() { db.sources[0].reloadIfChanged(context.Background()) })
		if got := lat(db); got != 40.7128 {
			t.Fatalf("client at latitude %v; want New York while the new file is unreadable", got)
		}
		// Making it readable changes neither its mtime nor its size.
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		geodbTestAsNobody(t, path, func() { db.sources[0].reloadIfChanged(context.Background()) })
		if got := lat(db); got != 35.6762 {
			t.Fatalf("client at latitude %v once the file is readable; want Tokyo", got)
		}
	})
	t.Run("a deleted file keeps the old copy", func(t *testing.T) {
		path, db := setup(t)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		db.sources[0].reloadIfChanged(context.Background())
		db.sources[0].reloadIfChanged(context.Background())
		if got := lat(db); got != 40.7128 {
			t.Fatalf("client at latitude %v; want New York from the old copy", got)
		}
	})
	t.Run("a replacement of the other ip_version is refused", func(t *testing.T) {
		path, db := setup(t)
		geodbTestReplace(t, path, func(tmp string) { geodbTestWrite(t, tmp, "flat", 4, movedToTokyo) }, time.Minute)
		db.sources[0].reloadIfChanged(context.Background())
		if got := lat(db); got != 40.7128 {
			t.Fatalf("client at latitude %v; want New York from the old copy", got)
		}
		if v := db.sources[0].current.Load().ipVersion; v != 6 {
			t.Fatalf("ip_version %d in service", v)
		}
	})
	t.Run("the watcher stops when its context ends", func(t *testing.T) {
		_, db := setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { db.watch(ctx, time.Millisecond); close(done) }()
		time.Sleep(5 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("watch did not return after cancel")
		}
	})
}

// The /24 cache never changes where an address is placed: a /24 that
// straddles database networks is not cached, and a database swap retires
// every entry.
func TestLocateSubnetCache(t *testing.T) {
	db := geodbTestOpen(t, geodbTestCity)
	place := func(s string) clientLocation { return db.locate(netip.MustParseAddr(s)) }
	net24 := uint32(198)<<16 | 18<<8 | 2
	cached := func() bool { _, _, ok := db.subnets.get(net24, db.gen.Load()); return ok }

	t.Run("a /24 inside one network is remembered for every address in it", func(t *testing.T) {
		first, second := place("198.18.2.1"), place("198.18.2.200")
		if !first.located || first != second || first.prefix != 24 {
			t.Fatalf("198.18.2.1 %+v, 198.18.2.200 %+v; want both London /24", first, second)
		}
		if !cached() {
			t.Error("the /24 was not cached")
		}
	})
	t.Run("addresses of one /24 in different networks keep their own places", func(t *testing.T) {
		london, tokyo := place("127.0.0.2"), place("127.0.0.3")
		if london.lat == tokyo.lat || london.prefix != 32 || tokyo.prefix != 32 {
			t.Errorf("127.0.0.2 %+v and 127.0.0.3 %+v share a place", london, tokyo)
		}
		if sf, outside := place("198.18.8.1"), place("198.18.8.200"); !sf.located || outside.located {
			t.Errorf("198.18.8.1 (San Francisco /25) %+v, 198.18.8.200 (outside it) %+v", sf, outside)
		}
	})
	t.Run("a database swap retires the cached /24s", func(t *testing.T) {
		before := place("198.18.2.1")
		db.gen.Add(1)
		if cached() {
			t.Fatal("the /24 is still cached in the new generation")
		}
		if after := place("198.18.2.1"); after != before {
			t.Errorf("the same file after a generation change places 198.18.2.1 at %+v, not %+v", after, before)
		}
		if !cached() {
			t.Error("the entry was not renewed for the new generation")
		}
	})
}

// Two blocks may each use a file called geo.mmdb: the build-time gauge
// tells them apart by path.
func TestBuildTimeGaugeIsKeyedByPath(t *testing.T) {
	var paths []string
	for _, epoch := range []int{1767225600, 1780000000} {
		path := filepath.Join(t.TempDir(), "geo.mmdb")
		raw, err := os.ReadFile(geodbTestCity)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		db := geodbTestOpen(t, path)
		db.sources[0].current.Load().buildTime = time.Unix(int64(epoch), 0)
		db.publishBuildTimes()
		paths = append(paths, path)
	}
	for i, want := range []float64{1767225600, 1780000000} {
		var m dto.Metric
		if err := dbBuildTime.WithLabelValues(paths[i]).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetGauge().GetValue(); got != want {
			t.Errorf("db_build_timestamp_seconds{file=%q} = %v; want %v", paths[i], got, want)
		}
	}
}

// A place remembers the distance to one pop at a time; asked for another,
// it gives that one's, never the remembered one's.
func TestPlaceRemembersDistanceToOnePop(t *testing.T) {
	pl := &place{at: pointAt(48.8566, 2.3522), located: true} // Paris
	lhr := &pop{rank: 0, at: pointAt(51.4700, -0.4543)}
	nrt := &pop{rank: 1, at: pointAt(35.7720, 140.3929)}
	for range 2 {
		for _, p := range []*pop{lhr, lhr, nrt, lhr} {
			want := distanceKm(pl.at, p.at)
			if got := pl.kmTo(p); math.Abs(got-want) > 1e-3 {
				t.Fatalf("kmTo(rank %d) = %v; want %v", p.rank, got, want)
			}
		}
	}
}
