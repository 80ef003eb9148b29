// Package test holds the black-box tests: they start the real bin/coredns
// (built by `make build`, which `make test` runs first) on loopback ports and
// query it with dig.
package test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the checkout this package lives in.
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}()

// binary is the CoreDNS under test.
var binary = filepath.Join(repoRoot, "bin", "coredns")

// binaryForOthers is TestMain's copy of binary that every user can run.
var binaryForOthers string

// server is one running bin/coredns.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	dir     string
	port    int    // DNS, UDP and TCP
	metrics string // http://127.0.0.1:N/metrics
	ready   string // http://127.0.0.1:N/ready
	out     *syncBuffer
	exited  chan struct{}
	// uid, when not 0, is the user the process runs as (the tests run as
	// root, whom file permissions do not stop).
	uid uint32
}

// syncBuffer collects the server's output while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// givenPorts are the ports freePort handed out in this run: none is given
// twice. CoreDNS binds with SO_REUSEPORT, so a second server given a port
// whose first is still loading its database binds it too, without an
// error, and the kernel then shares the queries between the two.
var givenPorts = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// serverPorts returns the range freePort draws from: ports below the
// kernel's ephemeral range, which it never picks for a client's socket.
// dig binds its source port with SO_REUSEPORT, as CoreDNS binds its own, so
// an ephemeral pick may be the very port of the server dig asks: dig then
// reads its own query as the reply (NOERROR, no answer, no qr flag). Nor
// does the kernel give these ports to another bind(":0"), which soon
// hands a closed port out again (a few in every 300 picks). Without room
// below the ephemeral range, ports come from bind(":0").
func serverPorts() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	var first, last int
	if err == nil {
		_, err = fmt.Sscan(string(b), &first, &last)
	}
	if err != nil || first-10000 < 2000 {
		return 0, 0
	}
	return 10000, first
}

// freePort returns a port that is free on 127.0.0.1 for both UDP and TCP,
// and that no other server of this run was given.
func freePort(t *testing.T) int {
	t.Helper()
	lo, hi := serverPorts()
	for range 200 {
		port := 0
		if hi > lo {
			port = lo + rand.IntN(hi-lo)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		port = l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		givenPorts.Lock()
		given := givenPorts.m[port]
		givenPorts.m[port] = true
		givenPorts.Unlock()
		if !given {
			return port
		}
	}
	t.Fatal("no free port on 127.0.0.1")
	return 0
}

// expand fills the placeholders a test Corefile may use: {port} (DNS),
// {metrics} and {ready} (host:port of the prometheus and ready listeners)
// and {testdata} (the repository's testdata folder).
func (s *server) expand(corefile string) string {
	return strings.NewReplacer(
		"{port}", fmt.Sprint(s.port),
		"{metrics}", strings.TrimSuffix(strings.TrimPrefix(s.metrics, "http://"), "/metrics"),
		"{ready}", strings.TrimSuffix(strings.TrimPrefix(s.ready, "http://"), "/ready"),
		"{testdata}", filepath.Join(repoRoot, "testdata"),
	).Replace(corefile)
}

// newServer prepares a server in a fresh directory holding the Corefile and
// any extra files; start runs it.
func newServer(t *testing.T, corefile string, files map[string]string) *server {
	t.Helper()
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("%s is missing: run `make build` (make test does): %v", binary, err)
	}
	s := &server{t: t, dir: t.TempDir(), port: freePort(t), out: &syncBuffer{}, exited: make(chan struct{})}
	s.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", freePort(t))
	s.ready = fmt.Sprintf("http://127.0.0.1:%d/ready", freePort(t))
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(s.expand(content)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.dir, "Corefile"), []byte(s.expand(corefile)), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer starts bin/coredns with corefile and waits until it answers:
// until /ready says 200 when the Corefile has `ready {ready}`, else until a
// query gets any reply. The process is killed when the test ends.
func startServer(t *testing.T, corefile string, files map[string]string) *server {
	t.Helper()
	s := newServer(t, corefile, files)
	s.start()
	s.waitUp(strings.Contains(corefile, "{ready}"))
	return s
}

func (s *server) start() {
	s.t.Helper()
	bin := binary
	if s.uid != 0 {
		// Another user may not reach the checkout (a clone in a private
		// temporary folder): it runs TestMain's copy.
		bin = binaryForOthers
	}
	s.cmd = exec.Command(bin, "-conf", filepath.Join(s.dir, "Corefile"))
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if s.uid != 0 {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.uid, Gid: s.uid}}
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	s.t.Cleanup(s.stop)
}

// stop ends the server.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	stopProcess(s.cmd, s.exited)
}

// stopProcess ends a process the tests started: SIGTERM, then SIGKILL if
// it lingers. exited is closed when the process has been waited for.
func stopProcess(cmd *exec.Cmd, exited chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// signal sends sig to the server (SIGUSR1 reloads the Corefile).
func (s *server) signal(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) waitUp(useReady bool) {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("coredns exited during start-up:\n%s", s.out.String())
		default:
		}
		if s.up(useReady) && s.startupLogged() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("coredns did not come up within 15s:\n%s", s.out.String())
}

