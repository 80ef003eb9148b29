package test

import (
	"fmt"
	"strings"
	"testing"
)

// loadbalance sits above georoute in the upstream order: with answers above
// 1 it shuffles the nearest pops, and georoute says so at start-up.
func TestLoadbalanceAboveGeorouteIsReported(t *testing.T) {
	t.Parallel()
	for _, answers := range []int{1, 2} {
		t.Run(fmt.Sprintf("answers %d", answers), func(t *testing.T) {
			s := startServer(t, fmt.Sprintf(`example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    georoute www.example.org {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10
        pop lhr 51.4700 -0.4543 198.51.100.10
        pop nrt 35.7720 140.3929 203.0.113.10
        answers %d
    }
    loadbalance
    file {testdata}/example.org.zone
}
`, answers), nil)
			warned := strings.Contains(s.out.String(), "loadbalance runs above georoute")
			if warned != (answers > 1) {
				t.Errorf("warning printed: %v; want %v\n%s", warned, answers > 1, s.out.String())
			}
			// Whatever the order, the set is the nearest pops.
			got := s.query("www.example.org", "+subnet=198.18.4.0/24").addresses()
			if len(got) != answers || !strings.Contains(strings.Join(got, " "), "198.51.100.10") {
				t.Errorf("client in Paris got %v; want the %d nearest, London among them", got, answers)
			}
		})
	}
}
