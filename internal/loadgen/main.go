// Command loadgen is the load generator of `make bench` for what dnsperf
// cannot do: give every query another EDNS Client Subnet (dnsperf's -E sends
// one fixed option). It keeps a fixed number of queries in flight over UDP
// for a fixed duration, cycling through the client subnets of a file, and
// prints one line:
//
//	qps=28512 avg_ms=0.512 p99_ms=1.870 sent=285300 answered=285120 lost=0 errors=0 subnets=50000
//
// lost counts queries without a reply within -timeout; errors counts replies
// that are not NOERROR with at least one answer record.
//
//	loadgen -server 127.0.0.1:1053 -name www.example.org -subnets subnets.txt -inflight 32 -duration 10s
//	loadgen -server 127.0.0.1:1053 -name www.example.org -ecs 81.2.69.0/24 -check 1
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

func main() {
	server := flag.String("server", "127.0.0.1:1053", "UDP address of the server under test")
	name := flag.String("name", "www.example.org", "name to query")
	qtype := flag.String("type", "A", "query type")
	subnetsFile := flag.String("subnets", "", "file of client subnets (CIDR, one a line) to cycle through")
	ecs := flag.String("ecs", "", "one fixed client subnet (instead of -subnets)")
	inflight := flag.Int("inflight", 32, "queries kept in flight")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	timeout := flag.Duration("timeout", time.Second, "a query without a reply after this is lost")
	procs := flag.Int("procs", 1, "GOMAXPROCS of the generator (leave the other cores to the server)")
	check := flag.Int("check", 0, "instead of load, query this many subnets (spread over the list) one by one and print the answers")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)

	if err := run(*server, *name, *qtype, *subnetsFile, *ecs, *inflight, *duration, *timeout, *check); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(server, name, qtype, subnetsFile, ecs string, inflight int, duration, timeout time.Duration, check int) error {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return fmt.Errorf("query type %q", qtype)
	}
	var subnets []netip.Prefix
	switch {
	case subnetsFile != "" && ecs != "":
		return errors.New("-subnets and -ecs exclude each other")
	case subnetsFile != "":
		var err error
		if subnets, err = readSubnets(subnetsFile); err != nil {
			return err
		}
	case ecs != "":
		p, err := netip.ParsePrefix(ecs)
		if err != nil {
			return err
		}
		subnets = []netip.Prefix{p.Masked()}
	}
	if check > 0 {
		return checkAnswers(server, name, t, subnets, check)
	}
	if inflight < 1 || duration <= 0 || timeout <= 0 {
		return errors.New("-inflight, -duration and -timeout must be positive")
	}
	queries, err := packQueries(name, t, subnets)
	if err != nil {
		return err
	}
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return err
	}
	return load(raddr, queries, len(subnets), inflight, duration, timeout)
}

func readSubnets(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var subnets []netip.Prefix
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, err := netip.ParsePrefix(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		subnets = append(subnets, p.Masked())
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if len(subnets) == 0 {
		return nil, fmt.Errorf("%s: no subnets", path)
	}
	return subnets, nil
}

// query builds the query for one client subnet; nil subnets gives a query
// without ECS.
// recursion sets RD: a resolver in front of the server (the resolver-cache
// scenario) refuses queries without it.
var recursion = flag.Bool("rd", false, "set RD (recursion desired), for a resolver in front of the server")

func query(name string, t uint16, subnet *netip.Prefix) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), t)
	m.RecursionDesired = *recursion
	m.SetEdns0(1232, false)
	if subnet != nil {
		family := uint16(1)
		if subnet.Addr().Is6() {
			family = 2
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{
			Code:          dns.EDNS0SUBNET,
			Family:        family,
			SourceNetmask: uint8(subnet.Bits()),
			Address:       subnet.Addr().AsSlice(),
		})
	}
	return m
}

// packQueries packs one query per subnet once, so that sending costs a copy
// and a new ID, not a pack.
func packQueries(name string, t uint16, subnets []netip.Prefix) ([][]byte, error) {
	if len(subnets) == 0 {
		b, err := query(name, t, nil).Pack()
		return [][]byte{b}, err
	}
	out := make([][]byte, len(subnets))
	for i := range subnets {
		b, err := query(name, t, &subnets[i]).Pack()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", subnets[i], err)
		}
		out[i] = b
	}
	return out, nil
}