// up says whether the server answers: /ready says 200, or the DNS port
// takes a connection.
func (s *server) up(useReady bool) bool {
	if useReady {
		resp, err := http.Get(s.ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startupLogged says whether the server's output holds everything it logs
// at start-up. CoreDNS prints its version once every server of the
// Corefile is listening, after every plugin's start-up: the output comes
// through a pipe, and on a busy machine /ready may say 200 before the lines
// logged before it are read.
func (s *server) startupLogged() bool {
	return strings.Contains(s.out.String(), "\nCoreDNS-")
}

// waitExit waits for a server that is expected to refuse to start and
// returns its output.
func (s *server) waitExit(within time.Duration) string {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.out.String()
	case <-time.After(within):
		s.t.Fatalf("coredns still running after %s; expected it to refuse the Corefile:\n%s", within, s.out.String())
		return ""
	}
}

// dig queries the server with dig and returns its full output. Options such
// as +subnet=, -b, +tcp, AAAA go in args; the server, port and a short
// timeout are added.
func (s *server) dig(args ...string) string {
	s.t.Helper()
	full := append([]string{"@127.0.0.1", "-p", fmt.Sprint(s.port), "+time=2", "+tries=1"}, args...)
	out, err := exec.Command("dig", full...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// digHeader begins each query's part of dig's output ("; <<>> DiG 9.18 <<>>
// ARGS"), in a batch as for one query.
const digHeader = "; <<>> DiG "

// queryBatch asks every query (each dig's arguments, as for query) in one
// dig run, `dig -f`, and returns the replies in order: one process instead
// of one per query, for tests that ask hundreds.
func (s *server) queryBatch(queries [][]string) []reply {
	s.t.Helper()
	var batch strings.Builder
	lines := make([]string, len(queries))
	for i, q := range queries {
		lines[i] = strings.Join(append([]string{"@127.0.0.1", "-p", fmt.Sprint(s.port), "+time=2", "+tries=1"}, q...), " ")
		fmt.Fprintln(&batch, lines[i])
	}
	file := filepath.Join(s.t.TempDir(), "batch")
	if err := os.WriteFile(file, []byte(batch.String()), 0o644); err != nil {
		s.t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("dig", "-f", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("dig -f (%d queries): %v\n%s%s", len(queries), err, stderr.String(), stdout.String())
	}
	// Each query's output begins with the header that echoes its arguments:
	// split there, and check every piece is the query asked in its place.
	out := stdout.String()
	var replies []reply
	for len(out) > 0 {
		start := strings.Index(out, digHeader)
		if start < 0 {
			break
		}
		next := strings.Index(out[start+len(digHeader):], "\n"+digHeader)
		piece := out[start:]
		if next >= 0 {
			piece = out[start : start+len(digHeader)+next+1]
		}
		out = out[start+len(piece):]
		replies = append(replies, parseDig(piece))
	}
	if len(replies) != len(queries) {
		s.t.Fatalf("dig -f: %d replies to %d queries:\n%s%s", len(replies), len(queries), stderr.String(), stdout.String())
	}
	for i, r := range replies {
		header, _, _ := strings.Cut(r.raw, "\n")
		if !strings.HasSuffix(header, "<<>> "+lines[i]) {
			s.t.Fatalf("dig -f: reply %d is to %q; expected %q", i, header, lines[i])
		}
	}
	return replies
}

// reply is the part of dig's output the tests look at.
type reply struct {
	status string   // NOERROR, FORMERR, …
	flags  string   // qr aa rd …
	answer []string // "name TTL class type rdata", whitespace folded
	ecs    string   // the CLIENT-SUBNET line's value, e.g. 198.18.1.0/24/24
	hasOPT bool
	raw    string
}

var (
	statusRe = regexp.MustCompile(`status: ([A-Z]+)`)
	flagsRe  = regexp.MustCompile(`;; flags: ([a-z ]+);`)
	ecsRe    = regexp.MustCompile(`; CLIENT-SUBNET: (\S+)`)
)

// parseDig reads dig's default output.
func parseDig(out string) reply {
	r := reply{raw: out}
	if m := statusRe.FindStringSubmatch(out); m != nil {
		r.status = m[1]
	}
	if m := flagsRe.FindStringSubmatch(out); m != nil {
		r.flags = strings.TrimSpace(m[1])
	}
	if m := ecsRe.FindStringSubmatch(out); m != nil {
		r.ecs = m[1]
	}
	r.hasOPT = strings.Contains(out, ";; OPT PSEUDOSECTION:")
	section := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			section = "answer"
		case strings.HasPrefix(line, ";;") || line == "":
			section = ""
		case section == "answer" && !strings.HasPrefix(line, ";"):
			r.answer = append(r.answer, strings.Join(strings.Fields(line), " "))
		}
	}
	return r
}

// query runs dig and parses its reply.
func (s *server) query(args ...string) reply {
	s.t.Helper()
	return parseDig(s.dig(args...))
}

// addresses returns the rdata of the A/AAAA records of an answer, in order.
func (r reply) addresses() []string {
	var out []string
	for _, rr := range r.answer {
		f := strings.Fields(rr)
		if len(f) == 5 && (f[3] == "A" || f[3] == "AAAA") {
			out = append(out, f[4])
		}
	}
	return out
}

// scrape returns the server's /metrics text.
func (s *server) scrape() string {
	s.t.Helper()
	resp, err := http.Get(s.metrics)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
