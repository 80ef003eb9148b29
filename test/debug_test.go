package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// debugBlock is the demo's georoute block with props added, for the
// example.org server block of the tests below.
func debugBlock(props string) string {
	return `    georoute www.example.org {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
        ` + props + `
    }
    file {testdata}/example.org.zone
`
}

// An explanation never reveals what the client could not get by asking:
// explain's sub-queries pass acl like the client's own queries.
func TestExplainPassesACL(t *testing.T) {
	t.Parallel()
	s := startServer(t, `example.org:{port} {
    bind 127.0.0.1
    acl {
        block type A net 127.0.0.0/8
    }
`+debugBlock("debug")+`}
`, nil)
	if r := s.query("www.example.org", "A"); r.status != "REFUSED" {
		t.Fatalf("A query status %s; want REFUSED by acl", r.status)
	}
	lines := explainLines(s.query("-c", "CH", "-t", "TXT", "www.example.org", "+subnet=198.18.4.0/24"))
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "A: REFUSED before georoute") {
		t.Errorf("explanation does not say acl refused A:\n%s", text)
	}
	if strings.Contains(text, "chosen: 198.51.100.10") || strings.Contains(text, "candidate 198.51.100.10") {
		t.Errorf("explanation reveals the A answer acl refuses:\n%s", text)
	}
	if !strings.Contains(text, "chosen: 2001:db8:2::10") {
		t.Errorf("explanation lacks the AAAA answer acl allows:\n%s", text)
	}
}

// debug CIDR... limits who may ask: everybody else is refused as by a
// server without debug.
func TestExplainOnlyForDebugNetworks(t *testing.T) {
	t.Parallel()
	s := startServer(t, "example.org:{port} {\n    bind 127.0.0.1\n"+debugBlock("debug 127.0.0.2/32")+"}\n", nil)
	if lines := explainLines(s.query("-c", "CH", "-t", "TXT", "www.example.org", "-b", "127.0.0.2")); len(lines) == 0 {
		t.Error("127.0.0.2 (in debug) got no explanation")
	}
	if r := s.query("-c", "CH", "-t", "TXT", "www.example.org", "-b", "127.0.0.3"); r.status != "REFUSED" {
		t.Errorf("127.0.0.3 (not in debug): status %s; want REFUSED", r.status)
	}
}

// debug opens the CH class of its listener; a reload that removes it
// closes the class again, for every block on the listener.
func TestReloadWithoutDebugClosesCH(t *testing.T) {
	t.Parallel()
	corefile := func(props string) string {
		return "example.org:{port} {\n    bind 127.0.0.1\n" + debugBlock(props) + "}\nwhoami.test:{port} {\n    bind 127.0.0.1\n    whoami\n}\n"
	}
	s := startServer(t, corefile("debug"), nil)
	if lines := explainLines(s.query("-c", "CH", "-t", "TXT", "www.example.org")); len(lines) == 0 {
		t.Fatal("no explanation with debug")
	}
	if err := os.WriteFile(filepath.Join(s.dir, "Corefile"), []byte(s.expand(corefile(""))), 0o644); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	waitReloads(t, s, 1)
	for _, q := range [][]string{{"-c", "CH", "-t", "TXT", "www.example.org"}, {"-c", "CH", "-t", "A", "whoami.test"}} {
		if r := s.query(q...); r.status != "REFUSED" {
			t.Errorf("after the reload without debug %v: status %s; want REFUSED as by plain CoreDNS", q, r.status)
		}
	}
}

// When another block on the listener opens CH (chaos), debug changes no
// CH answer of georoute's block but the explanation: georoute refuses
// only what the listener would have refused without it.
func TestDebugBesideChaosChangesNothingElse(t *testing.T) {
	t.Parallel()
	corefile := func(props string) string {
		return "example.org:{port} {\n    bind 127.0.0.1\n" + debugBlock(props) + "}\n.:{port} {\n    bind 127.0.0.1\n    chaos georoute-test\n}\n"
	}
	with := startServer(t, corefile("debug"), nil)
	without := startServer(t, corefile(""), nil)
	for _, q := range [][]string{{"-c", "CH", "-t", "TXT", "static.example.org"}, {"-c", "CH", "-t", "A", "www.example.org"}, {"-c", "CH", "-t", "TXT", "version.bind"}} {
		a, b := with.query(q...), without.query(q...)
		if a.status != b.status {
			t.Errorf("%v: status %s with debug, %s without", q, a.status, b.status)
		}
	}
}
