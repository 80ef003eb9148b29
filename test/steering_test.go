package test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Pop addresses of testdata/example.org.zone.
const (
	steerNYC = "192.0.2.10"
	steerLHR = "198.51.100.10"
	steerNRT = "203.0.113.10"
)

// steerReload is the steering demo's `reload`: how often a server checks
// the state and overrides files, so how soon a change by another server or
// by hand reaches it. Short, so that the tests waiting on it are quick.
const steerReload = 250 * time.Millisecond

// steerWithin is how long a file change may take to reach a server: its
// next check at the latest, with room for a loaded machine.
const steerWithin = steerReload + 1500*time.Millisecond

// steerCorefile is the demo with steering: a state file, the admin
// endpoint on adminAddr and `reload` steerReload; extra goes into the block.
func steerCorefile(adminAddr, state, extra string) string {
	return `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    prometheus {metrics}
    georoute www.example.org {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
        state ` + state + `
        admin ` + adminAddr + `
        reload ` + steerReload.String() + `
` + extra + `    }
    file {testdata}/example.org.zone
}
`
}

// steerServer is a running server with its admin endpoint.
type steerServer struct {
	*server
	admin string // http://127.0.0.1:N
	token string
}

func startSteerServer(t *testing.T, state, extra string, files map[string]string) *steerServer {
	t.Helper()
	s, addr := newServerWithAdmin(t, steerCorefile("{admin}", state, extra), files)
	s.start()
	s.waitUp(true)
	return &steerServer{server: s, admin: "http://" + addr}
}

// newServerWithAdmin prepares a server whose Corefile has {admin} (and
// {health}) placeholders, filled with loopback addresses on ports of their
// own.
func newServerWithAdmin(t *testing.T, corefile string, files map[string]string) (*server, string) {
	t.Helper()
	s := newServer(t, corefile, files)
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	health := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	path := filepath.Join(s.dir, "Corefile")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	filled := strings.NewReplacer("{admin}", admin, "{health}", health).Replace(string(b))
	if err := os.WriteFile(path, []byte(filled), 0o644); err != nil {
		t.Fatal(err)
	}
	return s, admin
}

// call sends an admin request and decodes the JSON reply.
func (s *steerServer) call(method, path string) (int, map[string]any) {
	s.t.Helper()
	code, body := adminCall(s.t, s.admin, s.token, method, path)
	var obj map[string]any
	json.Unmarshal(body, &obj)
	return code, obj
}

func adminCall(t *testing.T, base, token, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// adminPop returns one pop of GET /pops.
func adminPop(t *testing.T, base, token, id string) (int, map[string]any) {
	t.Helper()
	code, body := adminCall(t, base, token, "GET", "/pops")
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /pops: %d %s", code, body)
	}
	for _, p := range list {
		if p["id"] == id {
			return code, p
		}
	}
	t.Fatalf("GET /pops has no %s: %s", id, body)
	return 0, nil
}

// answerA asks the server for www.example.org A as a client in subnet and
// returns the one address of the answer, or why there is none.
func answerA(port int, subnet string) (string, error) {
	ip, network, err := net.ParseCIDR(subnet)
	if err != nil {
		return "", err
	}
	bits, _ := network.Mask.Size()
	m := new(dns.Msg)
	m.SetQuestion("www.example.org.", dns.TypeA)
	m.SetEdns0(1232, false)
	o := m.IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(bits), Address: ip.To4()})
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", port))
	switch {
	case err != nil:
		return "", err
	case r.Rcode != dns.RcodeSuccess:
		return "", fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	case len(r.Answer) != 1:
		return "", fmt.Errorf("%d answers", len(r.Answer))
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok {
		return "", fmt.Errorf("answer %s", r.Answer[0])
	}
	return a.A.String(), nil
}

