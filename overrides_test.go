package georoute

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// steerTestPops are three pops as in the demo zone: nyc, lhr, nrt.
func steerTestPops() ([]*pop, map[string]*pop) {
	pops := []*pop{
		{id: "nyc", lat: 40.7128, lon: -74.006, rank: 0},
		{id: "lhr", lat: 51.47, lon: -0.4543, rank: 1},
		{id: "nrt", lat: 35.772, lon: 140.3929, rank: 2},
	}
	for i, s := range []string{"192.0.2.10", "198.51.100.10", "203.0.113.10"} {
		pops[i].addrs = []*popAddress{{pop: pops[i], addr: netip.MustParseAddr(s)}}
	}
	byID := map[string]*pop{}
	for _, p := range pops {
		byID[p.id] = p
	}
	return pops, byID
}

func ruleIDs(r *overrideRule) string {
	if r == nil {
		return "none"
	}
	ids := make([]string, len(r.pops))
	for i, p := range r.pops {
		ids[i] = p.id
	}
	return r.prefix.String() + " " + strings.Join(ids, " ")
}

func TestParseOverride(t *testing.T) {
	_, byID := steerTestPops()
	for _, tc := range []struct {
		name string
		args string
		want string // rule, or the start of the error
	}{
		{"an IPv4 network to one pop", "198.18.2.0/24 nyc", "198.18.2.0/24 nyc"},
		{"pops keep the listed order", "198.18.0.0/16 nrt lhr nyc", "198.18.0.0/16 nrt lhr nyc"},
		{"an IPv6 network", "2001:db8:200::/48 lhr", "2001:db8:200::/48 lhr"},
		{"an IPv4-mapped network stands for its IPv4 network", "::ffff:198.18.2.0/120 nrt", "198.18.2.0/24 nrt"},
		{"a single address", "198.18.2.7/32 nrt", "198.18.2.7/32 nrt"},
		{"host bits are refused", "198.18.2.1/24 nyc", "override 198.18.2.1/24 has host bits set; expected 198.18.2.0/24"},
		{"an address without length is not a CIDR", "198.18.2.1 nyc", `override "198.18.2.1" is not a CIDR`},
		{"an unknown pop is refused", "198.18.2.0/24 fra", `override 198.18.2.0/24: "fra" is not a declared pop; expected one of nyc, lhr, nrt`},
		{"pop ids are case-sensitive as declared", "198.18.2.0/24 LHR", `override 198.18.2.0/24: "LHR" is not a declared pop`},
		{"a pop listed twice is refused", "198.18.2.0/24 lhr lhr", "override 198.18.2.0/24 lists pop lhr twice"},
		{"a network without pops is refused", "198.18.2.0/24", "override needs CIDR POP..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseOverride(strings.Fields(tc.args), byID)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = ruleIDs(&r)
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOverridesFile(t *testing.T) {
	_, byID := steerTestPops()
	dir := t.TempDir()
	path := filepath.Join(dir, "overrides")
	write := func(s string) {
		t.Helper()
		// A rename gives the file a new inode, so the change is seen even
		// within one mtime tick.
		if err := os.WriteFile(path+".tmp", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	var table atomic.Pointer[overrideTable]
	inline := []overrideLine{{args: []string{"198.18.0.0/16", "nrt"}, file: "Corefile", line: 4}}
	write("# offices\n198.18.2.0/24 nyc lhr  # London office to New York\n\n2001:db8:200::/48 nrt\n")
	o, err := newOverrideSet(inline, path, byID, &table)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.load(); err != nil {
		t.Fatal(err)
	}
	match := func(addr string) string { return ruleIDs(table.Load().match(netip.MustParseAddr(addr))) }

	t.Run("the longest prefix wins across the Corefile and the file", func(t *testing.T) {
		for addr, want := range map[string]string{
			"198.18.2.9":      "198.18.2.0/24 nyc lhr",
			"198.18.3.9":      "198.18.0.0/16 nrt",
			"2001:db8:200::1": "2001:db8:200::/48 nrt",
			"192.0.2.1":       "none",
		} {
			if got := match(addr); got != want {
				t.Errorf("%s: got %q, want %q", addr, got, want)
			}
		}
	})
	t.Run("a change to the file is taken into service", func(t *testing.T) {
		write("198.18.2.0/24 lhr\n")
		o.poll()
		if got := match("198.18.2.9"); got != "198.18.2.0/24 lhr" {
			t.Fatalf("got %q", got)
		}
		if got := match("2001:db8:200::1"); got != "none" {
			t.Fatalf("a removed line still matches: %q", got)
		}
	})
	t.Run("a file that does not parse keeps the table and is counted once", func(t *testing.T) {
		before := geodbTestCounter(t, overridesReloadError)
		write("198.18.2.0/24 lhr\n198.18.9.0/24 fra\n")
		o.poll()
		o.poll()
		if got := match("198.18.2.9"); got != "198.18.2.0/24 lhr" {
			t.Fatalf("got %q", got)
		}
		if n := geodbTestCounter(t, overridesReloadError) - before; n != 1 {
			t.Fatalf("error counted %v times, want once", n)
		}
		if o.file.failed == "" || !strings.HasPrefix(o.file.failed, path+":2 - ") {
			t.Fatalf("error %q does not name file:line", o.file.failed)
		}
	})
	t.Run("a network of the Corefile given again in the file is refused", func(t *testing.T) {
		write("198.18.0.0/16 lhr\n")
		o.poll()
		if !strings.Contains(o.file.failed, "already given in the Corefile on Corefile:4") {
			t.Fatalf("got %q", o.file.failed)
		}
	})
	t.Run("a file that disappears keeps the table", func(t *testing.T) {
		os.Remove(path)
		o.poll()
		if got := match("198.18.2.9"); got != "198.18.2.0/24 lhr" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("a missing file is a config error at start-up", func(t *testing.T) {
		o2, _ := newOverrideSet(nil, filepath.Join(dir, "none"), byID, new(atomic.Pointer[overrideTable]))
		if err := o2.load(); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no overrides publish no table", func(t *testing.T) {
		var empty atomic.Pointer[overrideTable]
		o3, _ := newOverrideSet(nil, "", byID, &empty)
		if err := o3.load(); err != nil || empty.Load() != nil {
			t.Fatalf("got %v, %v", err, empty.Load())
		}
	})
	t.Run("an inline network given twice names both lines", func(t *testing.T) {
		lines := []overrideLine{
			{args: []string{"198.18.0.0/16", "nrt"}, file: "Corefile", line: 4},
			{args: []string{"198.18.0.0/16", "lhr"}, file: "Corefile", line: 7},
		}
		_, err := newOverrideSet(lines, "", byID, new(atomic.Pointer[overrideTable]))
		if err == nil || !strings.HasPrefix(err.Error(), "Corefile:7 - Error during parsing: override 198.18.0.0/16 already given on Corefile:4") {
			t.Fatalf("got %v", err)
		}
	})
}
