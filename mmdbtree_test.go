package georoute

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georoute/georoute/internal/mmdbcraft"
	"github.com/oschwald/maxminddb-golang/v2"
)

// mmdbtreeTestLeaf is one leaf walkTree reported.
type mmdbtreeTestLeaf struct {
	prefix netip.Prefix
	offset uintptr
	found  bool
}

func (l mmdbtreeTestLeaf) String() string {
	if !l.found {
		return l.prefix.String() + " -"
	}
	return fmt.Sprintf("%s @%d", l.prefix, l.offset)
}

// mmdbtreeTestWalk walks raw and returns its leaves, or the walk's error.
func mmdbtreeTestWalk(tb testing.TB, raw []byte) ([]mmdbtreeTestLeaf, error) {
	tb.Helper()
	r, err := maxminddb.OpenBytes(raw)
	if err != nil {
		tb.Fatal(err)
	}
	var leaves []mmdbtreeTestLeaf
	err = walkTree(raw, r.Metadata, func(p netip.Prefix, off uintptr, found bool) error {
		leaves = append(leaves, mmdbtreeTestLeaf{p, off, found})
		return nil
	})
	return leaves, err
}

func TestWalkTreeMatchesTheLibrarysNetworks(t *testing.T) {
	dir := t.TempDir()
	places := []geodbTestPlace{
		{network: "198.18.1.0/24", lat: 40.7128, lon: -74.0060},
		{network: "203.0.113.128/25", lat: 51.5074, lon: -0.1278},
		{network: "2001:db8:1::/48", lat: 35.6762, lon: 139.6503},
		{network: "2001:db8:2::/47", lat: 48.8566, lon: 2.3522},
	}
	files := []string{geodbTestCity, geodbTestFlat}
	for _, v := range []int{4, 6} {
		for _, size := range []int{24, 28, 32} {
			path := filepath.Join(dir, fmt.Sprintf("v%d-%d.mmdb", v, size))
			ps := places
			if v == 4 {
				ps = places[:2]
			}
			// An IPv6 file gets MaxMind's aliases of the IPv4 subtree.
			geodbTestWriteWith(t, path, "flat", v, size, ps...)
			files = append(files, path)
		}
	}
	for _, path := range files {
		t.Run(filepath.Base(path)+" yields the networks of Networks() in order", func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mmdbtreeTestWalk(t, raw)
			if err != nil {
				t.Fatal(err)
			}
			r, err := maxminddb.OpenBytes(raw)
			if err != nil {
				t.Fatal(err)
			}
			var want []mmdbtreeTestLeaf
			for res := range r.Networks(maxminddb.IncludeNetworksWithoutData()) {
				if err := res.Err(); err != nil {
					t.Fatal(err)
				}
				want = append(want, mmdbtreeTestLeaf{res.Prefix(), res.Offset(), res.Found()})
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("walkTree:\n%v\nNetworks():\n%v", got, want)
			}
		})
	}
}

