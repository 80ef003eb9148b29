package georoute

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// explainView is GET /explain's answer: the decision georoute made for one
// query, as JSON. It is filled by the same decision that answers DNS, so
// the two cannot disagree.
type explainView struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Client string `json:"client"`
	// ByECS is set when the client was asked about as an ECS option (from
	// a resolver on loopback), not as the source address.
	ByECS   bool   `json:"by_ecs"`
	Rcode   string `json:"rcode"`
	Outcome string `json:"outcome"`
	// Pop is the first chosen pop; null for an anonymous site, fallback all
	// or an answer georoute did not route.
	Pop        *string         `json:"pop"`
	Addresses  []string        `json:"addresses"`
	Scope      *int            `json:"scope"`
	Source     string          `json:"source,omitempty"`
	Location   *locationView   `json:"location"`
	Override   *overrideView   `json:"override"`
	FailOpen   bool            `json:"fail_open"`
	AllDrained bool            `json:"all_drained"`
	Candidates []candidateView `json:"candidates"`
}

type locationView struct {
	Lookup   string   `json:"lookup"`
	Located  bool     `json:"located"`
	Lat      *float64 `json:"lat"`
	Lon      *float64 `json:"lon"`
	Prefix   int      `json:"prefix"`
	Database string   `json:"database"`
}

type overrideView struct {
	Network string   `json:"network"`
	Pops    []string `json:"pops"`
	// Applied is false when none of the listed pops was eligible.
	Applied bool `json:"applied"`
}

type candidateView struct {
	Address    string   `json:"address"`
	Pop        *string  `json:"pop"`
	State      string   `json:"state"`
	Eligible   bool     `json:"eligible"`
	DistanceKm *float64 `json:"distance_km"`
}

var outcomeNames = map[outcome]string{
	outcomeNotRouted: "not routed",
	outcomeNoRecords: "no records",
	outcomeSigned:    "signed",
	outcomeRouted:    "routed",
}

// fill records the decision d for the reply res.
func (v *explainView) fill(g *GeoRoute, res *dns.Msg, d *decision) {
	v.Rcode, v.Outcome = dns.RcodeToString[res.Rcode], outcomeNames[d.outcome]
	if d.outcome != outcomeRouted {
		return
	}
	v.Source = d.source
	if d.nearest != nil {
		v.Pop = &d.nearest.id
	}
	for _, rr := range d.kept {
		v.Addresses = append(v.Addresses, addrOf(rr).String())
	}
	scope := d.scope
	v.Scope = &scope
	loc := &locationView{Lookup: d.lookup.String(), Located: d.loc.located, Prefix: d.loc.prefix, Database: g.db.describe(d.lookup)}
	if d.loc.located {
		lat, lon := d.loc.lat, d.loc.lon
		loc.Lat, loc.Lon = &lat, &lon
	}
	v.Location = loc
	if d.rule != nil {
		o := &overrideView{Network: d.rule.prefix.String(), Applied: d.ruled}
		for _, p := range d.rule.pops {
			o.Pops = append(o.Pops, p.id)
		}
		v.Override = o
	}
	v.FailOpen, v.AllDrained = d.failOpen, d.allDrained
	for i := range d.cands {
		c := &d.cands[i]
		cv := candidateView{Address: addrOf(c.rr).String(), State: d.state[i].String(), Eligible: d.eligible[i]}
		if c.pop != nil {
			cv.Pop = &c.pop.id
		}
		if d.placed && c.located {
			km := distanceKm(d.from, c.at)
			cv.DistanceKm = &km
		}
		v.Candidates = append(v.Candidates, cv)
	}
}

// explainJSON answers GET /explain: it asks the server block's chain for
// the name as the client would — from the client's address, or with an ECS
// option of ADDR/PREFIX from a resolver on loopback — and returns the
// decision georoute made for it, without counting it in the metrics.
func (g *GeoRoute) explainJSON(req explainRequest) (any, error) {
	m := new(dns.Msg)
	m.SetQuestion(req.name, req.qtype)
	m.SetEdns0(1232, false)
	remote := req.client.Addr()
	if req.byECS {
		remote = netip.MustParseAddr("127.0.0.1")
		family, addr := uint16(1), net.IP(req.client.Addr().AsSlice())
		if req.client.Addr().Is6() {
			family = 2
		}
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(req.client.Bits()), Address: addr})
	}
	v := &explainView{Name: req.name, Type: dns.TypeToString[req.qtype], Client: req.client.String(), ByECS: req.byECS}
	if !req.byECS {
		v.Client = remote.String()
	}
	probe := &explainProbe{view: v}
	w := &explainWriter{remote: remote}
	ctx := context.WithValue(context.Background(), explainProbeKey{}, probe)
	if _, err := g.chainTop().ServeDNS(ctx, w, m); err != nil && !probe.decided {
		return nil, errors.New("the server block gave no answer: " + err.Error())
	}
	if !probe.decided {
		v.Outcome = "answered above georoute"
		if w.msg != nil {
			v.Rcode = dns.RcodeToString[w.msg.Rcode]
		}
	}
	return v, nil
}

// explainWriter is the client of an admin explain query: it stands at
// remote and keeps the reply.
type explainWriter struct {
	remote netip.Addr
	msg    *dns.Msg
}

func (w *explainWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (w *explainWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IP(w.remote.AsSlice()), Port: 53000}
}

func (w *explainWriter) WriteMsg(m *dns.Msg) error { w.msg = m; return nil }

func (w *explainWriter) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	w.msg = m
	return len(b), nil
}

func (w *explainWriter) Close() error        { return nil }
func (w *explainWriter) TsigStatus() error   { return nil }
func (w *explainWriter) TsigTimersOnly(bool) {}
func (w *explainWriter) Hijack()             {}