// waitSteered queries every 10 ms until the client in subnet gets want,
// and returns how long that took from since.
func waitSteered(t *testing.T, s *server, subnet, want string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	var got string
	var err error
	// At least one query, however long the change itself took.
	for {
		if got, err = answerA(s.port, subnet); err == nil && got == want {
			return time.Since(since)
		}
		if time.Since(since) >= within {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("client in %s still gets %q (%v) %s after the change; want %s\n%s", subnet, got, err, within, want, s.out.String())
	return 0
}

// steady queries every 100 ms as a client in subnet and records every
// answer, so that a test can check none failed and see the sequence.
type steady struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen []string // one entry per answer: the address, or "error: ..."
}

func startSteady(t *testing.T, port int, subnet string) *steady {
	st := &steady{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(st.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 1200 { // two minutes at most
			got, err := answerA(port, subnet)
			if err != nil {
				got = "error: " + err.Error()
			}
			st.mu.Lock()
			st.seen = append(st.seen, got)
			st.mu.Unlock()
			select {
			case <-st.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(st.finish)
	return st
}

func (st *steady) finish() {
	select {
	case <-st.stop:
	default:
		close(st.stop)
	}
	<-st.done
}

// phases folds the answers into their runs: "lhr×12 nyc×9 lhr×5".
func (st *steady) phases() (string, int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	failed := 0
	for i := 0; i < len(st.seen); {
		j := i
		for j < len(st.seen) && st.seen[j] == st.seen[i] {
			j++
		}
		out = append(out, fmt.Sprintf("%s×%d", st.seen[i], j-i))
		if strings.HasPrefix(st.seen[i], "error") {
			failed += j - i
		}
		i = j
	}
	return strings.Join(out, " "), failed
}

// TestLab15DrainAndRestore follows the lab: London gets lhr; `curl -X
// DELETE /pops/LHR`; London gets nyc; restore; London gets lhr again —
// with a query every 100 ms throughout, none failing.
func TestLab15DrainAndRestore(t *testing.T) {
	t.Parallel()
	s := startSteerServer(t, "state", "", nil)
	london := "198.18.2.0/24"
	if got, err := answerA(s.port, london); err != nil || got != steerLHR {
		t.Fatalf("London gets %q (%v) before the drain; want lhr", got, err)
	}
	st := startSteady(t, s.port, london)
	time.Sleep(time.Second)

	code, pop := s.call("DELETE", "/pops/LHR")
	if code != 200 || pop["id"] != "lhr" || pop["state"] != "drained" {
		t.Fatalf("DELETE /pops/LHR: %d %v", code, pop)
	}
	took := waitSteered(t, s.server, london, steerNYC, time.Now(), 2*time.Second)
	t.Logf("DELETE to the first answer without lhr, same server: %s", took)
	time.Sleep(time.Second)

	code, pop = s.call("PUT", "/pops/lhr")
	if code != 200 || pop["state"] != "up" {
		t.Fatalf("PUT /pops/lhr: %d %v", code, pop)
	}
	waitSteered(t, s.server, london, steerLHR, time.Now(), 2*time.Second)
	time.Sleep(time.Second)
	st.finish()

	runs, failed := st.phases()
	want := fmt.Sprintf("%s×", steerLHR)
	if failed > 0 || !strings.HasPrefix(runs, want) || strings.Count(runs, " ") != 2 || !strings.Contains(runs, " "+steerNYC+"×") {
		t.Fatalf("answers every 100 ms: %s; want lhr, then nyc, then lhr, none failing", runs)
	}
	t.Logf("answers every 100 ms: %s", runs)
	if v := s.metric(`coredns_georoute_pop_drained{pop="lhr"}`); v != 0 {
		t.Errorf("pop_drained for lhr is %v after the restore", v)
	}
	if v := s.metric(`coredns_georoute_admin_requests_total{code="200",method="DELETE"}`); v != 1 {
		t.Errorf("admin_requests_total for the DELETE is %v", v)
	}
}

// TestReplicasShareStateFile: two servers read one state file; a drain
// made through either reaches the other within `reload` (1s here).
func TestReplicasShareStateFile(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state")
	a := startSteerServer(t, state, "", nil)
	b := startSteerServer(t, state, "", nil)
	london := "198.18.2.0/24"

	// Times run from the reply to the request: the server writes the file
	// (with an fsync that can take most of a second on a busy disk) before
	// it replies, so only then may the change be seen anywhere.
	if code, _ := a.call("DELETE", "/pops/lhr?reason=maintenance"); code != 200 {
		t.Fatalf("DELETE on a: %d", code)
	}
	begin := time.Now()
	onA := waitSteered(t, a.server, london, steerNYC, begin, 2*time.Second)
	onB := waitSteered(t, b.server, london, steerNYC, begin, steerWithin)
	t.Logf("DELETE to the first answer without lhr: %s on the server that took it, %s on a replica (reload %s)", onA, onB, steerReload)
	if code, pop := adminPop(t, b.admin, "", "lhr"); code != 200 || pop["state"] != "drained" || pop["drain"].(map[string]any)["reason"] != "maintenance" {
		t.Fatalf("b's GET /pops: %v", pop)
	}

	if code, _ := b.call("PUT", "/pops/lhr"); code != 200 {
		t.Fatalf("PUT on b: %d", code)
	}
	back := waitSteered(t, a.server, london, steerLHR, time.Now(), steerWithin)
	t.Logf("restore on b reached a after %s", back)

	t.Run("drains at random moments reach the replica within reload", func(t *testing.T) {
		var onA, onB []time.Duration
		for i := range 5 {
			// A random moment within one reload period: each drain meets
			// the replica's check at another phase of it.
			time.Sleep(rand.N(steerReload))
			if code, _ := a.call("DELETE", "/pops/lhr"); code != 200 {
				t.Fatalf("drain %d: %d", i, code)
			}
			begin := time.Now()
			onA = append(onA, waitSteered(t, a.server, london, steerNYC, begin, 2*time.Second))
			onB = append(onB, waitSteered(t, b.server, london, steerNYC, begin, steerWithin))
			if code, _ := a.call("PUT", "/pops/lhr"); code != 200 {
				t.Fatalf("restore %d: %d", i, code)
			}
			waitSteered(t, b.server, london, steerLHR, time.Now(), steerWithin)
		}
		slices.Sort(onA)
		slices.Sort(onB)
		t.Logf("DELETE to the first answer without lhr over 5 drains (reload %s): server that took it %s..%s, replica %s..%s", steerReload, onA[0], onA[4], onB[0], onB[4])
	})
	t.Run("an edit by hand reaches both, and an unknown id is ignored", func(t *testing.T) {
		begin := time.Now()
		writeState(t, state, "# by hand\nfra other block's pop\nlhr until 2099-01-01T00:00:00Z by hand\n")
		waitSteered(t, a.server, london, steerNYC, begin, steerWithin)
		waitSteered(t, b.server, london, steerNYC, begin, steerWithin)
		if !strings.Contains(a.out.String(), `lists "fra", which is not a pop of this block; ignored`) {
			t.Fatalf("unknown id not logged:\n%s", a.out.String())
		}
	})
	t.Run("a file that does not parse keeps the drains, and is counted", func(t *testing.T) {
		writeState(t, state, "lhr until someday\n")
		deadline := time.Now().Add(steerWithin)
		for a.metric(`coredns_georoute_state_reloads_total{result="error"}`) < 1 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if v := a.metric(`coredns_georoute_state_reloads_total{result="error"}`); v != 1 {
			t.Fatalf("state_reloads_total error = %v", v)
		}
		if got, _ := answerA(a.port, london); got != steerNYC {
			t.Fatalf("London gets %s; the drain was lost", got)
		}
		if !strings.Contains(a.out.String(), state+":1 - pop lhr until \"someday\"") {
			t.Fatalf("error not logged with file:line:\n%s", a.out.String())
		}
		if code, obj := a.call("PUT", "/pops/lhr"); code != 409 || !strings.Contains(obj["error"].(string), "does not parse") {
			t.Fatalf("PUT over a broken file: %d %v", code, obj)
		}
	})
}

func writeState(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestDrainSurvivesRestart: the state file brings the drain back.
func TestDrainSurvivesRestart(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state")
	a := startSteerServer(t, state, "", nil)
	if code, _ := a.call("DELETE", "/pops/lhr?for=1h&reason=fibre+cut"); code != 200 {
		t.Fatalf("DELETE: %d", code)
	}
	a.stop()
	b := startSteerServer(t, state, "", nil)
	if got, err := answerA(b.port, "198.18.2.0/24"); err != nil || got != steerNYC {
		t.Fatalf("after the restart London gets %q (%v); want nyc", got, err)
	}
	_, pop := adminPop(t, b.admin, "", "lhr")
	if pop["state"] != "drained" || pop["drain"].(map[string]any)["reason"] != "fibre cut" || pop["drain"].(map[string]any)["until"] == nil {
		t.Fatalf("lhr after the restart: %v", pop)
	}
	if v := b.metric(`coredns_georoute_pop_drained{pop="lhr"}`); v != 1 {
		t.Fatalf("pop_drained = %v", v)
	}
}

// TestExpiringDrainEndsByItself: for=2s ends the drain with no file change.
func TestExpiringDrainEndsByItself(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state")
	s := startSteerServer(t, state, "", nil)
	begin := time.Now()
	if code, _ := s.call("DELETE", "/pops/lhr?for=2s"); code != 200 {
		t.Fatalf("DELETE: %d", code)
	}
	replied := time.Now()
	if got, _ := answerA(s.port, "198.18.2.0/24"); got != steerNYC {
		t.Fatalf("London gets %s during the drain", got)
	}
	before, _ := os.Stat(state)
	// Whole seconds in the file, rounded up: it ends 2–3 s after the server
	// took the DELETE, which is after begin and before its reply (a slow
	// fsync of the state file may lie between the two).
	took := waitSteered(t, s.server, "198.18.2.0/24", steerLHR, replied, 4*time.Second) + replied.Sub(begin)
	if took < 2*time.Second {
		t.Fatalf("the drain ended after %s; asked for 2s", took)
	}
	after, _ := os.Stat(state)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("the state file changed: the drain did not end by itself")
	}
	t.Logf("for=2s ended %s after the DELETE", took)
	if _, pop := adminPop(t, s.admin, "", "lhr"); pop["state"] != "up" || pop["drain"] != nil {
		t.Fatalf("lhr: %v", pop)
	}
}

// TestMinUpGuard: min_up 2 of 3 pops refuses the second drain with 409
// and the reason, unless forced.
func TestMinUpGuard(t *testing.T) {
	t.Parallel()
	s := startSteerServer(t, filepath.Join(t.TempDir(), "state"), "        min_up 2\n", nil)
	if code, _ := s.call("DELETE", "/pops/lhr"); code != 200 {
		t.Fatalf("first drain: %d", code)
	}
	code, obj := s.call("DELETE", "/pops/nyc")
	if code != 409 || obj["error"] != "draining nyc would leave 1 pops up (lhr drained), fewer than min_up 2; add force=true to drain anyway" {
		t.Fatalf("second drain: %d %v", code, obj)
	}
	if got, _ := answerA(s.port, "198.18.2.0/24"); got != steerNYC {
		t.Fatalf("London gets %s after the refused drain; want nyc", got)
	}
	if code, _ := s.call("DELETE", "/pops/nyc?force=true"); code != 200 {
		t.Fatalf("forced drain: %d", code)
	}
	if got, _ := answerA(s.port, "198.18.2.0/24"); got != steerNRT {
		t.Fatalf("London gets %s with lhr and nyc drained; want nrt", got)
	}
	t.Run("every pop drained leaves the answer as if none were", func(t *testing.T) {
		if code, _ := s.call("DELETE", "/pops/nrt?force=true"); code != 200 {
			t.Fatal(code)
		}
		if got, err := answerA(s.port, "198.18.2.0/24"); err != nil || got != steerLHR {
			t.Fatalf("London gets %q (%v); want lhr, never an empty answer", got, err)
		}
	})
	t.Run("bad requests change nothing", func(t *testing.T) {
		for _, tc := range []struct {
			method, path string
			code         int
		}{
			{"DELETE", "/pops/fra", 404},
			{"PUT", "/pops/fra", 404},
			{"DELETE", "/pops/lhr?for=ever", 400},
			{"DELETE", "/pops/lhr?force=yes", 400},
			{"POST", "/pops/lhr", 405},
			{"GET", "/nothing", 404},
		} {
			if code, obj := s.call(tc.method, tc.path); code != tc.code || obj["error"] == nil {
				t.Errorf("%s %s: %d %v; want %d with a reason", tc.method, tc.path, code, obj, tc.code)
			}
		}
		if got, _ := answerA(s.port, "198.18.2.0/24"); got != steerLHR {
			t.Fatalf("London gets %s", got)
		}
	})
}

// TestAdminTokenAndLoopback: with a token file every request needs the
// token; without one, a non-loopback address does not start.
func TestAdminTokenAndLoopback(t *testing.T) {
	t.Parallel()
	files := map[string]string{"token": "correct-horse\n"}
	s, addr := newServerWithAdmin(t, steerCorefile("{admin} token", "state", ""), files)
	s.start()
	s.waitUp(true)
	base := "http://" + addr
	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"no token", "", 401},
		{"a wrong token", "correct-horsE", 401},
		{"the token", "correct-horse", 200},
	} {
		if code, _ := adminCall(t, base, tc.token, "GET", "/pops"); code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.code)
		}
	}
	if code, _ := adminCall(t, base, "", "DELETE", "/pops/lhr"); code != 401 {
		t.Fatalf("DELETE without token: %d", code)
	}
	if got, _ := answerA(s.port, "198.18.2.0/24"); got != steerLHR {
		t.Fatalf("an unauthorized DELETE drained lhr: London gets %s", got)
	}
	t.Run("two server blocks on one admin address do not start", func(t *testing.T) {
		block := steerCorefile("{admin}", "state", "")
		other := strings.NewReplacer("example.org:{port}", "example.net:{port}", "www.example.org", "www.example.net",
			"file {testdata}/example.org.zone", "whoami", "ready {ready}", "", "prometheus {metrics}", "").Replace(block)
		bad, addr := newServerWithAdmin(t, block+other, nil)
		bad.start()
		if out := bad.waitExit(10 * time.Second); !strings.Contains(out, "admin "+addr+" is already the admin endpoint of another georoute block") {
			t.Fatalf("output:\n%s", out)
		}
	})
	t.Run("a non-loopback address without a token does not start", func(t *testing.T) {
		bad := newServer(t, steerCorefile("0.0.0.0:8182", "state", ""), nil)
		bad.start()
		out := bad.waitExit(10 * time.Second)
		if !strings.Contains(out, `Corefile:11 - Error during parsing: admin address "0.0.0.0:8182" is not loopback and has no TOKEN-FILE`) {
			t.Fatalf("output:\n%s", out)
		}
	})
}

// TestOverridesInlineAndFile: an inline override and a file of them; the
// file is followed within `reload`, a bad one keeps the old set.
func TestOverridesInlineAndFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	overrides := filepath.Join(dir, "overrides")
	writeState(t, overrides, "# New York office to London\n198.18.1.0/24 lhr\n")
	s := startSteerServer(t, filepath.Join(dir, "state"), "        override 198.18.2.0/24 nrt nyc\n        overrides "+overrides+"\n", nil)

	for _, tc := range []struct{ client, subnet, want string }{
		{"London (inline override to nrt)", "198.18.2.0/24", steerNRT},
		{"New York (override file to lhr)", "198.18.1.0/24", steerLHR},
		{"Tokyo (no override)", "198.18.3.0/24", steerNRT},
	} {
		if got, err := answerA(s.port, tc.subnet); err != nil || got != tc.want {
			t.Errorf("%s: got %q (%v), want %s", tc.client, got, err, tc.want)
		}
	}
	if v := s.metricSum("coredns_georoute_requests_total", `pop="nrt"`, `source="override"`); v != 1 {
		t.Errorf("override answers not counted as source=override: %v", v)
	}
	t.Run("a drained override pop is skipped for the next one listed", func(t *testing.T) {
		if code, _ := s.call("DELETE", "/pops/nrt"); code != 200 {
			t.Fatal(code)
		}
		if got, _ := answerA(s.port, "198.18.2.0/24"); got != steerNYC {
			t.Fatalf("London gets %s; want nyc, the override's second pop", got)
		}
		s.call("PUT", "/pops/nrt")
	})
	t.Run("a change to the file is followed", func(t *testing.T) {
		begin := time.Now()
		writeState(t, overrides, "198.18.1.0/24 nrt\n")
		waitSteered(t, s.server, "198.18.1.0/24", steerNRT, begin, steerWithin)
	})
	t.Run("a file that does not parse keeps the overrides", func(t *testing.T) {
		writeState(t, overrides, "198.18.1.0/24 nrt\n198.18.1.7/24 lhr\n")
		deadline := time.Now().Add(steerWithin)
		for s.metric(`coredns_georoute_overrides_reloads_total{result="error"}`) < 1 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if v := s.metric(`coredns_georoute_overrides_reloads_total{result="error"}`); v != 1 {
			t.Fatalf("overrides_reloads_total error = %v", v)
		}
		if !strings.Contains(s.out.String(), overrides+":2 - override 198.18.1.7/24 has host bits set") {
			t.Fatalf("error not logged with file:line:\n%s", s.out.String())
		}
		if got, _ := answerA(s.port, "198.18.1.0/24"); got != steerNRT {
			t.Fatalf("New York gets %s", got)
		}
	})
	t.Run("config errors name the line", func(t *testing.T) {
		for extra, want := range map[string]string{
			"        override 198.18.2.1/24 nrt\n": "Corefile:13 - Error during parsing: override 198.18.2.1/24 has host bits set; expected 198.18.2.0/24",
			"        override 198.18.2.0/24 fra\n": `Corefile:13 - Error during parsing: override 198.18.2.0/24: "fra" is not a declared pop`,
			"        min_up 4\n":                   "Corefile:13 - Error during parsing: min_up 4 is more than the 3 pops of this block",
		} {
			bad, _ := newServerWithAdmin(t, steerCorefile("{admin}", "state", extra), nil)
			bad.start()
			if out := bad.waitExit(10 * time.Second); !strings.Contains(out, want) {
				t.Errorf("%q: output\n%s", extra, out)
			}
		}
	})
}

