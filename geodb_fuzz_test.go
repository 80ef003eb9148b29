package georoute

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georoute/georoute/internal/mmdbcraft"
)

// FuzzOpenDatabase opens arbitrary bytes as a database file. Whatever they
// are, loading must end quickly with a file or an error, never panic, and a
// file that loads must answer lookups without failing. The seeds (the
// committed databases, truncated copies, crafted DAGs) run as normal tests.
func FuzzOpenDatabase(f *testing.F) {
	for _, path := range []string{geodbTestCity, geodbTestFlat} {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		for _, n := range []int{len(raw) / 2, len(raw) - 100, len(raw) - 1, 64} {
			f.Add(raw[:n])
		}
	}
	for _, c := range []mmdbcraft.File{
		mmdbcraft.Chain(6, 24, 64),
		mmdbcraft.Chain(4, 28, 31),
		mmdbcraft.Chain(6, 32, 128),
		mmdbcraft.Chain(4, 24, 1),
	} {
		f.Add(c.Bytes())
	}
	probes := []netip.Addr{
		netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::"), netip.MustParseAddr("2002:c612:101::1"),
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		type loaded struct {
			g   *geoFile
			err error
		}
		done := make(chan loaded, 1)
		go func() {
			g, err := parseGeoFile(context.Background(), raw)
			done <- loaded{g, err}
		}()
		var l loaded
		select {
		case l = <-done:
		case <-time.After(5 * time.Second):
			stacks := make([]byte, 1<<20)
			t.Fatalf("loading %d bytes did not end within 5s:\n%s", len(raw), stacks[:runtime.Stack(stacks, true)])
		}
		g, err := l.g, l.err
		if err != nil {
			return
		}
		db := &geoDB{sources: []*geoSource{{path: "fuzz.mmdb", gen: new(atomic.Uint64)}}}
		db.sources[0].current.Store(g)
		for _, a := range probes {
			loc := db.locate(a)
			c := coordinates{lat: loc.lat, lon: loc.lon, hasLat: true, hasLon: true}
			if loc.located && !c.complete() {
				t.Fatalf("%s located at %v,%v", a, loc.lat, loc.lon)
			}
		}
	})
}
