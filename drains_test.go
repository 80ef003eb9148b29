package georoute

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// drainTest is one server's view of a state file.
type drainTest struct {
	pops []*pop
	byID map[string]*pop
	set  atomic.Pointer[drainSet]
	d    *drainControl
}

func newDrainTest(t *testing.T, store textStore) *drainTest {
	t.Helper()
	dt := &drainTest{}
	dt.pops, dt.byID = steerTestPops()
	dt.d = newDrainControl(dt.pops, store, &dt.set)
	if err := dt.d.load(); err != nil {
		t.Fatal(err)
	}
	dt.d.start()
	t.Cleanup(dt.d.stop)
	return dt
}

// drained lists the drained pops as the decision sees them.
func (dt *drainTest) drained() string {
	var ids []string
	for _, p := range dt.pops {
		if dt.set.Load().has(p.rank) {
			ids = append(ids, p.id)
		}
	}
	return strings.Join(ids, " ")
}

func (dt *drainTest) drain(t *testing.T, id string, until time.Time, reason string) {
	t.Helper()
	if err := dt.d.change(dt.byID[id], &drainEntry{id: id, until: until, reason: reason}, nil); err != nil {
		t.Fatal(err)
	}
}

func drainGauge(t *testing.T, id string) float64 {
	t.Helper()
	var m dto.Metric
	if err := popDrained.WithLabelValues(id).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".edit", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".edit", path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDrainsInAStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	a := newDrainTest(t, fileStore{path: path})
	b := newDrainTest(t, fileStore{path: path})

	t.Run("a missing state file drains nothing", func(t *testing.T) {
		if a.set.Load() != nil || a.drained() != "" {
			t.Fatalf("drained: %q", a.drained())
		}
	})
	t.Run("a drain is published at once and written to the file", func(t *testing.T) {
		a.drain(t, "lhr", time.Time{}, "fibre cut")
		if got := a.drained(); got != "lhr" {
			t.Fatalf("drained %q", got)
		}
		if got := readFile(t, path); !strings.HasSuffix(got, "\nlhr fibre cut\n") {
			t.Fatalf("file:\n%s", got)
		}
	})
	t.Run("another server sharing the file follows at its next poll", func(t *testing.T) {
		if b.drained() != "" {
			t.Fatal("b drained before polling")
		}
		b.d.poll()
		if got := b.drained(); got != "lhr" {
			t.Fatalf("b drained %q", got)
		}
		// b started last, so it owns the pop_drained series.
		if drainGauge(t, "lhr") != 1 || drainGauge(t, "nyc") != 0 {
			t.Fatal("pop_drained does not show the drain")
		}
	})
	t.Run("a change made since the last poll is kept when writing", func(t *testing.T) {
		// A person adds nrt; a drains nyc before its poll has seen that.
		writeFileAtomic(t, path, readFile(t, path)+"nrt by hand\n")
		a.drain(t, "nyc", time.Time{}, "")
		got := readFile(t, path)
		for _, line := range []string{"lhr fibre cut", "nrt by hand", "nyc"} {
			if !strings.Contains(got, "\n"+line+"\n") {
				t.Fatalf("line %q lost:\n%s", line, got)
			}
		}
		if a.drained() != "nyc lhr nrt" {
			t.Fatalf("a drained %q", a.drained())
		}
	})
	t.Run("a restore removes the line and is followed by the other server", func(t *testing.T) {
		if err := b.d.change(b.byID["nrt"], nil, nil); err != nil {
			t.Fatal(err)
		}
		a.d.poll()
		if a.drained() != "nyc lhr" || b.drained() != "nyc lhr" {
			t.Fatalf("a %q, b %q", a.drained(), b.drained())
		}
	})
	t.Run("an unknown id is logged once, ignored, and kept in the file", func(t *testing.T) {
		writeFileAtomic(t, path, readFile(t, path)+"fra other block\n")
		a.d.poll()
		a.d.poll()
		if !a.d.warned["fra"] || a.drained() != "nyc lhr" {
			t.Fatalf("warned %v, drained %q", a.d.warned, a.drained())
		}
		a.drain(t, "nrt", time.Time{}, "")
		if !strings.Contains(readFile(t, path), "\nfra other block\n") {
			t.Fatal("another block's drain was dropped")
		}
		if err := a.d.change(a.byID["nrt"], nil, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a file that does not parse keeps the drains, counted once", func(t *testing.T) {
		good := readFile(t, path)
		before := geodbTestCounter(t, stateReloadError)
		writeFileAtomic(t, path, good+"nrt until soon\n")
		a.d.poll()
		a.d.poll()
		if a.drained() != "nyc lhr" {
			t.Fatalf("drained %q", a.drained())
		}
		if n := geodbTestCounter(t, stateReloadError) - before; n != 1 {
			t.Fatalf("counted %v times", n)
		}
		if !strings.HasPrefix(a.d.watch.failed, path+":") {
			t.Fatalf("error %q does not name file:line", a.d.watch.failed)
		}
		t.Run("and the admin endpoint refuses to write over it", func(t *testing.T) {
			err := a.d.change(a.byID["nrt"], &drainEntry{id: "nrt"}, nil)
			if !errors.Is(err, errStateBroken) {
				t.Fatalf("got %v", err)
			}
			if readFile(t, path) != good+"nrt until soon\n" {
				t.Fatal("the broken file was changed")
			}
		})
		writeFileAtomic(t, path, good)
		a.d.poll()
		if a.d.watch.failed != "" {
			t.Fatalf("still failed: %s", a.d.watch.failed)
		}
	})
	t.Run("a refusing guard changes nothing", func(t *testing.T) {
		before := readFile(t, path)
		no := errors.New("no")
		if err := a.d.change(a.byID["nrt"], &drainEntry{id: "nrt"}, func(func(*pop) bool) error { return no }); err != no {
			t.Fatalf("got %v", err)
		}
		if readFile(t, path) != before || a.drained() != "nyc lhr" {
			t.Fatal("state changed")
		}
	})
	t.Run("a drain survives a restart", func(t *testing.T) {
		c := newDrainTest(t, fileStore{path: path})
		if c.drained() != "nyc lhr" {
			t.Fatalf("drained %q", c.drained())
		}
	})
	t.Run("a state file that does not parse stops start-up", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "state")
		writeFileAtomic(t, bad, "lhr\nlhr\n")
		var set atomic.Pointer[drainSet]
		pops, _ := steerTestPops()
		err := newDrainControl(pops, fileStore{path: bad}, &set).load()
		if err == nil || !strings.Contains(err.Error(), bad+":2 - pop lhr already listed") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestExpiringDrainEndsByItself(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	a := newDrainTest(t, fileStore{path: path})
	a.drain(t, "lhr", time.Now().Add(300*time.Millisecond), "short")
	a.drain(t, "nrt", time.Now().Add(time.Hour), "long")
	if a.drained() != "lhr nrt" {
		t.Fatalf("drained %q", a.drained())
	}
	// No poll, no file change: the timer ends it.
	deadline := time.Now().Add(2 * time.Second)
	for a.drained() != "nrt" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if a.drained() != "nrt" {
		t.Fatalf("drained %q after the drain of lhr ended", a.drained())
	}
	if _, on := a.d.drained(a.byID["lhr"]); on {
		t.Fatal("lhr still reported drained")
	}
	if drainGauge(t, "lhr") != 0 {
		t.Fatal("pop_drained still 1")
	}
	t.Run("a drain over already when read is not in force", func(t *testing.T) {
		writeFileAtomic(t, path, "nyc until 2020-01-01T00:00:00Z\n")
		a.d.poll()
		if a.drained() != "" {
			t.Fatalf("drained %q", a.drained())
		}
	})
}

func TestDrainSeriesOnlyFromStartedInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	serving := newDrainTest(t, fileStore{path: path})
	// A reload whose load is discarded after georoute's parse (another
	// plugin's error): its instance is loaded but never started.
	pops, _ := steerTestPops()
	discarded := newDrainControl(pops, fileStore{path: path}, new(atomic.Pointer[drainSet]))
	if err := discarded.load(); err != nil {
		t.Fatal(err)
	}
	serving.drain(t, "nrt", time.Time{}, "")
	if drainGauge(t, "nrt") != 1 {
		t.Fatal("the serving instance's drain is not in pop_drained")
	}
	serving.d.change(serving.byID["nrt"], nil, nil)
	if drainGauge(t, "nrt") != 0 {
		t.Fatal("the serving instance's restore is not in pop_drained")
	}
}

func TestDrainsWithoutStateLiveInMemoryAcrossReloads(t *testing.T) {
	store := memoryStore{key: t.Name()}
	old := newDrainTest(t, store)
	old.drain(t, "lhr", time.Time{}, "")
	// A Corefile reload: the new instance starts while the old one serves.
	fresh := newDrainTest(t, store)
	if fresh.drained() != "lhr" {
		t.Fatalf("new instance drained %q", fresh.drained())
	}
	if err := fresh.d.change(fresh.byID["lhr"], nil, nil); err != nil {
		t.Fatal(err)
	}
	old.d.poll()
	if old.drained() != "" {
		t.Fatalf("old instance drained %q", old.drained())
	}
	other := newDrainTest(t, memoryStore{key: t.Name() + " other block"})
	other.drain(t, "nyc", time.Time{}, "")
	if fresh.d.poll(); fresh.drained() != "" {
		t.Fatal("another server block's drain leaked")
	}
}
