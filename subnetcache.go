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
// way by setting subnetWriting in its key, then stores the place, then the
// new key with the way's version advanced, and a reader trusts the place
// only when it reads the same valid key before and after it. The version
// tells a way rewritten in between, even back to the same /24 (an ABA: the
// reader would otherwise take the place of the /24 written meanwhile).
type subnetWay struct {
	key   atomic.Uint64
	place atomic.Pointer[place]
}

// A key is, from the top, the low 24 bits of the database generation, the
// way's 8-bit version, subnetValid, subnetWriting, the network's prefix
// length (0..24) and the /24's 24 bits. A generation wraps after 16.7
// million swaps; a version after 256 writes of one way during one read of
// a few nanoseconds.
const (
	subnetValid   = 1 << 31
	subnetWriting = 1 << 30
	subnetVersion = 0xff << 32
	// subnetMatch are the bits a lookup compares: generation, valid,
	// writing and the /24.
	subnetMatch = ^uint64(subnetVersion | 0x3f<<24)
)

func subnetKey(net24 uint32, gen uint64, prefix int) uint64 {
	return gen<<40 | subnetValid | uint64(prefix)<<24 | uint64(net24)
}

// subnetGen is the generation bits of a key.
func subnetGen(k uint64) uint64 { return k >> 40 }

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

// put remembers net24's place in generation gen: in the way that holds
// the /24 already (of an older generation), else a free or stale way of
// its set, else a random one. It gives up when another writer holds that
// way (the next query of the /24 tries again).
func (s *subnetCache) put(net24 uint32, gen uint64, prefix int, p *place) {
	set := s.set(net24)
	victim := s.victim(set, net24, gen)
	old := victim.key.Load()
	if old&subnetWriting != 0 || !victim.key.CompareAndSwap(old, old|subnetWriting) {
		return
	}
	victim.place.Store(p)
	version := (old + 1<<32) & subnetVersion
	victim.key.Store(subnetKey(net24, gen, prefix) | version)
}

// victim is the way put writes net24 into.
func (s *subnetCache) victim(set *subnetSet, net24 uint32, gen uint64) *subnetWay {
	var free *subnetWay
	for i := range set {
		k := set[i].key.Load()
		if k&subnetValid != 0 && uint32(k)&(1<<24-1) == net24 {
			return &set[i]
		}
		if free == nil && (k&(subnetValid|subnetWriting) == 0 || subnetGen(k) != gen&(1<<24-1)) {
			free = &set[i]
		}
	}
	if free != nil {
		return free
	}
	return &set[rand.Uint32()&3]
}
