package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The committed test databases are exactly what the generator makes of
// testdata/geo.csv, as `make testdb` runs it: nobody edits them by hand, and
// regenerating them changes nothing.
func TestCommittedDatabasesAreReproducible(t *testing.T) {
	root := filepath.Join("..", "..", "testdata")
	for _, tc := range []struct {
		file, layout string
		ip           int
	}{
		{"geo.mmdb", "city", 6},
		{"geo-flat-v4.mmdb", "flat", 4},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), tc.file)
			if err := run(filepath.Join(root, "geo.csv"), out, tc.layout, tc.ip, 1767225600); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(root, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("testdata/%s differs from what mmdbgen makes of geo.csv (%d vs %d bytes): run make testdb", tc.file, len(want), len(got))
			}
		})
	}
}