func TestWalkTreeRefusesWhatIsNotABoundedTree(t *testing.T) {
	place := mmdbcraft.Place(50.0379, 8.5622)
	tests := []struct {
		name string
		file mmdbcraft.File
		want string
	}{
		{"a DAG of 64 shared nodes (2^64 paths) in an IPv6 file", mmdbcraft.Chain(6, 24, 64), "search tree is not a tree: node 63 reached twice"},
		{"a DAG in an IPv4 file with 28-bit records", mmdbcraft.Chain(4, 28, 20), "node 19 reached twice"},
		{"a DAG with 32-bit records", mmdbcraft.Chain(6, 32, 40), "node 39 reached twice"},
		{"a record pointing back at the root", mmdbcraft.File{IPVersion: 4, RecordSize: 24, Data: place,
			Nodes: [][2]uint64{{1, mmdbcraft.Pointer(2, 0)}, {0, 2}}}, "node 0 reached twice"},
		{"a chain deeper than 32 bits in an IPv4 file", mmdbcraft.File{IPVersion: 4, RecordSize: 24, Data: place,
			Nodes: mmdbtreeTestLine(33, place)}, "search tree deeper than 32 bits"},
		{"a record past the data section", mmdbcraft.File{IPVersion: 6, RecordSize: 24, Data: place,
			Nodes: [][2]uint64{{mmdbcraft.Pointer(1, 0), mmdbcraft.Pointer(1, len(place))}}}, "points past the data section"},
		{"a record into the separator", mmdbcraft.File{IPVersion: 6, RecordSize: 24, Data: place,
			Nodes: [][2]uint64{{mmdbcraft.Pointer(1, 0), 5}}}, "data section separator"},
		{"an alias of the IPv4 subtree from inside it", mmdbtreeTestIPv4SelfAlias(place), "reached twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			begin := time.Now()
			_, err := mmdbtreeTestWalk(t, tc.file.Bytes())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("walkTree: %v; want an error with %q", err, tc.want)
			}
			if d := time.Since(begin); d > time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

// mmdbtreeTestLine is a tree of n nodes, each the left child of the one
// before, the last one leading to the record.
func mmdbtreeTestLine(n int, place []byte) [][2]uint64 {
	var nodes [][2]uint64
	for i := 0; i < n; i++ {
		next := uint64(i + 1)
		if i == n-1 {
			next = mmdbcraft.Pointer(n, 0)
		}
		nodes = append(nodes, [2]uint64{next, uint64(n)})
	}
	return nodes
}

// mmdbtreeTestIPv4SelfAlias is an IPv6 tree whose IPv4 subtree (node 96)
// points back at itself.
func mmdbtreeTestIPv4SelfAlias(place []byte) mmdbcraft.File {
	const n = 97
	nodes := mmdbtreeTestLine(n, place)
	nodes[96] = [2]uint64{mmdbcraft.Pointer(n, 0), 96}
	return mmdbcraft.File{IPVersion: 6, RecordSize: 24, Data: place, Nodes: nodes}
}

func TestWalkTreeSkipsAliasesOfTheIPv4Subtree(t *testing.T) {
	// Root: ::/1 leads down 95 more zero bits to the IPv4 subtree (node 96,
	// whose left half, 0.0.0.0/1, has a record); ::8000:0:0:0:0:0:0/1
	// (right of the root) is an alias of it, as 2002::/16 is in MaxMind's
	// files.
	place := mmdbcraft.Place(50.0379, 8.5622)
	const n = 97
	nodes := mmdbtreeTestLine(n, place)
	nodes[0][1] = 96
	nodes[96] = [2]uint64{mmdbcraft.Pointer(n, 0), n}
	leaves, err := mmdbtreeTestWalk(t, mmdbcraft.File{IPVersion: 6, RecordSize: 24, Data: place, Nodes: nodes}.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, l := range leaves {
		if l.found {
			found = append(found, l.String())
		}
	}
	if got := strings.Join(found, ", "); got != "0.0.0.0/1 @0" {
		t.Errorf("networks with data: %s; want only 0.0.0.0/1 (the alias not reported)", got)
	}
	if len(leaves) != 97 {
		t.Errorf("%d leaves; want 97 (95 empty on the zero path, the two IPv4 halves)", len(leaves))
	}
}

func TestWalkTreeWithoutNodesHasNoData(t *testing.T) {
	raw := mmdbcraft.File{IPVersion: 6, RecordSize: 24, Data: mmdbcraft.Place(1, 1)}.Bytes()
	var leaves []mmdbtreeTestLeaf
	err := walkTree(raw, maxminddb.Metadata{NodeCount: 0, RecordSize: 24, IPVersion: 6}, func(p netip.Prefix, off uintptr, found bool) error {
		leaves = append(leaves, mmdbtreeTestLeaf{p, off, found})
		return nil
	})
	if err != nil || fmt.Sprint(leaves) != "[::/0 -]" {
		t.Fatalf("leaves %v, err %v; want ::/0 without data", leaves, err)
	}
}