// TestAdminAcrossReloads: 20 Corefile reloads keep one listener on the
// admin address and no extra goroutines; a reload that moves the endpoint
// frees the old port.
func TestAdminAcrossReloads(t *testing.T) {
	t.Parallel()
	s := startSteerServer(t, "state", "", nil)
	port := strings.TrimPrefix(s.admin, "http://127.0.0.1:")
	s.signal(syscall.SIGUSR1)
	waitReloads(t, s.server, 1)
	time.Sleep(500 * time.Millisecond)
	http.DefaultClient.CloseIdleConnections()
	goroutines := s.metric("go_goroutines")
	for i := 2; i <= 21; i++ {
		s.signal(syscall.SIGUSR1)
		waitReloads(t, s.server, i)
		if code, _ := s.call("GET", "/pops"); code != 200 {
			t.Fatalf("after reload %d GET /pops: %d", i, code)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	if got := s.metric("go_goroutines"); got > goroutines+5 {
		t.Errorf("goroutines went from %v to %v over 20 reloads", goroutines, got)
	}
	if n := listeners(t, s.server, port); n != 1 {
		t.Errorf("%d listeners on the admin port after 20 reloads", n)
	}

	t.Run("a reload that moves the endpoint frees the old port", func(t *testing.T) {
		newAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		old := strings.TrimPrefix(s.admin, "http://")
		corefile := filepath.Join(s.dir, "Corefile")
		b, _ := os.ReadFile(corefile)
		os.WriteFile(corefile, []byte(strings.Replace(string(b), "admin "+old, "admin "+newAddr, 1)), 0o644)
		s.signal(syscall.SIGUSR1)
		waitReloads(t, s.server, 22)
		if code, _ := adminCall(t, "http://"+newAddr, "", "GET", "/pops"); code != 200 {
			t.Fatalf("new address: %d", code)
		}
		l, err := net.Listen("tcp", old)
		if err != nil {
			t.Fatalf("the old admin port is still bound: %v", err)
		}
		l.Close()
	})
}

// listeners counts the listening TCP sockets of the server on port.
func listeners(t *testing.T, s *server, port string) int {
	t.Helper()
	p, _ := strconv.Atoi(port)
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.cmd.Process.Pid, fd.Name())); err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "0A" && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", p)) && inodes[f[9]] {
				n++
			}
		}
	}
	return n
}

