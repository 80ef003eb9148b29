package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// demoPopsCorefile serves the demo zone with the demo pops and metrics.
const demoPopsCorefile = `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    prometheus {metrics}
    georoute www.example.org {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
    }
    file {testdata}/example.org.zone
}
`

// resolver is a real recursive resolver (Debian's unbound) with an ECS
// cache, in front of a georoute server.
type resolver struct {
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

// startUnbound runs unbound on a loopback port with `subnetcache`, sending
// ECS to the georoute server at 127.0.0.1:upstream through a stub zone.
func startUnbound(t *testing.T, upstream int) *resolver {
	t.Helper()
	bin, err := exec.LookPath("unbound")
	if err != nil {
		t.Fatalf("unbound is not installed (.ci/run installs Debian's unbound): %v", err)
	}
	dir := t.TempDir()
	r := &resolver{port: freePort(t), exited: make(chan struct{}), out: &syncBuffer{}}
	conf := fmt.Sprintf(`server:
    interface: 127.0.0.1
    port: %d
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "%s"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-ip6: no
    module-config: "subnetcache iterator"
    send-client-subnet: 127.0.0.1
    client-subnet-always-forward: yes
    do-not-query-localhost: no
    domain-insecure: "example.org"
    access-control: 127.0.0.0/8 allow
stub-zone:
    name: "example.org"
    stub-addr: 127.0.0.1@%d
remote-control:
    control-enable: no
`, r.port, dir, upstream)
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run(t, bin, "-d", "-c", path)
	return r
}

// startPdnsRecursor runs PowerDNS Recursor on a loopback port, forwarding
// example.org to the georoute server with ECS taken from the client's option.
func startPdnsRecursor(t *testing.T, upstream int) *resolver {
	t.Helper()
	bin, err := exec.LookPath("pdns_recursor")
	if err != nil {
		t.Fatalf("pdns_recursor is not installed (.ci/run installs Debian's pdns-recursor): %v", err)
	}
	dir := t.TempDir()
	r := &resolver{port: freePort(t), exited: make(chan struct{}), out: &syncBuffer{}}
	conf := fmt.Sprintf(`local-address=127.0.0.1
local-port=%d
forward-zones=example.org=127.0.0.1:%d
edns-subnet-allow-list=example.org
use-incoming-edns-subnet=yes
ecs-ipv4-bits=24
daemon=no
write-pid=no
socket-dir=%s
dnssec=off
allow-from=127.0.0.0/8
setuid=
setgid=
`, r.port, upstream, dir)
	if err := os.WriteFile(filepath.Join(dir, "recursor.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run(t, bin, "--config-dir="+dir)
	return r
}

// run starts the resolver process and waits until it answers.
func (r *resolver) run(t *testing.T, bin string, args ...string) {
	t.Helper()
	r.cmd = exec.Command(bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() { stopProcess(r.cmd, r.exited) })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			t.Fatalf("%s exited:\n%s", bin, r.out.String())
		default:
		}
		out, err := exec.Command("dig", "@127.0.0.1", "-p", fmt.Sprint(r.port), "+time=1", "+tries=1", "version.bind", "CH", "TXT").CombinedOutput()
		if err == nil && strings.Contains(string(out), "status:") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer within 10s:\n%s", bin, r.out.String())
}

func (r *resolver) query(t *testing.T, args ...string) reply {
	t.Helper()
	full := append([]string{"@127.0.0.1", "-p", fmt.Sprint(r.port), "+time=3", "+tries=1"}, args...)
	out, err := exec.Command("dig", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig via unbound %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return parseDig(string(out))
}

// routedQueries is how many queries georoute has routed so far.
func routedQueries(s *server) float64 { return s.metricSum("coredns_georoute_requests_total") }

// The SCOPE georoute returns is what lets a resolver's ECS cache keep one
// city's answer from another: each client, asking twice, gets its own
// nearest pop, and the second answers come from the resolver's cache.
func TestResolverInFrontKeepsCitiesApart(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]func(*testing.T, int) *resolver{
		"unbound":       startUnbound,
		"pdns-recursor": startPdnsRecursor,
	} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, demoPopsCorefile, nil)
			checkCitiesApart(t, s, start(t, s.port))
		})
	}
}

func checkCitiesApart(t *testing.T, s *server, ub *resolver) {
	t.Helper()
	clients := []struct{ city, subnet, want string }{
		{"New York", "198.18.1.0/24", "192.0.2.10"},
		{"Tokyo", "198.18.3.0/24", "203.0.113.10"},
		{"London", "198.18.2.0/24", "198.51.100.10"},
	}
	for round := 1; round <= 2; round++ {
		for _, c := range clients {
			r := ub.query(t, "www.example.org", "+subnet="+c.subnet)
			if got := r.addresses(); len(got) != 1 || got[0] != c.want {
				t.Fatalf("round %d: client in %s got %v through the resolver; want [%s]\n%s", round, c.city, got, c.want, r.raw)
			}
		}
		if round == 1 {
			if n := routedQueries(s); n != float64(len(clients)) {
				t.Fatalf("georoute routed %v queries in the first round; want %d (one per city)", n, len(clients))
			}
		}
	}
	// Second round: every answer came from the resolver's cache, none reached
	// georoute, and still each city got its own pop.
	if n := routedQueries(s); n != float64(len(clients)) {
		t.Errorf("georoute routed %v queries after the second round; want %d: the resolver should have answered from its ECS cache", n, len(clients))
	}

	// A client in Paris, inside no cached scope, is a cache miss and gets
	// London.
	if got := ub.query(t, "www.example.org", "+subnet=198.18.4.0/24").addresses(); len(got) != 1 || got[0] != "198.51.100.10" {
		t.Errorf("client in Paris got %v through the resolver; want [198.51.100.10]", got)
	}
}
