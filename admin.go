package georoute

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// maxAdminBody is the largest request body the admin endpoint reads.
const maxAdminBody = 64 << 10

// adminAPI is the admin endpoint of one georoute instance: the pops and
// their state, drains and restores, and explanations of answers.
type adminAPI struct {
	addr string
	// load is the Corefile load (caddy context) of the instance: two
	// instances of one load on one address are two blocks that clash; of
	// two loads, a reload.
	load any
	// token is the SHA-256 of the bearer token; nil: no token (loopback).
	token  []byte
	pops   []*pop
	drains *drainControl
	// minUp is how many pops a drain must leave neither down nor drained.
	minUp int
	// explain answers GET /explain; it is the decision of the instance.
	explain func(explainRequest) (any, error)
}

// explainRequest is a validated GET /explain query.
type explainRequest struct {
	name string // FQDN
	// client is the address the query is asked for; with byECS it is sent
	// as an ECS option of that prefix, else it is the source address.
	client netip.Prefix
	byECS  bool
	qtype  uint16
}

// adminListener is one bound admin address. It outlives a Corefile reload:
// the new instance starts before the old one stops, so it takes the
// listener over instead of binding the port again; the last instance to
// stop closes it.
type adminListener struct {
	srv  *http.Server
	done chan struct{}
	// owners are the instances using the address, newest last; the newest
	// answers.
	owners  []*adminAPI
	current atomic.Pointer[adminAPI]
}

var adminListeners = struct {
	sync.Mutex
	byAddr map[string]*adminListener
}{byAddr: map[string]*adminListener{}}

// start serves the endpoint, binding the address unless an instance of an
// earlier load already does.
func (a *adminAPI) start() error {
	adminListeners.Lock()
	defer adminListeners.Unlock()
	if l := adminListeners.byAddr[a.addr]; l != nil {
		for _, o := range l.owners {
			if o.load == a.load {
				return fmt.Errorf("admin %s is already the admin endpoint of another georoute block; expected one address per block", a.addr)
			}
		}
		l.owners = append(l.owners, a)
		l.current.Store(a)
		return nil
	}
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("admin: %v", err)
	}
	l := &adminListener{owners: []*adminAPI{a}, done: make(chan struct{})}
	l.current.Store(a)
	l.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { l.current.Load().ServeHTTP(w, r) }),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    maxAdminBody,
		ErrorLog:          stdlog.New(io.Discard, "", 0),
	}
	adminListeners.byAddr[a.addr] = l
	go func() {
		defer close(l.done)
		l.srv.Serve(ln)
	}()
	return nil
}

// stop hands the address back to the instance that used it before (a
// reload that failed) or, when none is left, closes it and waits for the
// server's goroutines. Calling it twice is harmless.
func (a *adminAPI) stop() {
	adminListeners.Lock()
	l := adminListeners.byAddr[a.addr]
	if l == nil || !slices.Contains(l.owners, a) {
		adminListeners.Unlock()
		return
	}
	l.owners = slices.DeleteFunc(l.owners, func(x *adminAPI) bool { return x == a })
	if len(l.owners) > 0 {
		l.current.Store(l.owners[len(l.owners)-1])
		adminListeners.Unlock()
		return
	}
	delete(adminListeners.byAddr, a.addr)
	adminListeners.Unlock()
	l.srv.Close()
	<-l.done
}