// TestExplainMatchesDNS: GET /explain gives the addresses and SCOPE that
// the same client gets from DNS, drains and overrides included.
func TestExplainMatchesDNS(t *testing.T) {
	t.Parallel()
	s := startSteerServer(t, filepath.Join(t.TempDir(), "state"), "        override 198.18.9.0/24 nrt\n", nil)
	if code, _ := s.call("DELETE", "/pops/nyc"); code != 200 {
		t.Fatal(code)
	}
	for _, tc := range []struct {
		name, client, qtype string
		dig                 []string
		pop                 string
	}{
		{"London by ECS", "198.18.2.0/24", "A", []string{"+subnet=198.18.2.0/24"}, "lhr"},
		{"New York by ECS, nyc drained", "198.18.1.0/24", "A", []string{"+subnet=198.18.1.0/24"}, "lhr"},
		{"Frankfurt, overridden to nrt", "198.18.9.0/24", "A", []string{"+subnet=198.18.9.0/24"}, "nrt"},
		{"Tokyo over IPv6", "2001:db8:300::/48", "AAAA", []string{"+subnet=2001:db8:300::/48", "AAAA"}, "nrt"},
		{"London by source address", "127.0.0.2", "A", []string{"-b", "127.0.0.2"}, "lhr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := adminCall(t, s.admin, "", "GET", "/explain?name=www.example.org&client="+tc.client+"&type="+tc.qtype)
			var ex struct {
				Pop        string
				Addresses  []string
				Scope      int
				Outcome    string
				Candidates []struct {
					Address    string
					State      string
					DistanceKm *float64 `json:"distance_km"`
				}
			}
			if err := json.Unmarshal(body, &ex); err != nil || code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			r := s.query(append([]string{"www.example.org"}, tc.dig...)...)
			got := r.addresses()
			scope := ""
			if r.ecs != "" {
				scope = r.ecs[strings.LastIndex(r.ecs, "/")+1:]
			} else {
				scope = "0"
			}
			if ex.Outcome != "routed" || ex.Pop != tc.pop || strings.Join(ex.Addresses, " ") != strings.Join(got, " ") || strconv.Itoa(ex.Scope) != scope {
				t.Fatalf("explain says %s %v /%d (%s); DNS answers %v scope %s\n%s", ex.Pop, ex.Addresses, ex.Scope, ex.Outcome, got, scope, body)
			}
			if len(ex.Candidates) != 3 || ex.Candidates[0].DistanceKm == nil {
				t.Fatalf("candidates %+v", ex.Candidates)
			}
			for _, c := range ex.Candidates {
				if (c.Address == "192.0.2.10" || c.Address == "2001:db8:1::10") != (c.State == "drained") {
					t.Fatalf("candidate %s is %s", c.Address, c.State)
				}
			}
		})
	}
	t.Run("explaining is not counted as a query", func(t *testing.T) {
		before := s.metricSum("coredns_georoute_requests_total")
		adminCall(t, s.admin, "", "GET", "/explain?name=www.example.org&client=198.18.2.0/24")
		if after := s.metricSum("coredns_georoute_requests_total"); after != before {
			t.Fatalf("requests_total went from %v to %v", before, after)
		}
	})
}

