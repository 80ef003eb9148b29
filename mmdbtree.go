package georoute

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// walkTree visits every leaf of an MMDB file's search tree in address
// order: each network the tree ends in, with the offset of its record in
// the data section (what Reader.LookupOffset takes), or found=false for a
// network the file has no data for. raw is the whole file and meta its
// metadata as the reader parsed it (node_count, record_size 24/28/32,
// ip_version 4/6).
//
// The walk is bounded by the file, whatever its bytes say: every node is
// visited at most once (a search tree whose records point at a node already
// visited is a DAG with up to 2^bits paths, and is refused as "not a
// tree"), no node lies deeper than the tree's bit count (32 or 128), and a
// record that points past the data section is an error. So it takes at
// most node_count steps and yields at most 2·node_count leaves.
//
// In an ip_version 6 file the IPv4 space is the subtree at ::/96 (the node
// reached by 96 zero bits from the root), and MaxMind's writer aliases
// other networks (::ffff:0:0/96, 2002::/16) onto that same node. Reaching
// it again from outside ::/96 is legal: the alias is skipped, neither
// walked twice nor reported, as maxminddb-golang's own Networks() does.
// Networks inside the IPv4 subtree are reported as plain IPv4 prefixes, in
// an ip_version 4 or 6 file alike.
//
// A non-nil error from visit ends the walk and is returned as is.
func walkTree(raw []byte, meta maxminddb.Metadata, visit func(prefix netip.Prefix, dataOffset uintptr, found bool) error) error {
	w, err := newTreeWalker(raw, meta, visit)
	if err != nil {
		return err
	}
	if w.nodeCount == 0 {
		// No node at all: the root record is "no data" for every address.
		return w.visit(w.prefix([16]byte{}, 0), 0, false)
	}
	return w.walk(0, [16]byte{}, 0)
}

// dataSectionSeparator is the 16 zero bytes between the search tree and
// the data section; a record value counts them.
const dataSectionSeparator = 16

// metadataMarker starts the metadata section at the end of every MMDB file.
var metadataMarker = []byte("\xAB\xCD\xEFMaxMind.com")

type treeWalker struct {
	raw        []byte
	nodeCount  uint64
	nodeBytes  uint64 // bytes per node: record_size/4
	recordSize uint
	bits       int    // 32 or 128
	dataSize   uint64 // bytes of the data section
	visited    []uint64
	// ipv4Root is the node at ::/96 of an ip_version 6 file; hasIPv4Root
	// is false when the zero path ends before depth 96 or the file is
	// ip_version 4. ipv4Entered turns true when the walk reaches it.
	ipv4Root    uint64
	hasIPv4Root bool
	ipv4Entered bool
	visit       func(netip.Prefix, uintptr, bool) error
}

func newTreeWalker(raw []byte, meta maxminddb.Metadata, visit func(netip.Prefix, uintptr, bool) error) (*treeWalker, error) {
	w := &treeWalker{raw: raw, nodeCount: uint64(meta.NodeCount), recordSize: meta.RecordSize, visit: visit}
	switch meta.RecordSize {
	case 24, 28, 32:
		w.nodeBytes = uint64(meta.RecordSize) / 4
	default:
		return nil, fmt.Errorf("record_size %d, expected 24, 28 or 32", meta.RecordSize)
	}
	switch meta.IPVersion {
	case 4:
		w.bits = 32
	case 6:
		w.bits = 128
	default:
		return nil, fmt.Errorf("ip_version %d, expected 4 or 6", meta.IPVersion)
	}
	treeSize := w.nodeCount * w.nodeBytes
	if w.nodeCount > uint64(len(raw)) || treeSize+dataSectionSeparator > uint64(len(raw)) {
		return nil, fmt.Errorf("node_count %d does not fit in a file of %d bytes", w.nodeCount, len(raw))
	}
	end := bytes.LastIndex(raw, metadataMarker)
	if end < 0 || uint64(end) < treeSize+dataSectionSeparator {
		return nil, fmt.Errorf("no data section between the search tree (%d nodes) and the metadata", w.nodeCount)
	}
	w.dataSize = uint64(end) - treeSize - dataSectionSeparator
	w.visited = make([]uint64, (w.nodeCount+63)/64)
	if meta.IPVersion == 6 {
		n := uint64(0)
		depth := 0
		for ; depth < 96 && n < w.nodeCount; depth++ {
			n, _ = w.records(n)
		}
		w.ipv4Root, w.hasIPv4Root = n, depth == 96 && n < w.nodeCount
	}
	return w, nil
}

// records reads the left and right record of node n (n < nodeCount).
func (w *treeWalker) records(n uint64) (left, right uint64) {
	b := w.raw[n*w.nodeBytes : (n+1)*w.nodeBytes]
	switch w.recordSize {
	case 24:
		return be(b[0:3]), be(b[3:6])
	case 28:
		return uint64(b[3]&0xF0)<<20 | be(b[0:3]), uint64(b[3]&0x0F)<<24 | be(b[4:7])
	default:
		return be(b[0:4]), be(b[4:8])
	}
}

func be(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// walk visits node n, which stands for the network of addr's first depth
// bits.
func (w *treeWalker) walk(n uint64, addr [16]byte, depth int) error {
	if w.visited[n/64]&(1<<(n%64)) != 0 {
		return fmt.Errorf("search tree is not a tree: node %d reached twice", n)
	}
	w.visited[n/64] |= 1 << (n % 64)
	left, right := w.records(n)
	for bit, rec := range [2]uint64{left, right} {
		child := addr
		if bit == 1 {
			child[depth/8] |= 0x80 >> (depth % 8)
		}
		if err := w.follow(n, rec, child, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// follow handles one record of node parent, leading to the network of
// addr's first depth bits.
func (w *treeWalker) follow(parent, rec uint64, addr [16]byte, depth int) error {
	switch {
	case rec < w.nodeCount:
		if w.hasIPv4Root && rec == w.ipv4Root {
			switch {
			case w.inIPv4Subtree(addr, depth):
				w.ipv4Entered = true
			case w.ipv4Entered:
				return nil // an alias of the IPv4 subtree, walked at ::/96
			}
		}
		if depth >= w.bits {
			return fmt.Errorf("search tree deeper than %d bits: node %d below node %d", w.bits, rec, parent)
		}
		return w.walk(rec, addr, depth)
	case rec == w.nodeCount:
		return w.visit(w.prefix(addr, depth), 0, false)
	case rec < w.nodeCount+dataSectionSeparator:
		return fmt.Errorf("node %d points into the data section separator (record %d)", parent, rec)
	}
	off := rec - w.nodeCount - dataSectionSeparator
	if off >= w.dataSize {
		return fmt.Errorf("node %d points past the data section (offset %d of %d bytes)", parent, off, w.dataSize)
	}
	return w.visit(w.prefix(addr, depth), uintptr(off), true)
}

// inIPv4Subtree reports whether the network lies inside ::/96 of an
// ip_version 6 file.
func (w *treeWalker) inIPv4Subtree(addr [16]byte, depth int) bool {
	return depth >= 96 && [12]byte(addr[:12]) == [12]byte{}
}

// prefix names the network of addr's first depth bits; IPv4 networks (all
// of an ip_version 4 file, ::/96 of an ip_version 6 one) as plain IPv4.
func (w *treeWalker) prefix(addr [16]byte, depth int) netip.Prefix {
	if w.bits == 32 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(addr[:4])), depth)
	}
	if w.inIPv4Subtree(addr, depth) {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(addr[12:])), depth-96)
	}
	return netip.PrefixFrom(netip.AddrFrom16(addr), depth)
}