// statusRecorder remembers the status a handler wrote, for the metric.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// ServeHTTP implements http.Handler.
func (a *adminAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	a.serve(rec, r)
	adminRequestCount.WithLabelValues(methodLabel(r.Method), strconv.Itoa(rec.code)).Inc()
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) {
	if a.token != nil && !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="georoute"`)
		fail(w, http.StatusUnauthorized, "missing or wrong bearer token; expected Authorization: Bearer <token>")
		return
	}
	body, status, msg := readBody(w, r)
	if status != 0 {
		fail(w, status, msg)
		return
	}
	path := r.URL.Path
	switch {
	case path == "/pops":
		if !allow(w, r, http.MethodGet) {
			return
		}
		if !noParams(w, r.URL.Query(), body) {
			return
		}
		out := make([]popJSON, len(a.pops))
		for i, p := range a.pops {
			out[i] = a.popJSON(p)
		}
		reply(w, http.StatusOK, out)
	case strings.HasPrefix(path, "/pops/") && !strings.Contains(path[len("/pops/"):], "/") && len(path) > len("/pops/"):
		if !allow(w, r, http.MethodDelete, http.MethodPut) {
			return
		}
		p, ok := a.findPop(w, path[len("/pops/"):])
		if !ok {
			return
		}
		if r.Method == http.MethodDelete {
			a.drain(w, r, p, body)
		} else if noParams(w, r.URL.Query(), body) {
			a.restore(w, p)
		}
	case path == "/explain":
		if !allow(w, r, http.MethodGet) {
			return
		}
		a.serveExplain(w, r, body)
	default:
		fail(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s; expected /pops, /pops/{id} or /explain", path))
	}
}

// authorized compares the bearer token in constant time (of the hashes,
// so that not even the token's length leaks).
func (a *adminAPI) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], a.token) == 1
}

// readBody reads at most maxAdminBody bytes; more is refused with 413.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	if r.ContentLength > maxAdminBody {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes; expected at most %d", r.ContentLength, maxAdminBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxAdminBody)
	case err != nil:
		return nil, http.StatusBadRequest, "cannot read the request body: " + err.Error()
	}
	return body, 0, ""
}

// allow answers 405 unless the method is one of methods (GET includes HEAD).
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) || (r.Method == http.MethodHead && slices.Contains(methods, http.MethodGet)) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s; expected %s", r.Method, strings.Join(methods, " or ")))
	return false
}

// noParams refuses a query string or a body where the endpoint takes none.
func noParams(w http.ResponseWriter, q url.Values, body []byte) bool {
	for k := range q {
		fail(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q; this endpoint takes none", k))
		return false
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		var empty struct{}
		if err := strictJSON(body, &empty); err != nil {
			fail(w, http.StatusBadRequest, "body: "+err.Error()+"; expected no body or {}")
			return false
		}
	}
	return true
}

// strictJSON decodes one JSON object into v, refusing unknown fields and
// trailing data.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

// findPop resolves an id case-insensitively (Lab 15's DELETE /pops/LHR).
func (a *adminAPI) findPop(w http.ResponseWriter, raw string) (*pop, bool) {
	id := strings.ToLower(raw)
	if !popID.MatchString(id) {
		fail(w, http.StatusBadRequest, fmt.Sprintf("pop id %q; expected letters, digits and '-'", raw))
		return nil, false
	}
	for _, p := range a.pops {
		if p.id == id {
			return p, true
		}
	}
	ids := make([]string, len(a.pops))
	for i, p := range a.pops {
		ids[i] = p.id
	}
	fail(w, http.StatusNotFound, fmt.Sprintf("no pop %q; expected one of %s", raw, strings.Join(ids, ", ")))
	return nil, false
}

// drainRequest is what DELETE /pops/{id} takes, in the query or as JSON.
type drainRequest struct {
	For    string `json:"for"`
	Reason string `json:"reason"`
	Force  bool   `json:"force"`
}

func (a *adminAPI) drain(w http.ResponseWriter, r *http.Request, p *pop, body []byte) {
	var req drainRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := strictJSON(body, &req); err != nil {
			fail(w, http.StatusBadRequest, "body: "+err.Error()+`; expected {"for": "30m", "reason": "...", "force": true}`)
			return
		}
	}
	for k, v := range r.URL.Query() {
		if len(v) != 1 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("parameter %q given %d times; expected once", k, len(v)))
			return
		}
		switch k {
		case "for":
			req.For = v[0]
		case "reason":
			req.Reason = v[0]
		case "force":
			f, err := strconv.ParseBool(v[0])
			if err != nil {
				fail(w, http.StatusBadRequest, fmt.Sprintf("force %q; expected true or false", v[0]))
				return
			}
			req.Force = f
		default:
			fail(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q; expected for, reason or force", k))
			return
		}
	}
	e := drainEntry{id: p.id, reason: req.Reason}
	if req.For != "" {
		d, err := time.ParseDuration(req.For)
		if err != nil || d <= 0 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("for %q; expected a positive duration such as 30m or 2h", req.For))
			return
		}
		// Whole seconds in the file, rounded up: a drain never ends early.
		e.until = time.Now().Add(d + time.Second - 1).Truncate(time.Second)
	}
	if why := validReason(e.reason, !e.until.IsZero()); why != "" {
		fail(w, http.StatusBadRequest, why)
		return
	}
	var guard func(func(*pop) bool) error
	if !req.Force {
		guard = func(isDrained func(*pop) bool) error { return a.guard(p, isDrained) }
	}
	if err := a.drains.change(p, &e, guard); err != nil {
		changeFailed(w, err)
		return
	}
	log.Infof("admin: drained %s", e)
	reply(w, http.StatusOK, a.popJSON(p))
}

func (a *adminAPI) restore(w http.ResponseWriter, p *pop) {
	if err := a.drains.change(p, nil, nil); err != nil {
		changeFailed(w, err)
		return
	}
	log.Infof("admin: pop %s restored", p.id)
	reply(w, http.StatusOK, a.popJSON(p))
}

// guardRefusal is min_up refusing a drain.
type guardRefusal struct{ msg string }

func (g *guardRefusal) Error() string { return g.msg }

// guard refuses to drain p when that would leave fewer than min_up pops
// neither down nor drained. Re-draining a drained pop changes nothing.
func (a *adminAPI) guard(p *pop, isDrained func(*pop) bool) error {
	if isDrained(p) {
		return nil
	}
	up := 0
	var out []string
	for _, q := range a.pops {
		switch {
		case q == p:
		case isDrained(q):
			out = append(out, q.id+" drained")
		case popDown(q):
			out = append(out, q.id+" down")
		default:
			up++
		}
	}
	if up >= a.minUp {
		return nil
	}
	others := ""
	if len(out) > 0 {
		others = " (" + strings.Join(out, ", ") + ")"
	}
	return &guardRefusal{fmt.Sprintf("draining %s would leave %d pops up%s, fewer than min_up %d; add force=true to drain anyway", p.id, up, others, a.minUp)}
}

// changeFailed answers a drain or restore that did not happen: the state
// is as it was.
func changeFailed(w http.ResponseWriter, err error) {
	var refusal *guardRefusal
	switch {
	case errors.As(err, &refusal), errors.Is(err, errStateBroken):
		fail(w, http.StatusConflict, err.Error())
	default:
		// The state file cannot be read or written (a read-only
		// ConfigMap, a full disk): the server is fine, the store is not.
		fail(w, http.StatusServiceUnavailable, err.Error())
	}
}

// popDown reports whether no address of p is healthy.
func popDown(p *pop) bool {
	for _, a := range p.addrs {
		if a.healthy() {
			return false
		}
	}
	return true
}

// popJSON is a pop as GET /pops shows it.
type popJSON struct {
	ID        string        `json:"id"`
	Lat       float64       `json:"lat"`
	Lon       float64       `json:"lon"`
	State     string        `json:"state"`
	Drain     *drainJSON    `json:"drain"`
	Addresses []addressJSON `json:"addresses"`
}

type drainJSON struct {
	Until  *string `json:"until"`
	Reason string  `json:"reason"`
}

type addressJSON struct {
	Address   string     `json:"address"`
	Healthy   bool       `json:"healthy"`
	Since     *string    `json:"since"`
	LastCheck *checkJSON `json:"last_check"`
}

type checkJSON struct {
	At         string  `json:"at"`
	Result     string  `json:"result"`
	Detail     string  `json:"detail"`
	DurationMs float64 `json:"duration_ms"`
}

func (a *adminAPI) popJSON(p *pop) popJSON {
	out := popJSON{ID: p.id, Lat: p.lat, Lon: p.lon, State: "up", Addresses: make([]addressJSON, len(p.addrs))}
	if popDown(p) {
		out.State = "down"
	}
	if e, on := a.drains.drained(p); on {
		out.State = "drained"
		out.Drain = &drainJSON{Reason: e.reason}
		if !e.until.IsZero() {
			u := e.until.UTC().Format(time.RFC3339)
			out.Drain.Until = &u
		}
	}
	for i, addr := range p.addrs {
		aj := addressJSON{Address: addr.addr.String(), Healthy: addr.healthy()}
		if ns := addr.since.Load(); ns != 0 {
			s := time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
			aj.Since = &s
		}
		if c := addr.lastCheck.Load(); c != nil {
			result := "fail"
			if c.ok {
				result = "ok"
			}
			aj.LastCheck = &checkJSON{At: c.at.UTC().Format(time.RFC3339Nano), Result: result, Detail: c.detail, DurationMs: float64(c.duration.Microseconds()) / 1000}
		}
		out.Addresses[i] = aj
	}
	return out
}

// serveExplain validates GET /explain?name=&client=&type= and answers with
// the instance's decision for it.
func (a *adminAPI) serveExplain(w http.ResponseWriter, r *http.Request, body []byte) {
	if len(strings.TrimSpace(string(body))) > 0 {
		fail(w, http.StatusBadRequest, "GET /explain takes no body; expected ?name=NAME&client=ADDR[/PREFIX]&type=A|AAAA")
		return
	}
	req, msg := parseExplainQuery(r.URL.Query())
	if msg != "" {
		fail(w, http.StatusBadRequest, msg)
		return
	}
	if a.explain == nil {
		fail(w, http.StatusServiceUnavailable, "explain is not available in this instance")
		return
	}
	out, err := a.explain(req)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	reply(w, http.StatusOK, out)
}

func parseExplainQuery(q url.Values) (explainRequest, string) {
	for k, v := range q {
		switch k {
		case "name", "client", "type":
			if len(v) != 1 {
				return explainRequest{}, fmt.Sprintf("parameter %q given %d times; expected once", k, len(v))
			}
		default:
			return explainRequest{}, fmt.Sprintf("unknown parameter %q; expected name, client and type", k)
		}
	}
	req := explainRequest{qtype: dns.TypeA}
	name := q.Get("name")
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return explainRequest{}, fmt.Sprintf("name %q; expected a domain name such as www.example.org", name)
	}
	req.name = dns.CanonicalName(name)
	client := q.Get("client")
	if strings.Contains(client, "/") {
		p, err := netip.ParsePrefix(client)
		if err != nil || p.Addr().Zone() != "" {
			return explainRequest{}, fmt.Sprintf("client %q; expected an address or ADDR/PREFIX such as 198.51.100.0/24", client)
		}
		if p != p.Masked() {
			return explainRequest{}, fmt.Sprintf("client %s has bits set beyond /%d; expected %s", client, p.Bits(), p.Masked())
		}
		req.client, req.byECS = p, true
	} else {
		addr, err := netip.ParseAddr(client)
		if err != nil || addr.Zone() != "" {
			return explainRequest{}, fmt.Sprintf("client %q; expected an address or ADDR/PREFIX such as 198.51.100.0/24", client)
		}
		req.client = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
	}
	switch t := strings.ToUpper(q.Get("type")); t {
	case "", "A":
	case "AAAA":
		req.qtype = dns.TypeAAAA
	default:
		return explainRequest{}, fmt.Sprintf("type %q; expected A or AAAA", q.Get("type"))
	}
	return req, ""
}

// reply writes v as indented JSON (the endpoint is read by people with
// curl as much as by programs).
func reply(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusServiceUnavailable, []byte(`{"error": "cannot encode the reply"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// fail answers with a status and a one-line reason.
func fail(w http.ResponseWriter, status int, msg string) {
	reply(w, status, struct {
		Error string `json:"error"`
	}{msg})
}