// TestPopsShowHealth: GET /pops shows each address's health as the checker
// sees it (since, last_check), a pop whose checks fail as down, and the
// min_up guard counts it.
func TestPopsShowHealth(t *testing.T) {
	t.Parallel()
	backend := newHealthBackend(t, nil)
	backend.set("/"+steerNRT, http.StatusServiceUnavailable)
	backend.set("/[2001:db8:3::10]", http.StatusServiceUnavailable)
	checks := "        check " + backend.srv.URL + "/{address}\n        interval 1s\n        timeout 500ms\n        min_up 2\n"
	s := startSteerServer(t, filepath.Join(t.TempDir(), "state"), checks, nil)

	_, nrt := adminPop(t, s.admin, "", "nrt")
	if nrt["state"] != "down" {
		t.Fatalf("nrt: %v", nrt)
	}
	var v4 map[string]any
	for _, a := range nrt["addresses"].([]any) {
		if a.(map[string]any)["address"] == steerNRT {
			v4 = a.(map[string]any)
		}
	}
	check, _ := v4["last_check"].(map[string]any)
	if v4["healthy"] != false || v4["since"] == nil || check == nil || check["result"] != "fail" || check["detail"] == "" {
		t.Fatalf("nrt %s: %v", steerNRT, v4)
	}
	if _, err := time.Parse(time.RFC3339Nano, check["at"].(string)); err != nil {
		t.Fatalf("last_check at: %v", err)
	}
	_, lhr := adminPop(t, s.admin, "", "lhr")
	if lhr["state"] != "up" || lhr["addresses"].([]any)[0].(map[string]any)["last_check"].(map[string]any)["result"] != "ok" {
		t.Fatalf("lhr: %v", lhr)
	}
	code, obj := s.call("DELETE", "/pops/lhr")
	if code != 409 || obj["error"] != "draining lhr would leave 1 pops up (nrt down), fewer than min_up 2; add force=true to drain anyway" {
		t.Fatalf("DELETE /pops/lhr with nrt down: %d %v", code, obj)
	}
}

// TestOverrideScopeNeverMixes: an override of half of a database network
// narrows the SCOPE of both halves' answers, so that no cached answer
// covers clients with and without the override (invariant 3).
func TestOverrideScopeNeverMixes(t *testing.T) {
	t.Parallel()
	s := startSteerServer(t, filepath.Join(t.TempDir(), "state"), "        override 198.18.2.128/25 nrt\n", nil)
	for _, tc := range []struct{ subnet, want string }{
		{"198.18.2.0/24", steerLHR},   // 198.18.2.0 is outside the override
		{"198.18.2.0/25", steerLHR},   // the half without it
		{"198.18.2.128/25", steerNRT}, // the half with it
	} {
		r := s.query("www.example.org", "+subnet="+tc.subnet)
		got := r.addresses()
		scope, _ := strconv.Atoi(r.ecs[strings.LastIndex(r.ecs, "/")+1:])
		if len(got) != 1 || got[0] != tc.want || scope < 25 {
			t.Errorf("%s: %v with SCOPE /%d; want %s and a SCOPE of at least /25", tc.subnet, got, scope, tc.want)
		}
	}
}
