package georoute

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

var log = clog.NewWithPlugin(pluginName)

// healthConfig is the health-check part of the georoute block.
type healthConfig struct {
	// template is the top-level `check`, with {address}; empty: none.
	template string
	// interval between two probes of one target; default 10s.
	interval time.Duration
	// timeout of one probe, below interval; default 2s.
	timeout time.Duration
	// rise consecutive successes bring a target back; default 2.
	rise int
	// fall consecutive failures take it out; default 3.
	fall int
	// roots verify https:// probes; nil: the system roots.
	roots *x509.CertPool
}

func defaultHealthConfig() healthConfig {
	return healthConfig{interval: 10 * time.Second, timeout: 2 * time.Second, rise: 2, fall: 3}
}

// maxProbeBody is how much of an HTTP(S) probe's body is read: enough to
// drain a normal health page, little enough that an endless body cannot keep
// a prober busy.
const maxProbeBody = 64 << 10

// maxProbeHeaders caps an HTTP(S) probe's response headers as maxProbeBody
// caps its body: net/http would otherwise read up to 10 MiB of them, at
// every probe of a hostile or broken target.
const maxProbeHeaders = 16 << 10

// hysteresis is the rise/fall state machine of one target.
type hysteresis struct {
	healthy    bool
	streak     int // consecutive results that disagree with healthy
	rise, fall int
}

// observe records one probe result and reports whether the state flipped.
func (h *hysteresis) observe(ok bool) bool {
	if ok == h.healthy {
		h.streak = 0
		return false
	}
	h.streak++
	need := h.fall
	if ok {
		need = h.rise
	}
	if h.streak < need {
		return false
	}
	h.healthy, h.streak = ok, 0
	return true
}

// target is one probe: a pop's own check (all its addresses share the
// result) or the template applied to one address.
type target struct {
	url   string
	pop   *pop
	addrs []*popAddress
	state hysteresis
	// known is set when the target's URL was probed before this checker
	// started (a Corefile reload): its state carries on through hysteresis
	// instead of being set by the first result.
	known bool
	since int64 // UnixNano of the last change of state; 0: never
}

// healthChecker owns the probing goroutines of one georoute instance.
type healthChecker struct {
	cfg     healthConfig
	targets []*target
	// unchecked are the addresses no probe covers: always in service.
	unchecked []*popAddress
	client    *http.Client
	dialer    net.Dialer

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopped makes stop idempotent: the health memory counts each
	// target's URL once per start.
	stopped sync.Once
	// gen orders checkers by start, for the pop_healthy series.
	gen uint64
}

