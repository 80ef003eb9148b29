package georoute

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// The merge engine behind the resolver-optimal SCOPE (design §5): for one
// family, one set of eligible pops, `answers` N and the overrides, it walks
// the database's networks in address order and merges neighbours that get
// the same answer into the widest aligned blocks, as gdnsd does at load
// time, but for the health and steering of this moment.

// scopeLeaf is one network of a database file: where it starts, its prefix
// length in the family's own bits, and the record it leads to.
type scopeLeaf struct {
	start  u128
	bits   int
	offset uintptr
	found  bool
}

// scopeLeaves yields the networks of f that hold the family's addresses, in
// address order, networks without data included, so that they cover the
// space (IPv6: but for the IPv4 subtree at ::/96 and its aliases, which
// native IPv6 clients hardly ever fall into; they are left out, and an
// address in a gap is never merged). It walks the file's search tree with
// walkTree, which is bounded whatever the file's bytes say; yield returning
// false stops the walk.
func scopeLeaves(f *geoFile, family int, yield func(scopeLeaf) bool) error {
	ipv4Space := netip.PrefixFrom(netip.IPv6Unspecified(), 96)
	err := walkTree(f.raw, f.reader.Metadata, func(p netip.Prefix, off uintptr, found bool) error {
		leaf := scopeLeaf{offset: off, found: found}
		switch {
		case family == 4 && p.Addr().Is4():
			leaf.start, leaf.bits = u128Of(p.Addr()), p.Bits()
		case family == 4 && p.Bits() <= 96 && p.Contains(ipv4Space.Addr()):
			// The whole IPv4 subtree lies inside one network of an IPv6
			// tree (a file with no IPv4 data).
			leaf.start, leaf.bits = u128{}, 0
		case family == 6 && p.Addr().Is6():
			leaf.start, leaf.bits = u128Of(p.Addr()), p.Bits()
		default:
			return nil
		}
		if !yield(leaf) {
			return errScopeStop
		}
		return nil
	})
	if errors.Is(err, errScopeStop) {
		return nil
	}
	return err
}

var errScopeStop = errors.New("walk stopped")

// scopeSite is an eligible pop of the answer a view is built for.
type scopeSite struct {
	rank int
	at   point
}

// scopeRule is an override rule as the view sees it: its network and the
// ranks of its listed pops that are eligible, in the listed order.
type scopeRule struct {
	prefix netip.Prefix
	listed []int
}

// scopeSpec is everything an answer depends on besides the client's place:
// the family, the eligible pops, `answers` N and the override rules.
type scopeSpec struct {
	family int
	sites  []scopeSite // in rank order
	n      int
	rules  []scopeRule
}

// scopeBlock is a block of the merged view and the class (answer) of every
// address in it.
type scopeBlock struct {
	start u128
	bits  uint8
	class uint32
}

// scopeMerge computes the maximal uniform blocks of db for spec. Networks
// that cannot be located (in the first file that covers the family: later
// files are consulted only for what it cannot locate, and such addresses
// are left unmerged) and special-purpose blocks bound the merged blocks, as
// do override networks.
func scopeMerge(ctx context.Context, db *geoDB, spec scopeSpec) (*scopeView, error) {
	var f *geoFile
	for _, src := range db.sources {
		if cur := src.current.Load(); spec.family == 4 || cur.ipVersion == 6 {
			f = cur
			break
		}
	}
	m := newScopeMerger(spec)
	m.file = f
	cuts := m.cutPieces()
	next := 0
	emit := func(l scopeLeaf) {
		// Both the leaves and the cut pieces partition the space into
		// prefixes, so the current piece either holds the leaf or lies
		// inside it.
		end := l.start.lastOf(l.bits)
		for next < len(cuts) && cuts[next].start.lastOf(cuts[next].bits).cmp(l.start) < 0 {
			next++
		}
		for next < len(cuts) && cuts[next].start.cmp(end) <= 0 {
			c := cuts[next]
			if c.bits <= l.bits {
				m.push(l.start, l.bits, m.classOf(l, c.label))
				if c.start.lastOf(c.bits).cmp(end) == 0 {
					next++
				}
				return
			}
			m.push(c.start, c.bits, m.classOf(l, c.label))
			next++
		}
	}
	walked := 0
	if f == nil {
		emit(scopeLeaf{})
	} else if err := scopeLeaves(f, spec.family, func(l scopeLeaf) bool {
		emit(l)
		// A stopping instance does not wait for a whole walk.
		walked++
		return walked%(1<<16) != 0 || ctx.Err() == nil
	}); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.err != nil {
		return nil, m.err
	}
	return newScopeView(spec.family, m.out, m.classes), nil
}

