package test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStartupRefusesBadCorefile(t *testing.T) {
	t.Parallel()
	// The block starts on line 2; its body on line 3.
	const db = "db {testdata}/geo.mmdb"
	const nyc = "pop nyc 40.7128 -74.0060 192.0.2.10"
	tests := []struct {
		name string
		body []string
		line int    // the line the error must name
		what string // part of the message
	}{
		{"unknown property names its line", []string{db, "colour blue"}, 4, `unknown property "colour"`},
		{"missing db names the georoute line", []string{nyc}, 2, "missing db"},
		{"missing db file names the db line", []string{nyc, "db {testdata}/nope.mmdb"}, 4, "nope.mmdb"},
		{"latitude out of range names the pop line", []string{db, "pop nyc 91 -74.0060 192.0.2.10"}, 4, "latitude"},
		{"duplicate pop id names the second pop", []string{db, nyc, "pop nyc 51.47 -0.4543 198.51.100.10"}, 5, `"nyc"`},
		{"address in two pops names the second pop", []string{db, nyc, "pop lhr 51.47 -0.4543 192.0.2.10"}, 5, "192.0.2.10"},
		{"check with an unknown scheme names the check line", []string{db, nyc, "check ftp://{address}/healthz"}, 5, "scheme"},
		{"top-level check without {address} names the check line", []string{db, nyc, "check http://192.0.2.1/healthz"}, 5, "{address}"},
		{"timeout not below interval names the timeout line", []string{db, "interval 2s", "timeout 2s"}, 5, "timeout"},
		{"interval not above the default timeout names the interval line", []string{db, nyc, "interval 2s"}, 5, "interval"},
		{"rise 0 names the rise line", []string{db, nyc, "rise 0"}, 5, "rise"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			corefile := "example.org:{port} {\n    georoute www.example.org {\n        " +
				strings.Join(tc.body, "\n        ") +
				"\n    }\n    file {testdata}/example.org.zone\n}\n"
			s := newServer(t, corefile, nil)
			s.start()
			out := s.waitExit(10 * time.Second)
			if code := s.cmd.ProcessState.ExitCode(); code == 0 {
				t.Errorf("exit code 0, want failure")
			}
			prefix := fmt.Sprintf("plugin/georoute: %s:%d - ", filepath.Join(s.dir, "Corefile"), tc.line)
			i := strings.Index(out, prefix)
			if i < 0 {
				t.Fatalf("output lacks %q:\n%s", prefix, out)
			}
			if msg, _, _ := strings.Cut(out[i:], "\n"); !strings.Contains(msg, tc.what) {
				t.Fatalf("message %q does not mention %q", msg, tc.what)
			}
		})
	}
}
