package georoute

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
)

// adminTest is an admin endpoint over the three test pops, bound to a free
// loopback port.
type adminTest struct {
	*drainTest
	api   *adminAPI
	base  string
	token string
	path  string
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newAdminTest(t *testing.T, token string) *adminTest {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state")
	at := &adminTest{drainTest: newDrainTest(t, fileStore{path: path}), token: token, path: path}
	at.api = &adminAPI{addr: freeLoopbackAddr(t), pops: at.pops, drains: at.d, minUp: 1}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		at.api.token = sum[:]
	}
	if err := at.api.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(at.api.stop)
	at.base = "http://" + at.api.addr
	return at
}

// do sends a request and returns the status and the decoded JSON body.
func (at *adminTest) do(t *testing.T, method, path, body string) (int, map[string]any, []any) {
	t.Helper()
	req, err := http.NewRequest(method, at.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if at.token != "" {
		req.Header.Set("Authorization", "Bearer "+at.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	var obj map[string]any
	var list []any
	if json.Unmarshal(raw, &obj) != nil && json.Unmarshal(raw, &list) != nil {
		t.Fatalf("%s %s: not JSON: %s", method, path, raw)
	}
	return resp.StatusCode, obj, list
}

func TestAdminPopsDrainRestore(t *testing.T) {
	at := newAdminTest(t, "")
	at.pops[2].addrs[0].down.Store(true) // nrt is down
	at.pops[0].addrs[0].since.Store(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	at.pops[0].addrs[0].lastCheck.Store(&checkResult{at: time.Date(2026, 12, 1, 10, 0, 5, 0, time.UTC), ok: true, detail: "200", duration: 1500 * time.Microsecond})

	t.Run("GET /pops shows every pop with state, drain and addresses", func(t *testing.T) {
		code, _, list := at.do(t, "GET", "/pops", "")
		if code != 200 || len(list) != 3 {
			t.Fatalf("%d %v", code, list)
		}
		nyc, nrt := list[0].(map[string]any), list[2].(map[string]any)
		if nyc["id"] != "nyc" || nyc["state"] != "up" || nyc["drain"] != nil || nyc["lat"] != 40.7128 {
			t.Fatalf("nyc: %v", nyc)
		}
		addr := nyc["addresses"].([]any)[0].(map[string]any)
		check := addr["last_check"].(map[string]any)
		if addr["address"] != "192.0.2.10" || addr["healthy"] != true || addr["since"] != "2026-12-01T10:00:00Z" ||
			check["result"] != "ok" || check["detail"] != "200" || check["duration_ms"] != 1.5 || check["at"] != "2026-12-01T10:00:05Z" {
			t.Fatalf("nyc address: %v", addr)
		}
		if nrt["state"] != "down" {
			t.Fatalf("nrt: %v", nrt)
		}
		if a := nrt["addresses"].([]any)[0].(map[string]any); a["since"] != nil || a["last_check"] != nil {
			t.Fatalf("unchecked address: %v", a)
		}
	})
	t.Run("DELETE /pops/LHR drains lhr, with an end and a reason", func(t *testing.T) {
		code, obj, _ := at.do(t, "DELETE", "/pops/LHR?for=1h&reason=fibre+cut", "")
		if code != 200 || obj["id"] != "lhr" || obj["state"] != "drained" {
			t.Fatalf("%d %v", code, obj)
		}
		drain := obj["drain"].(map[string]any)
		until, err := time.Parse(time.RFC3339, drain["until"].(string))
		if err != nil || drain["reason"] != "fibre cut" || time.Until(until) < 59*time.Minute || time.Until(until) > 61*time.Minute {
			t.Fatalf("drain %v", drain)
		}
		if at.drained() != "lhr" {
			t.Fatalf("drained %q", at.drained())
		}
	})
	t.Run("min_up refuses to drain the last pop up, with the reason", func(t *testing.T) {
		before := readFile(t, at.path)
		code, obj, _ := at.do(t, "DELETE", "/pops/nyc", "")
		if code != 409 || !strings.Contains(obj["error"].(string), "draining nyc would leave 0 pops up (lhr drained, nrt down), fewer than min_up 1; add force=true") {
			t.Fatalf("%d %v", code, obj)
		}
		if readFile(t, at.path) != before || at.drained() != "lhr" {
			t.Fatal("a refused drain changed the state")
		}
	})
	t.Run("force=true drains anyway, the JSON body works as the query does", func(t *testing.T) {
		code, obj, _ := at.do(t, "DELETE", "/pops/nyc", `{"force": true, "reason": "all hands"}`)
		if code != 200 || obj["state"] != "drained" || obj["drain"].(map[string]any)["until"] != nil {
			t.Fatalf("%d %v", code, obj)
		}
	})
	t.Run("PUT restores", func(t *testing.T) {
		code, obj, _ := at.do(t, "PUT", "/pops/nyc", "")
		if code != 200 || obj["state"] != "up" || obj["drain"] != nil {
			t.Fatalf("%d %v", code, obj)
		}
		if at.drained() != "lhr" {
			t.Fatalf("drained %q", at.drained())
		}
	})
	t.Run("bad requests get 4xx with a reason and change nothing", func(t *testing.T) {
		before := readFile(t, at.path)
		for _, tc := range []struct {
			method, path, body string
			code               int
			why                string
		}{
			{"DELETE", "/pops/fra", "", 404, `no pop "fra"; expected one of nyc, lhr, nrt`},
			{"PUT", "/pops/fra", "", 404, `no pop "fra"`},
			{"DELETE", "/pops/l_hr", "", 400, `pop id "l_hr"`},
			{"DELETE", "/pops/nyc?for=soon", "", 400, `for "soon"; expected a positive duration`},
			{"DELETE", "/pops/nyc?for=-1h", "", 400, `for "-1h"`},
			{"DELETE", "/pops/nyc?force=maybe", "", 400, `force "maybe"`},
			{"DELETE", "/pops/nyc?until=x", "", 400, `unknown parameter "until"`},
			{"DELETE", "/pops/nyc?for=1h&for=2h", "", 400, `parameter "for" given 2 times`},
			{"DELETE", "/pops/nyc?reason=until+later", "", 400, `reason starts with the word "until"`},
			{"DELETE", "/pops/nyc", `{"for": 5}`, 400, "body: json"},
			{"DELETE", "/pops/nyc", `{"fore": "1h"}`, 400, `body: json: unknown field "fore"`},
			{"DELETE", "/pops/nyc", strings.Repeat(" ", maxAdminBody+1), 413, "request body of 65537 bytes"},
			{"PUT", "/pops/nyc?x=1", "", 400, `unknown parameter "x"`},
			{"POST", "/pops/nyc", "", 405, "method POST; expected DELETE or PUT"},
			{"GET", "/pops/nyc", "", 405, "method GET"},
			{"DELETE", "/pops", "", 405, "method DELETE; expected GET"},
			{"GET", "/pops/nyc/addresses", "", 404, "no such endpoint"},
			{"GET", "/", "", 404, "no such endpoint /"},
			{"GET", "/explain?name=www.example.org&client=198.18.2.1/24", "", 400, "client 198.18.2.1/24 has bits set beyond /24; expected 198.18.2.0/24"},
			{"GET", "/explain?name=www.example.org&client=london", "", 400, `client "london"`},
			{"GET", "/explain?name=www.example.org&client=198.18.2.1&type=MX", "", 400, `type "MX"; expected A or AAAA`},
			{"GET", "/explain?client=198.18.2.1", "", 400, `name ""`},
		} {
			code, obj, _ := at.do(t, tc.method, tc.path, tc.body)
			msg, _ := obj["error"].(string)
			if code != tc.code || !strings.HasPrefix(msg, tc.why) || strings.Contains(msg, "\n") {
				t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, msg, tc.code, tc.why)
			}
		}
		if readFile(t, at.path) != before || at.drained() != "lhr" {
			t.Fatal("a bad request changed the state")
		}
	})
	t.Run("every request is counted by method and code", func(t *testing.T) {
		before := geodbTestCounter(t, adminRequestCount.WithLabelValues("PUT", "404"))
		at.do(t, "PUT", "/pops/fra", "")
		if n := geodbTestCounter(t, adminRequestCount.WithLabelValues("PUT", "404")) - before; n != 1 {
			t.Fatalf("counted %v", n)
		}
	})
}

func TestAdminToken(t *testing.T) {
	at := newAdminTest(t, "s3cret-token")
	for _, tc := range []struct {
		name, header string
		code         int
	}{
		{"the right token is let in", "Bearer s3cret-token", 200},
		{"no token is refused", "", 401},
		{"a wrong token is refused", "Bearer s3cret-tokeN", 401},
		{"a prefix of the token is refused", "Bearer s3cret", 401},
		{"another scheme is refused", "Basic s3cret-token", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("DELETE", at.base+"/pops/lhr", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if err := at.d.change(at.byID["lhr"], nil, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAdminListenerAcrossReloads(t *testing.T) {
	addr := freeLoopbackAddr(t)
	pops, _ := steerTestPops()
	instance := func(n int) *adminAPI {
		var set = newDrainTest(t, memoryStore{key: t.Name()})
		// Each instance is a Corefile load of its own, as after a reload.
		return &adminAPI{addr: addr, load: new(int), pops: pops[:n], drains: set.d, minUp: 1}
	}
	count := func() int {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/pops")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var list []any
		json.NewDecoder(resp.Body).Decode(&list)
		return len(list)
	}
	free := func() bool {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
		}
		return err == nil
	}

	t.Run("a reload hands the listener to the new instance", func(t *testing.T) {
		old, fresh := instance(1), instance(2)
		if err := old.start(); err != nil {
			t.Fatal(err)
		}
		// CoreDNS starts the new instance before it stops the old one.
		if err := fresh.start(); err != nil {
			t.Fatalf("the new instance could not take the address over: %v", err)
		}
		if got := count(); got != 2 {
			t.Fatalf("the new instance does not answer: %d pops", got)
		}
		old.stop()
		if got := count(); got != 2 {
			t.Fatalf("stopping the old instance broke the endpoint: %d", got)
		}
		fresh.stop()
		if !free() {
			t.Fatal("the port is still bound after the last instance stopped")
		}
	})
	t.Run("a failed reload hands the listener back", func(t *testing.T) {
		old, failed := instance(1), instance(2)
		old.start()
		failed.start()
		failed.stop() // the restart-failed callback stops the new load
		failed.stop()
		if got := count(); got != 1 {
			t.Fatalf("the old instance does not answer: %d", got)
		}
		old.stop()
		if !free() {
			t.Fatal("port still bound")
		}
	})
	t.Run("two blocks of one Corefile on one address are refused", func(t *testing.T) {
		first, second := instance(1), instance(2)
		second.load = first.load
		if err := first.start(); err != nil {
			t.Fatal(err)
		}
		err := second.start()
		if err == nil || !strings.Contains(err.Error(), "already the admin endpoint of another georoute block") {
			t.Fatalf("got %v", err)
		}
		if got := count(); got != 1 {
			t.Fatalf("the first block's endpoint answers %d pops", got)
		}
		second.stop()
		first.stop()
		if !free() {
			t.Fatal("port still bound")
		}
	})
	t.Run("20 reloads leave one listener and no extra goroutines", func(t *testing.T) {
		cur := instance(3)
		cur.start()
		count()
		http.DefaultClient.CloseIdleConnections()
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		before := runtime.NumGoroutine()
		for range 20 {
			next := instance(3)
			if err := next.start(); err != nil {
				t.Fatal(err)
			}
			cur.stop()
			cur = next
			if count() != 3 {
				t.Fatal("endpoint lost during reloads")
			}
		}
		http.DefaultClient.CloseIdleConnections()
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if after := runtime.NumGoroutine(); after > before {
			t.Fatalf("%d goroutines before, %d after 20 reloads", before, after)
		}
		if n := len(adminListeners.byAddr); n != 1 {
			t.Fatalf("%d listeners", n)
		}
		cur.stop()
		if !free() {
			t.Fatal("port still bound")
		}
	})
}

func TestParseAdmin(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("abc\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tc := range []struct {
		line, want string
	}{
		{"admin 127.0.0.1:8182", ""},
		{"admin [::1]:8182", ""},
		{"admin localhost:8182", ""},
		{"admin 0.0.0.0:8182 " + token, ""},
		{"admin :8182 " + token, ""},
		{"admin 0.0.0.0:8182", `Testfile:1 - Error during parsing: admin address "0.0.0.0:8182" is not loopback and has no TOKEN-FILE`},
		{"admin :8182", `admin address ":8182" is not loopback`},
		{"admin 192.0.2.1:8182", "is not loopback"},
		{"admin 127.0.0.1", `admin address "127.0.0.1"; expected HOST:PORT`},
		{"admin 127.0.0.1:0", "expected HOST:PORT"},
		{"admin 0.0.0.0:8182 " + empty, "admin token file: " + empty + " is empty"},
		{"admin 0.0.0.0:8182 " + filepath.Join(dir, "none"), "admin token file: open"},
		{"admin", "admin needs ADDRESS [TOKEN-FILE]"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.line)
			c.Next()
			a, err := parseAdmin(c, c.RemainingArgs(), (&blockParser{}).path)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tc.want == "") != (err == nil) || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if err == nil && strings.Contains(tc.line, token) {
				want := sha256.Sum256([]byte("abc"))
				if string(a.token) != string(want[:]) {
					t.Fatal("token not read")
				}
			}
		})
	}
}

func TestMinUpAtMostThePops(t *testing.T) {
	s := steerConfig{minUp: 4, minUpLine: 7}
	err := s.checkMinUp("Corefile", 3)
	if err == nil || err.Error() != "Corefile:7 - Error during parsing: min_up 4 is more than the 3 pops of this block; expected at most 3" {
		t.Fatalf("got %v", err)
	}
	if err := (&steerConfig{minUp: 3, minUpLine: 2}).checkMinUp("Corefile", 3); err != nil {
		t.Fatal(err)
	}
}
