package test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// externalPrograms are the programs the black-box tests run besides
// bin/coredns, with the Debian package of each; build/deps.sh (which
// `make test` runs first) installs them.
var externalPrograms = []struct{ name, pkg string }{
	{"dig", "bind9-dnsutils"},
	{"unbound", "unbound"},
	{"pdns_recursor", "pdns-recursor"},
}

// TestMain checks once that every program the tests start is there, so that a
// missing one is one line naming it and its package, not dozens of failures
// of `executable file not found` (or a skip nobody sees).
func TestMain(m *testing.M) {
	if missing := missingPrograms(); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "test: missing %s; `make test` installs and builds them\n", strings.Join(missing, ", "))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// missingPrograms returns each missing program as "NAME (Debian PACKAGE)",
// and bin/coredns when it has not been built.
func missingPrograms() []string {
	// The resolvers install into /usr/sbin, which is not on every user's PATH.
	os.Setenv("PATH", os.Getenv("PATH")+string(os.PathListSeparator)+"/usr/sbin"+string(os.PathListSeparator)+"/sbin")
	var missing []string
	for _, p := range externalPrograms {
		if _, err := exec.LookPath(p.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian %s)", p.name, p.pkg))
		}
	}
	if _, err := os.Stat(binary); err != nil {
		missing = append(missing, "bin/coredns (make build)")
	}
	return missing
}
