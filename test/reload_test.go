package test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openFiles counts the file descriptors the server holds.
func openFiles(t *testing.T, s *server) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// waitReloads waits until the log reports n completed reloads.
func waitReloads(t *testing.T, s *server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Count(s.out.String(), "Reloading complete") >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("reload %d did not complete within 10s:\n%s", n, s.out.String())
}

// Twenty Corefile reloads under query load: no query fails, and goroutines
// and open files come back to where they were, so every reload released the
// old instance's database and watchers.
func TestCorefileReloadsUnderLoad(t *testing.T) {
	t.Parallel()
	s := startServer(t, demoPopsCorefile, nil)
	load := startQueryLoad(t, s.port, "www.example.org", londonSubnet)
	time.Sleep(300 * time.Millisecond)

	// One reload first, so that whatever a first reload sets up once (the
	// reload machinery itself) is in the baseline.
	s.signal(syscall.SIGUSR1)
	waitReloads(t, s, 1)
	time.Sleep(500 * time.Millisecond)
	goroutines, files := s.metric("go_goroutines"), openFiles(t, s)

	for i := 2; i <= 21; i++ {
		s.signal(syscall.SIGUSR1)
		waitReloads(t, s, i)
	}
	time.Sleep(500 * time.Millisecond)

	if got := load.lastAnswer(); got != lhrAddress {
		t.Errorf("after 20 reloads the client in London gets %q; want %s", got, lhrAddress)
	}
	load.check(t, 200)
	// Leftovers of finished queries and HTTP scrapes may linger a moment:
	// allow a handful, far fewer than the 20 reloads would leave behind if
	// each leaked even one goroutine.
	if got := s.metric("go_goroutines"); got > goroutines+5 {
		t.Errorf("goroutines went from %v to %v over 20 reloads", goroutines, got)
	}
	if got := openFiles(t, s); got > files+2 {
		t.Errorf("open files went from %d to %d over 20 reloads", files, got)
	}
}
