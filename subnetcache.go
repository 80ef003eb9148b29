package georoute

import (
	"math/rand/v2"
	"sync/atomic"
)

// subnetCache remembers where the database puts each IPv4 /24 a query came
// from, so that a client seen before skips the walk of the search tree:
// resolvers send IPv4 ECS as /24s, and in a file as large as DB-IP every
// walk is two dozen cache misses. It is 4-way set associative and holds its
// entries inline, one cache line per set: a hit reads one line of the
// table and the record's place, which every /24 of a city shares; a
// direct-mapped table of pointers to entries thrashed on colliding /24s
// and missed twice per hit.
//
// Only a /24 that lies inside one network of every file consulted is
// remembered: every address in it gets the same result, SCOPE included.
// The generation ties an entry to the database files it was looked up in,
// so a swap retires every entry at once.
type subnetCache struct {
	sets [subnetSets]subnetSet
}

// subnetSets is the number of sets: 2^15 sets of 4 ways hold 131,072 /24s
// in 2 MiB.
const subnetSets = 1 << 15

type subnetSet [4]subnetWay

// subnetWay is one entry. Readers take no lock: a writer first claims the
// way by swapping its key for subnetWriting, then stores the place, then
// the new key, and a reader trusts the place only when it reads the same
// valid key before and after it.
type subnetWay struct {
	key   atomic.Uint64
	place atomic.Pointer[place]
}

// A key is the low 32 bits of the database generation, then subnetValid,
// the network's prefix length (0..24) and the /24's 24 bits.
const (
	subnetValid   = 1 << 31
	subnetWriting = 1 << 30
	// subnetMatch are the bits a lookup compares: all but the prefix.
	subnetMatch = ^uint64(0x3f << 24)
)

func subnetKey(net24 uint32, gen uint64, prefix int) uint64 {
	return gen<<32 | subnetValid | uint64(prefix)<<24 | uint64(net24)
}

func (s *subnetCache) set(net24 uint32) *subnetSet {
	return &s.sets[(net24*0x9E3779B1)>>(32-15)]
}

// get returns the place and prefix length of net24 in generation gen.
func (s *subnetCache) get(net24 uint32, gen uint64) (p *place, prefix int, ok bool) {
	want := subnetKey(net24, gen, 0)
	set := s.set(net24)
	for i := range set {
		w := &set[i]
		k := w.key.Load()
		if k&subnetMatch != want {
			continue
		}
		p = w.place.Load()
		if w.key.Load() != k {
			return nil, 0, false // rewritten meanwhile: a miss
		}
		return p, int(k>>24) & 0x3f, true
	}
	return nil, 0, false
}

// put remembers net24's place in generation gen, in a free or stale way
// of its set, else in a random one; it gives up when another writer holds
// that way (the next query of the /24 tries again).
func (s *subnetCache) put(net24 uint32, gen uint64, prefix int, p *place) {
	set := s.set(net24)
	victim := &set[rand.Uint32()&3]
	for i := range set {
		if k := set[i].key.Load(); k&subnetValid == 0 && k != subnetWriting || uint32(k>>32) != uint32(gen) {
			victim = &set[i]
			break
		}
	}
	old := victim.key.Load()
	if old == subnetWriting || !victim.key.CompareAndSwap(old, subnetWriting) {
		return
	}
	victim.place.Store(p)
	victim.key.Store(subnetKey(net24, gen, prefix))
}