func newHealthChecker(cfg healthConfig, pops []*pop) *healthChecker {
	hc := &healthChecker{cfg: cfg, dialer: net.Dialer{Timeout: cfg.timeout}}
	for _, p := range pops {
		switch {
		case p.check == "" && cfg.template == "":
			hc.unchecked = append(hc.unchecked, p.addrs...)
		case p.check != "":
			hc.targets = append(hc.targets, &target{url: p.check, pop: p, addrs: p.addrs})
		case cfg.template != "":
			for _, a := range p.addrs {
				host := a.addr.String()
				if a.addr.Is6() {
					host = "[" + host + "]"
				}
				hc.targets = append(hc.targets, &target{url: strings.ReplaceAll(cfg.template, "{address}", host), pop: p, addrs: []*popAddress{a}})
			}
		}
	}
	for _, t := range hc.targets {
		t.state = hysteresis{healthy: true, rise: cfg.rise, fall: cfg.fall}
	}
	hc.client = &http.Client{
		Transport: &http.Transport{
			// Probes go straight to the backend, never through a proxy from
			// the environment, and each opens a fresh connection as a new
			// client would.
			Proxy:                  nil,
			DisableKeepAlives:      true,
			TLSClientConfig:        &tls.Config{RootCAs: cfg.roots},
			TLSHandshakeTimeout:    cfg.timeout,
			MaxResponseHeaderBytes: maxProbeHeaders,
		},
		// A redirect is an answer, and not a 2xx one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return hc
}

// start runs the first round of probes at once, applies its results directly
// and calls done; then every target is probed once per interval, each at its
// own phase so that the probes are spread over the interval. A target whose
// URL a running checker already probes (a Corefile reload) starts from that
// checker's state, and its first result goes through hysteresis; any other
// checked address is down until its first probe says up.
func (hc *healthChecker) start(done func()) {
	healthSeries.enroll(hc)
	for _, a := range hc.unchecked {
		healthSeries.set(hc, healthKey(a), true)
	}
	for _, t := range hc.targets {
		rec, known := healthMemory.join(t.url)
		t.known = known
		if !known {
			for _, a := range t.addrs {
				a.down.Store(true)
			}
			continue
		}
		t.state.healthy, t.state.streak, t.since = rec.healthy, rec.streak, rec.since
		for _, a := range t.addrs {
			a.down.Store(!rec.healthy)
			a.since.Store(rec.since)
			a.lastCheck.Store(rec.last)
			healthSeries.set(hc, healthKey(a), rec.healthy)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	hc.cancel = cancel
	var first sync.WaitGroup
	first.Add(len(hc.targets))
	for _, t := range hc.targets {
		hc.wg.Add(1)
		go func() {
			defer hc.wg.Done()
			hc.run(ctx, t, first.Done)
		}()
	}
	hc.wg.Add(1)
	go func() {
		defer hc.wg.Done()
		first.Wait()
		done()
	}()
}

// stop ends every prober, including probes in flight, and waits for them.
func (hc *healthChecker) stop() {
	if hc.cancel == nil {
		return // never started
	}
	hc.stopped.Do(func() {
		hc.cancel()
		hc.wg.Wait()
		for _, t := range hc.targets {
			healthMemory.leave(t.url)
		}
		healthSeries.release(hc)
	})
}

func (hc *healthChecker) run(ctx context.Context, t *target, firstDone func()) {
	begin := time.Now()
	res := hc.probe(ctx, t)
	if ctx.Err() != nil {
		firstDone()
		return
	}
	hc.observe(t, res, !t.known)
	firstDone()

	// The phase is shifted once, by less than an interval from the first
	// probe, so two probes of a target are never more than an interval apart.
	next := begin.Add(rand.N(hc.cfg.interval))
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		res := hc.probe(ctx, t)
		if ctx.Err() != nil {
			return
		}
		hc.observe(t, res, false)
		next = next.Add(hc.cfg.interval)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		timer.Reset(time.Until(next))
	}
}

// observe applies one probe result to t. The first result of a target new
// to the process takes effect directly (there is no history to smooth);
// every other one goes through rise/fall.
func (hc *healthChecker) observe(t *target, res *checkResult, first bool) {
	for _, a := range t.addrs {
		a.lastCheck.Store(res)
	}
	flipped := first
	if first {
		t.state.healthy, t.state.streak = res.ok, 0
	} else {
		flipped = t.state.observe(res.ok)
	}
	if flipped {
		t.since = res.at.UnixNano()
		hc.publish(t, res.ok)
		switch {
		case first && !res.ok:
			log.Infof("pop %s %s down: %s at start-up", t.pop.id, t.label(), res.detail)
		case first:
		case res.ok:
			log.Infof("pop %s %s up: after %d successes", t.pop.id, t.label(), hc.cfg.rise)
		default:
			log.Infof("pop %s %s down: %s after %d failures", t.pop.id, t.label(), res.detail, hc.cfg.fall)
		}
	}
	healthMemory.remember(t.url, t.state, t.since, res)
}

// publish makes a target's state visible to queries and metrics.
func (hc *healthChecker) publish(t *target, healthy bool) {
	for _, a := range t.addrs {
		a.since.Store(t.since)
		a.down.Store(!healthy)
		healthSeries.set(hc, healthKey(a), healthy)
	}
}

// label names a target in logs: its address, or the pop's check URL.
func (t *target) label() string {
	if len(t.addrs) == 1 && t.pop.check == "" {
		return t.addrs[0].addr.String()
	}
	return t.url
}

// probe runs one check and says how it went.
func (hc *healthChecker) probe(ctx context.Context, t *target) *checkResult {
	ctx, cancel := context.WithTimeout(ctx, hc.cfg.timeout)
	defer cancel()
	res := &checkResult{at: time.Now()}
	err := hc.check(ctx, t.url)
	res.duration = time.Since(res.at)
	healthcheckDuration.WithLabelValues(t.pop.id).Observe(res.duration.Seconds())
	if err != nil {
		healthcheckCount.WithLabelValues(t.pop.id, "fail").Inc()
		res.detail = err.Error()
		return res
	}
	healthcheckCount.WithLabelValues(t.pop.id, "ok").Inc()
	res.ok = true
	return res
}

func (hc *healthChecker) check(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme == "tcp" {
		conn, err := hc.dialer.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return shortError(err)
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "coredns-georoute")
	resp, err := hc.client.Do(req)
	if err != nil {
		return shortError(err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%d", resp.StatusCode)
	}
	if err != nil && ctx.Err() != nil {
		return errors.New("timeout reading body")
	}
	return nil
}

// shortError strips the URL that net/http repeats in every error.
func shortError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timeout")
	}
	return err
}

// loadCA reads a PEM bundle of the roots that verify https:// probes.
func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
