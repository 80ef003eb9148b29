package test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// healthReloadCorefile checks lhr at a test server; nyc and nrt have no
// check and are always in service.
const healthReloadCorefile = `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    prometheus {metrics}
    georoute www.example.org {
        db {testdata}/geo.mmdb
        interval 2s
        timeout 1s
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10 {
            check {check}
        }
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
    }
    file {testdata}/example.org.zone
}
`

// A pop known to be down stays out of every answer across Corefile
// reloads: the new instance starts from the state the old one knew instead
// of from "healthy" while its first round runs. The check answers 503 only
// after 300 ms, so each new instance's first round takes that long.
func TestReloadKeepsADownPopOutOfAnswers(t *testing.T) {
	t.Parallel()
	check := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer check.Close()
	s := newServer(t, strings.Replace(healthReloadCorefile, "{check}", check.URL+"/healthz", 1), nil)
	s.start()
	s.waitUp(true)

	load := startQueryLoad(t, s.port, "www.example.org", londonSubnet)
	waitAnswer(t, load, "192.0.2.10", 3*time.Second)
	const reloads = 5
	for i := 1; i <= reloads; i++ {
		s.signal(syscall.SIGUSR1)
		waitReloads(t, s, i)
		// Past the new instance's first round.
		time.Sleep(500 * time.Millisecond)
	}
	if n := load.answered(lhrAddress); n != 0 {
		t.Errorf("%d answers named lhr, which was down throughout %d reloads; want 0", n, reloads)
	}
	if n := load.answered("192.0.2.10"); n < 100 {
		t.Errorf("only %d answers named nyc, the nearest pop in service", n)
	}
	load.check(t, 300)
}
