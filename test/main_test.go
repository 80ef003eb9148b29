package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	dir, err := copyBinaryForOthers()
	if err != nil {
		fmt.Fprintf(os.Stderr, "test: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// copyBinaryForOthers copies bin/coredns into a new folder every user can
// read, for the servers that run as another user (a checkout in a private
// folder is out of their reach), and returns the folder. It runs before any
// test starts a process: a process forked while the copy is open for
// writing holds it open until it execs, and starting the copy then fails
// with "text file busy" (golang/go#22315).
func copyBinaryForOthers() (string, error) {
	dir, err := os.MkdirTemp("", "georoute-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	var b []byte
	if err == nil {
		b, err = os.ReadFile(binary)
	}
	if err == nil {
		binaryForOthers = filepath.Join(dir, "coredns")
		err = os.WriteFile(binaryForOthers, b, 0o755)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("copying %s for servers run as another user: %v", binary, err)
	}
	return dir, nil
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
