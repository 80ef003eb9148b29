package georoute

import (
	"sync"
	"testing"
)

// Five /24s of one set still find their places: the set keeps four, and
// whichever was evicted is looked up again, never answered with another
// /24's place.
func TestSubnetCacheSetsAndEviction(t *testing.T) {
	var c subnetCache
	same := subnetTestOneSet(&c, 5)
	places := make([]place, len(same))
	for i, n := range same {
		places[i].lat = float64(i)
		c.put(n, 7, 16+i, &places[i])
	}
	hits := 0
	for i, n := range same {
		p, prefix, ok := c.get(n, 7)
		if !ok {
			continue
		}
		hits++
		if p != &places[i] || prefix != 16+i {
			t.Errorf("/24 %d: place %v prefix %d; want its own (lat %d, prefix %d)", n, p, prefix, i, 16+i)
		}
	}
	if hits != 4 {
		t.Errorf("%d of 5 /24s of one 4-way set found; want 4", hits)
	}
	if _, _, ok := c.get(same[0], 8); ok {
		t.Error("an entry of generation 7 was found in generation 8")
	}
	// A new generation's entry goes into a stale way, not over a current one.
	c.put(same[0], 8, 20, &places[0])
	if _, _, ok := c.get(same[0], 8); !ok {
		t.Error("the generation 8 entry was not kept")
	}
}

// Readers and writers on one set never see a /24 with another's place
// (go test -race checks the accesses).
func TestSubnetCacheConcurrent(t *testing.T) {
	var c subnetCache
	same := subnetTestOneSet(&c, 8)
	places := make(map[uint32]*place)
	for i, n := range same {
		places[n] = &place{lat: float64(i)}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				n := same[(i+w)%len(same)]
				if p, prefix, ok := c.get(n, 1); ok && (p != places[n] || prefix != int(n%25)) {
					t.Errorf("/24 %d got place %v prefix %d", n, p, prefix)
					return
				}
				c.put(n, 1, int(n%25), places[n])
			}
		}()
	}
	wg.Wait()
}

// subnetTestOneSet returns n /24s that share a set of c.
func subnetTestOneSet(c *subnetCache, n int) []uint32 {
	var same []uint32
	for net24 := uint32(0); len(same) < n; net24++ {
		if c.set(net24) == c.set(0) {
			same = append(same, net24)
		}
	}
	return same
}

// A way written again, even with the same key, changes its version: a
// reader that read the key before and after the place can tell the way
// was rewritten in between (and would otherwise take the place of a /24
// written and replaced meanwhile).
func TestSubnetCacheRewriteAdvancesVersion(t *testing.T) {
	var c subnetCache
	a, b := &place{lat: 1}, &place{lat: 2}
	c.put(5, 3, 24, a)
	way := func() *subnetWay {
		for i := range c.set(5) {
			if w := &c.set(5)[i]; w.key.Load()&subnetValid != 0 {
				return w
			}
		}
		t.Fatal("no way holds the /24")
		return nil
	}
	w, before := way(), way().key.Load()
	c.put(5, 3, 24, b)
	if way() != w {
		t.Fatal("the /24 was written into a second way of its set")
	}
	if after := w.key.Load(); after == before || after&subnetMatch != before&subnetMatch {
		t.Fatalf("key %#x after rewriting %#x; want the same /24 and generation, another version", after, before)
	}
	if p, _, ok := c.get(5, 3); !ok || p != b {
		t.Fatalf("get = %v %v; want the new place", p, ok)
	}
}