// tally is one worker's count; merged once at the end.
type tally struct {
	latencies                     []time.Duration
	sent, answered, lost, errored int
}

// load runs inflight workers, each with its own socket and one query in
// flight at a time, until duration has passed.
func load(raddr *net.UDPAddr, queries [][]byte, subnets, inflight int, duration, timeout time.Duration) error {
	var next atomic.Uint64
	tallies := make([]tally, inflight)
	conns := make([]*net.UDPConn, inflight)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	start := time.Now()
	end := start.Add(duration)
	var wg sync.WaitGroup
	for w := range inflight {
		wg.Go(func() {
			tl := &tallies[w]
			tl.latencies = make([]time.Duration, 0, 1<<16)
			c := conns[w]
			buf := make([]byte, 512)
			reply := make([]byte, 4096)
			id := uint16(w * 7919)
			for time.Now().Before(end) {
				q := queries[next.Add(1)%uint64(len(queries))]
				buf = append(buf[:0], q...)
				id++
				binary.BigEndian.PutUint16(buf, id)
				sentAt := time.Now()
				if _, err := c.Write(buf); err != nil {
					tl.errored++
					continue
				}
				tl.sent++
				c.SetReadDeadline(sentAt.Add(timeout))
				// Skip late replies to earlier, lost queries; the deadline
				// bounds this loop.
				for {
					n, err := c.Read(reply)
					if err != nil {
						tl.lost++
						break
					}
					if n < 12 || binary.BigEndian.Uint16(reply) != id {
						continue
					}
					tl.latencies = append(tl.latencies, time.Since(sentAt))
					rcode := reply[3] & 0x0f
					ancount := binary.BigEndian.Uint16(reply[6:])
					if rcode == dns.RcodeSuccess && ancount > 0 {
						tl.answered++
					} else {
						tl.errored++
					}
					break
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var total tally
	for _, tl := range tallies {
		total.latencies = append(total.latencies, tl.latencies...)
		total.sent += tl.sent
		total.answered += tl.answered
		total.lost += tl.lost
		total.errored += tl.errored
	}
	var avg, p99 time.Duration
	if n := len(total.latencies); n > 0 {
		slices.Sort(total.latencies)
		var sum time.Duration
		for _, l := range total.latencies {
			sum += l
		}
		avg = sum / time.Duration(n)
		p99 = total.latencies[min(n-1, n*99/100)]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Printf("qps=%.0f avg_ms=%.3f p99_ms=%.3f sent=%d answered=%d lost=%d errors=%d subnets=%d\n",
		float64(len(total.latencies))/elapsed.Seconds(), ms(avg), ms(p99),
		total.sent, total.answered, total.lost, total.errored, subnets)
	return nil
}

// checkAnswers prints, for n subnets spread over the list, the addresses
// answered and the ECS scope returned, one line each:
// "81.2.69.0/24 NOERROR 69.4.13.1 scope=24".
func checkAnswers(server, name string, t uint16, subnets []netip.Prefix, n int) error {
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	var try []*netip.Prefix
	if len(subnets) > 0 {
		step := max(1, len(subnets)/n)
		for i := 0; i < len(subnets) && len(try) < n; i += step {
			try = append(try, &subnets[i])
		}
	}
	if len(try) == 0 {
		try = []*netip.Prefix{nil}
	}
	for _, s := range try {
		r, _, err := c.Exchange(query(name, t, s), server)
		if err != nil {
			return err
		}
		label := "no-ecs"
		if s != nil {
			label = s.String()
		}
		var addrs []string
		for _, rr := range r.Answer {
			switch a := rr.(type) {
			case *dns.A:
				addrs = append(addrs, a.A.String())
			case *dns.AAAA:
				addrs = append(addrs, a.AAAA.String())
			}
		}
		scope := "none"
		if o := r.IsEdns0(); o != nil {
			for _, opt := range o.Option {
				if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
					scope = fmt.Sprint(e.SourceScope)
				}
			}
		}
		fmt.Printf("%s %s %s scope=%s\n", label, dns.RcodeToString[r.Rcode], strings.Join(addrs, ","), scope)
	}
	return nil
}
