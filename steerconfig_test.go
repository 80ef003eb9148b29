package georoute

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSteering(t *testing.T) {
	paths := absCorefilePaths(t)
	dir := t.TempDir()
	files := map[string]string{
		"overrides":     "198.18.1.0/24 lhr\n",
		"bad-overrides": "# fine\n198.18.1.0/24 fra\n",
		"state":         "nrt until 2099-01-01T00:00:00Z kept\n",
		"bad-state":     "nrt\nnrt\n",
		"token":         "t0ken\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pops := "\tpop nyc 40.7128 -74.0060 192.0.2.10\n\tpop lhr 51.4700 -0.4543 198.51.100.10\n\tpop nrt 35.7720 140.3929 203.0.113.10\n"
	block := func(props string) string { return paths.expand("georoute {\n\tdb $DB\n" + props + pops + "}") }

	t.Run("every steering property, overrides before the pops they name, paths below root", func(t *testing.T) {
		g, err := parseTestCorefile(block("\toverride 198.18.2.0/24 nrt nyc\n\toverride ::ffff:198.18.3.0/120 lhr\n\toverrides overrides\n\tstate state\n\tadmin 0.0.0.0:18182 token\n\tmin_up 2\n"), nil, dir)
		if err != nil {
			t.Fatal(err)
		}
		table := g.steer.overrides.Load()
		for addr, want := range map[string]string{"198.18.2.1": "198.18.2.0/24 nrt nyc", "198.18.3.1": "198.18.3.0/24 lhr", "198.18.1.1": "198.18.1.0/24 lhr"} {
			if got := ruleIDs(table.match(netip.MustParseAddr(addr))); got != want {
				t.Errorf("%s: %s, want %s", addr, got, want)
			}
		}
		if !g.steer.drains.Load().has(2) || g.steer.drains.Load().has(1) {
			t.Error("the state file's drain of nrt is not in force")
		}
		a := g.steerRun.admin
		if a == nil || a.addr != "0.0.0.0:18182" || a.token == nil || a.minUp != 2 || a.explain == nil {
			t.Fatalf("admin %+v", a)
		}
		if g.steerRun.drains.watch.store.name() != filepath.Join(dir, "state") {
			t.Errorf("state at %s", g.steerRun.drains.watch.store.name())
		}
	})
	t.Run("without state, drains live in memory; without admin, no endpoint", func(t *testing.T) {
		g, err := parseTestCorefile(block(""), []string{"example.org:1053"}, dir)
		if err != nil {
			t.Fatal(err)
		}
		if g.steerRun.admin != nil || g.steerRun.drains.watch.store != (memoryStore{key: "example.org:1053"}) || g.steer.overrides.Load() != nil {
			t.Fatalf("steering %+v", g.steerRun)
		}
	})

	for _, tc := range []struct {
		name, props string
		line        int
		want        string
	}{
		{"an override to an unknown pop names its line", "\toverride 198.18.2.0/24 fra\n", 3, `override 198.18.2.0/24: "fra" is not a declared pop; expected one of nyc, lhr, nrt`},
		{"an override with host bits", "\tttl 5\n\toverride 198.18.2.1/24 nrt\n", 4, "has host bits set; expected 198.18.2.0/24"},
		{"an override without pops", "\toverride 198.18.2.0/24\n", 3, "override needs CIDR POP"},
		{"a missing overrides file", "\toverrides none\n", 3, "overrides: " + filepath.Join(dir, "none") + " does not exist"},
		{"an overrides file that does not parse", "\toverrides bad-overrides\n", 3, "overrides: " + filepath.Join(dir, "bad-overrides") + `:2 - override 198.18.1.0/24: "fra"`},
		{"a state file that does not parse", "\tstate bad-state\n", 3, "state: " + filepath.Join(dir, "bad-state") + ":2 - pop nrt already listed on line 1"},
		{"state given twice", "\tstate a\n\tstate b\n", 4, `"state" given twice`},
		{"state in a folder that does not exist", "\tstate nowhere/state\n", 3, "state " + filepath.Join(dir, "nowhere/state") + ": folder " + filepath.Join(dir, "nowhere") + " does not exist"},
		{"admin on every interface without a token", "\tadmin :8182\n", 3, `admin address ":8182" is not loopback and has no TOKEN-FILE`},
		{"admin with a missing token file", "\tadmin :8182 none\n", 3, "admin token file: open " + filepath.Join(dir, "none")},
		{"min_up above the pops", "\tmin_up 4\n", 3, "min_up 4 is more than the 3 pops of this block; expected at most 3"},
		{"min_up that is not a number", "\tmin_up two\n", 3, `min_up "two"; expected a whole number`},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			_, err := parseTestCorefile(block(tc.props), nil, dir)
			if err == nil {
				t.Fatal("accepted")
			}
			if prefix := fmt.Sprintf("Testfile:%d - Error during parsing: ", tc.line); !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want %q… %q", err, prefix, tc.want)
			}
		})
	}
}
