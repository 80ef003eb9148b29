package test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georoute/georoute/internal/mmdbcraft"
)

// hostileServer runs swapCorefile on a copy of the test database (as user
// uid when not 0) with a steady load of London queries, answered by lhr.
func hostileServer(t *testing.T, uid uint32) (s *server, dbPath string, load *queryLoad) {
	t.Helper()
	original, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "geo.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	corefile, files := swapCorefile, map[string]string(nil)
	if uid != 0 {
		// Another user may not reach the checkout's testdata: the zone
		// goes beside the Corefile.
		zone, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "example.org.zone"))
		if err != nil {
			t.Fatal(err)
		}
		corefile = strings.Replace(corefile, "file {testdata}/example.org.zone", "file example.org.zone", 1)
		files = map[string]string{"example.org.zone": string(zone)}
	}
	s = newServer(t, corefile, files)
	s.uid = uid
	dbPath = filepath.Join(s.dir, "geo.mmdb")
	if err := os.WriteFile(dbPath, original, 0o644); err != nil {
		t.Fatal(err)
	}
	if uid != 0 {
		// The test directories are private to root: open them up so that
		// the server can read its Corefile and database.
		for dir := s.dir; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.start()
	s.waitUp(true)
	load = startQueryLoad(t, s.port, "www.example.org", londonSubnet)
	waitAnswer(t, load, lhrAddress, 5*time.Second)
	return s, dbPath, load
}

// replaceFile puts content at path by rename, with the given mode.
func replaceFile(t *testing.T, path string, content []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the server's output holds want n times.
func waitLog(t *testing.T, s *server, want string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Count(s.out.String(), want) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the log did not say %q within %s:\n%s", want, within, s.out.String())
}

// servedThenTerm, a second later, requires the load's answers to be want, and not one of
// its queries to have failed; then SIGTERM must end the process within 3 s.
func servedThenTerm(t *testing.T, s *server, load *queryLoad, want string) {
	t.Helper()
	// A few more polls under load: each tries the file again.
	time.Sleep(time.Second)
	if got := load.lastAnswer(); got != want {
		t.Errorf("the answer is %s; want %s", got, want)
	}
	load.check(t, 200)
	s.signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(3 * time.Second):
		t.Fatalf("coredns still running 3s after SIGTERM:\n%s", s.out.String())
	}
}

// residentMB reads the server's resident set size.
func residentMB(t *testing.T, s *server) float64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 3 && fields[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// Hostile or broken files put at a live database path: each is refused at
// the next poll, the old database keeps answering every query, and neither
// a Corefile reload nor SIGTERM is held up. The cases run side by side, a
// server each, so that their polls overlap.
func TestHostileDatabaseFilesUnderLoad(t *testing.T) {
	t.Parallel()
	const poll = 5 * time.Second // swapCorefile polls every 500 ms
	t.Run("a crafted DAG of 2^64 paths is refused, and SIGTERM still ends the process", func(t *testing.T) {
		t.Parallel()
		s, dbPath, load := hostileServer(t, 0)
		dag := mmdbcraft.Chain(6, 24, 64).Bytes()
		replaceFile(t, dbPath, dag, 0o644)
		waitLog(t, s, "search tree is not a tree", 1, poll)
		t.Logf("a %d-byte DAG refused", len(dag))
		servedThenTerm(t, s, load, lhrAddress)
	})
	t.Run("a FIFO at the db path is refused unopened; SIGUSR1 and SIGTERM still complete", func(t *testing.T) {
		t.Parallel()
		s, dbPath, load := hostileServer(t, 0)
		if err := os.Remove(dbPath); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(dbPath, 0o644); err != nil {
			t.Fatal(err)
		}
		waitLog(t, s, "not a regular file", 1, poll)
		// The reload re-reads the Corefile, whose db is now the FIFO: it
		// fails at once and the running instance stays.
		s.signal(syscall.SIGUSR1)
		waitLog(t, s, "[ERROR] SIGUSR1", 1, 3*time.Second)
		time.Sleep(200 * time.Millisecond)
		servedThenTerm(t, s, load, lhrAddress)
	})
	t.Run("a 2 GiB sparse file is refused unread", func(t *testing.T) {
		t.Parallel()
		s, dbPath, load := hostileServer(t, 0)
		tmp := dbPath + ".new"
		if err := os.WriteFile(tmp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(tmp, 2<<30); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dbPath); err != nil {
			t.Fatal(err)
		}
		waitLog(t, s, "larger than the 1073741824 bytes", 1, poll)
		if rss := residentMB(t, s); rss > 200 {
			t.Errorf("RSS %.0f MB after a 2 GiB file; it must not have been read", rss)
		}
		servedThenTerm(t, s, load, lhrAddress)
	})
	t.Run("a file the server may not read is retried at every poll and taken once readable", func(t *testing.T) {
		t.Parallel()
		// The server runs as nobody, so a mode-0 file really is unreadable
		// to it; making it readable changes neither mtime nor size.
		moved := movedDatabase(t)
		s, dbPath, load := hostileServer(t, 65534)
		replaceFile(t, dbPath, moved, 0)
		waitLog(t, s, "permission denied", 1, poll)
		before := s.metric(`coredns_georoute_db_reloads_total{result="error"}`)
		if err := os.Chmod(dbPath, 0o644); err != nil {
			t.Fatal(err)
		}
		waitAnswer(t, load, nrtAddress, poll)
		if n := strings.Count(s.out.String(), "permission denied"); n != 1 {
			t.Errorf("%d log lines about the unreadable file; want 1 however many polls failed", n)
		}
		if before < 1 {
			t.Errorf("db_reloads_total{result=\"error\"} = %v; want every failed poll counted", before)
		}
		servedThenTerm(t, s, load, nrtAddress)
	})
}
