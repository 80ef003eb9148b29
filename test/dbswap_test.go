package test

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/georoute/georoute/internal/mmdbwrite"
)

const (
	londonSubnet = "198.18.2.0/24"
	lhrAddress   = "198.51.100.10"
	nrtAddress   = "203.0.113.10"
	// movedEpoch is the build time written into the replacement database.
	movedEpoch = 1780000000
)

// swapCorefile routes www.example.org with a database file the test owns,
// polled every 500 ms so that the tests need not wait for the default 5 s.
const swapCorefile = `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    prometheus {metrics}
    georoute www.example.org {
        db geo.mmdb
        reload 500ms
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
    }
    file {testdata}/example.org.zone
}
`

// movedDatabase writes, with the repository's own writer, the bundled
// database with the London test network standing in Tokyo.
func movedDatabase(t *testing.T) []byte {
	t.Helper()
	src, err := os.Open(filepath.Join(repoRoot, "testdata", "geo.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	places, err := mmdbwrite.ReadCSV(src)
	if err != nil {
		t.Fatal(err)
	}
	london := netip.MustParsePrefix(londonSubnet)
	i := slices.IndexFunc(places, func(p mmdbwrite.Place) bool { return p.Network == london })
	if i < 0 {
		t.Fatal("testdata/geo.csv no longer has the London network this test moves")
	}
	places[i].City, places[i].Country, places[i].Lat, places[i].Lon = "Tokyo", "JP", 35.6762, 139.6503
	var db bytes.Buffer
	opts := mmdbwrite.Options{Layout: "city", IPVersion: 6, Epoch: movedEpoch, Description: "georoute test database (fictional locations)"}
	if err := mmdbwrite.Write(&db, opts, places); err != nil {
		t.Fatal(err)
	}
	return db.Bytes()
}

// waitAnswer waits until the load's latest answer is want, for at most
// within.
func waitAnswer(t *testing.T, l *queryLoad, want string, within time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for time.Since(begin) < within {
		if l.lastAnswer() == want {
			return time.Since(begin)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the answer did not become %s within %s (still %s)", want, within, l.lastAnswer())
	return 0
}

// waitMetric waits until series is want, for at most within, and returns
// its value then. The server counts a swap and sets the build time after
// it returned the old copy's memory (debug.FreeOSMemory), so answers from
// the new file may come first; on a busy machine, by a few hundred ms.
func waitMetric(t *testing.T, s *server, series string, want float64, within time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := s.metric(series)
		if v == want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A changed database file is swapped in within 10 s without a failed query,
// whether it is replaced by rename or rewritten in place; a broken one keeps
// the old copy in service, is tried at every poll and logged once.
func TestDatabaseSwapUnderLoad(t *testing.T) {
	t.Parallel()
	original, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "geo.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	moved := movedDatabase(t)

	s := newServer(t, swapCorefile, nil)
	dbPath := filepath.Join(s.dir, "geo.mmdb")
	if err := os.WriteFile(dbPath, original, 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.waitUp(true)

	load := startQueryLoad(t, s.port, "www.example.org", londonSubnet)
	waitAnswer(t, load, lhrAddress, 5*time.Second)
	const errors = `coredns_georoute_db_reloads_total{result="error"}`
	const oks = `coredns_georoute_db_reloads_total{result="ok"}`

	t.Run("a file replaced by rename is swapped in within 10 s", func(t *testing.T) {
		tmp := dbPath + ".new"
		if err := os.WriteFile(tmp, moved, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dbPath); err != nil {
			t.Fatal(err)
		}
		took := waitAnswer(t, load, nrtAddress, 5*time.Second)
		t.Logf("swapped after %s", took.Round(100*time.Millisecond))
		if got := waitMetric(t, s, oks, 1, 2*time.Second); got != 1 {
			t.Errorf("%s = %v; want 1", oks, got)
		}
		if got := waitMetric(t, s, `coredns_georoute_db_build_timestamp_seconds{file="geo.mmdb"}`, movedEpoch, 2*time.Second); got != movedEpoch {
			t.Errorf("db_build_timestamp_seconds = %v; want the new file's %d", got, movedEpoch)
		}
	})

	t.Run("a file rewritten in place is swapped in once complete, the half-written one is refused", func(t *testing.T) {
		f, err := os.OpenFile(dbPath, os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		half := len(original) / 2
		if _, err := f.Write(original[:half]); err != nil {
			t.Fatal(err)
		}
		// Longer than a poll: the watcher sees the half-written file.
		time.Sleep(1500 * time.Millisecond)
		if got := load.lastAnswer(); got != nrtAddress {
			t.Errorf("during the half-written file the answer became %s; want the copy in service (%s)", got, nrtAddress)
		}
		// At least one poll saw it; one in a million may also catch the
		// instant between truncation and the first write.
		if got := s.metric(errors); got < 1 {
			t.Errorf("%s = %v after a half-written file; want at least 1", errors, got)
		}
		if _, err := f.Write(original[half:]); err != nil {
			t.Fatal(err)
		}
		f.Close()
		waitAnswer(t, load, lhrAddress, 5*time.Second)
		if got := waitMetric(t, s, oks, 2, 2*time.Second); got != 2 {
			t.Errorf("%s = %v; want 2", oks, got)
		}
	})

	t.Run("a corrupt file keeps the old database, is counted at every poll and logged once", func(t *testing.T) {
		before := s.metric(errors)
		logged := len(s.out.String())
		tmp := dbPath + ".new"
		if err := os.WriteFile(tmp, []byte("this is not a MaxMind database\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dbPath); err != nil {
			t.Fatal(err)
		}
		// Several polls.
		time.Sleep(2 * time.Second)
		if got := load.lastAnswer(); got != lhrAddress {
			t.Errorf("after a corrupt file the answer is %s; want the copy in service (%s)", got, lhrAddress)
		}
		if got := s.metric(errors); got < before+3 {
			t.Errorf("%s = %v; want at least %v: a bad file is tried, and counted, at every poll", errors, got, before+3)
		}
		if n := strings.Count(s.out.String()[logged:], "not reloaded"); n != 1 {
			t.Errorf("the log says 'not reloaded' %d times for one bad file; want once", n)
		}
	})

	load.check(t, 1000)
}