// scopeMerger is the state of one merge.
type scopeMerger struct {
	spec scopeSpec
	// out is both the result and the merge stack: a block is merged with
	// the one before it while they are the two halves of one parent and
	// get the same answer.
	out []scopeBlock
	// classes are the distinct answers: the ranks of the chosen pops, in
	// order; classIDs finds them by their encoding (rule, ranks).
	classes  [][]int
	classIDs map[string]uint32
	// memo is the class of each (record, label) seen: computed once per
	// place, not per network. Its key packs the record's offset and the
	// label (see memoKey), to keep the map small on a large database.
	memo map[uint64]int32
	file *geoFile
	key  []byte
	rank []int
	err  error
}

// memoKey packs a record offset (below 2^44: files are far smaller) and
// a label (below 2^20 - 1 rules) into one map key; ok is false beyond.
func memoKey(offset uintptr, label int) (uint64, bool) {
	return uint64(offset)<<20 | uint64(label+2), uint64(offset) < 1<<44 && label+2 < 1<<20
}

func newScopeMerger(spec scopeSpec) *scopeMerger {
	return &scopeMerger{spec: spec, classIDs: map[string]uint32{}, memo: map[uint64]int32{}}
}

// push appends a piece of the space with its class (negative: not
// mergeable, left out) and merges it upwards.
func (m *scopeMerger) push(start u128, bits int, class int64) {
	if class < 0 {
		return
	}
	m.out = append(m.out, scopeBlock{start: start, bits: uint8(bits), class: uint32(class)})
	for n := len(m.out); n >= 2; n = len(m.out) {
		a, b := m.out[n-2], m.out[n-1]
		if a.bits != b.bits || a.bits == 0 || a.class != b.class || a.start.bitAt(int(a.bits)-1) != 0 || a.start.withBit(int(a.bits)-1) != b.start {
			return
		}
		m.out = m.out[:n-1]
		m.out[n-2].bits--
	}
}

// classOf returns the class of leaf l under label, or -1 when the answer
// there is not one the view can vouch for (special-purpose, not located).
func (m *scopeMerger) classOf(l scopeLeaf, label int) int64 {
	if label == labelNever {
		return -1
	}
	n := m.spec.n
	var listed []int
	if label >= 0 {
		listed = m.spec.rules[label].listed
		if len(listed) >= n {
			// The override alone decides, wherever the client is and
			// whether or not the database locates it.
			return m.intern(label, listed[:n])
		}
	}
	if !l.found {
		return -1
	}
	k, memo := memoKey(l.offset, label)
	if c, ok := m.memo[k]; ok && memo {
		return int64(c)
	}
	c := int64(-1)
	if at, ok := m.place(l); ok {
		ranks := append(m.rank[:0], listed...)
		ranks = nearestRanks(m.spec.sites, at, n, ranks)
		m.rank = ranks
		c = m.intern(label, ranks)
	}
	if memo {
		m.memo[k] = int32(c)
	}
	return c
}

// place decodes where the record of l puts its addresses, exactly as a
// query's lookup does (placeCache.get), so that both rank pops alike.
func (m *scopeMerger) place(l scopeLeaf) (point, bool) {
	var c coordinates
	if err := m.file.reader.LookupOffset(l.offset).Decode(&c); err != nil {
		m.err = errors.Join(m.err, fmt.Errorf("record at %d: %w", l.offset, err))
		return point{}, false
	}
	if !c.complete() {
		return point{}, false
	}
	return pointAt(c.lat, c.lon), true
}

// nearestRanks appends to ranks (which holds the pops already chosen, by an
// override) the ranks of the nearest other sites to at until it holds n,
// nearest first, equidistant ones in rank order: the order of nearest.
func nearestRanks(sites []scopeSite, at point, n int, ranks []int) []int {
	chosen := len(ranks)
	want := n - chosen
	if want <= 0 {
		return ranks
	}
	var topBuf [8]siteScore
	top := topBuf[:0]
	for _, s := range sites {
		if slices.Contains(ranks[:chosen], s.rank) {
			continue
		}
		c := siteScore{near: at.closeness(s.at), site: s.rank}
		if len(top) == want && !c.nearer(top[want-1]) {
			continue
		}
		top = rankIn(top, c, want)
	}
	for _, t := range top {
		ranks = append(ranks, t.site)
	}
	return ranks
}

// intern returns the id of the class (label, ranks). A rule's answers are
// kept apart from the same pops reached by distance: merged blocks never
// cross an override network's edge.
func (m *scopeMerger) intern(label int, ranks []int) int64 {
	k := m.key[:0]
	k = fmt.Appendf(k, "%d", label)
	for _, r := range ranks {
		k = append(k, ' ', byte(r>>16), byte(r>>8), byte(r))
	}
	m.key = k
	if id, ok := m.classIDs[string(k)]; ok {
		return int64(id)
	}
	id := uint32(len(m.classes))
	m.classIDs[string(k)] = id
	m.classes = append(m.classes, slices.Clone(ranks))
	return int64(id)
}
