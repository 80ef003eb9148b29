package georoute

import "github.com/miekg/dns"

// apply turns the next plugin's reply into georoute's, as d decided: the
// routed RRset replaced by the kept records (TTL-capped), and the ECS echo
// when the query's option was honoured. Like loadbalance it sets the
// sections of res to new slices and never writes into the slices or
// records the next plugin handed out: file serves them from its zone tree.
// In the common case everything new lives in one allocation, which it
// shares with the query's writer (routedWriter).
func (g *GeoRoute) apply(res *dns.Msg, d *decision, q *queryState) *dns.Msg {
	c := &q.client
	if d.outcome != outcomeRouted && !c.subnet.present {
		return res
	}
	if d.qtype == dns.TypeAAAA {
		t := q.replyAAAA
		if q.replyAAAA = nil; t == nil {
			t = new(tailoredReply[dns.AAAA])
		}
		return applyInto(t, res, d, c, g.ttl)
	}
	t := q.replyA
	if q.replyA = nil; t == nil {
		t = new(tailoredReply[dns.A])
	}
	return applyInto(t, res, d, c, g.ttl)
}

func applyInto[R dns.A | dns.AAAA](t *tailoredReply[R], res *dns.Msg, d *decision, c *client, ttl uint32) *dns.Msg {
	if d.outcome == outcomeRouted {
		res.Answer = t.answer(res.Answer, d, ttl)
	}
	if c.subnet.present {
		res.Extra = t.withECS(res.Extra, c, d.scope)
	}
	return res
}

// tailoredReply is the storage of a reply georoute changed, sized for the
// common case (one kept record whose TTL is capped, no OPT of the next
// plugin's); larger replies spill to the heap. It must not be reused:
// plugins above georoute (log) read the written message after georoute
// returns.
type tailoredReply[R dns.A | dns.AAAA] struct {
	answerBuf [1]dns.RR
	extraBuf  [1]dns.RR
	opt       dns.OPT
	options   [1]dns.EDNS0
	ecs       dns.EDNS0_SUBNET
	// capped is the TTL-capped copy of the first kept record whose TTL is
	// capped; free while its type is 0.
	capped R
}

// answer returns the answer section with the routed RRset replaced: the
// kept records take the place of the first of its records; the rest of
// the answer (CNAMEs, other records) keeps its order.
func (t *tailoredReply[R]) answer(answer []dns.RR, d *decision, ttl uint32) []dns.RR {
	out := t.answerBuf[:0]
	if len(d.cands) == len(answer) {
		// The whole answer is the RRset: no record of another kind to keep
		// in its place.
		for _, k := range d.kept {
			out = append(out, t.capTTL(k, ttl))
		}
		return out
	}
	inserted := false
	for i, rr := range answer {
		if !d.target[i] {
			out = append(out, rr)
			continue
		}
		if !inserted {
			for _, k := range d.kept {
				out = append(out, t.capTTL(k, ttl))
			}
			inserted = true
		}
	}
	return out
}

// capTTL returns rr with its TTL at most ttl, copying it when the TTL has
// to change: the record belongs to the next plugin.
func (t *tailoredReply[R]) capTTL(rr dns.RR, ttl uint32) dns.RR {
	if rr.Header().Ttl <= ttl {
		return rr
	}
	var c dns.RR
	if r, ok := any(rr).(*R); ok {
		if own := any(&t.capped).(dns.RR); own.Header().Rrtype == 0 {
			t.capped = *r
			c = own
		} else {
			cp := *r
			c = any(&cp).(dns.RR)
		}
	} else {
		c = dns.Copy(rr)
	}
	c.Header().Ttl = ttl
	return c
}

// withECS returns extra with its OPT RR carrying exactly one ECS option
// echoing c's with SCOPE scope (RFC 7871 §7.2.1). extra is not modified: an
// OPT the next plugin put there is copied, one without it is added (the
// server's scrub writer then fills in the client's buffer size and DO bit).
func (t *tailoredReply[R]) withECS(extra []dns.RR, c *client, scope int) []dns.RR {
	c.subnet.echoInto(&t.ecs, c.echoAddress, scope)
	return appendWithECS(t.extraBuf[:0], &t.opt, t.options[:0], extra, &t.ecs)
}

// appendWithECS appends extra to dst with the first OPT RR replaced by opt:
// a copy of it whose options (built on options) keep everything but ECS and
// end with ecs. Without an OPT in extra, opt is a fresh one holding ecs.
func appendWithECS(dst []dns.RR, opt *dns.OPT, options []dns.EDNS0, extra []dns.RR, ecs *dns.EDNS0_SUBNET) []dns.RR {
	found := false
	for _, rr := range extra {
		if o, ok := rr.(*dns.OPT); ok && !found {
			found = true
			*opt = *o
			for _, e := range o.Option {
				if e.Option() != dns.EDNS0SUBNET {
					options = append(options, e)
				}
			}
			opt.Option = append(options, ecs)
			dst = append(dst, opt)
			continue
		}
		dst = append(dst, rr)
	}
	if !found {
		*opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: dns.DefaultMsgSize}}
		opt.Option = append(options, ecs)
		dst = append(dst, opt)
	}
	return dst
}

// withECS is appendWithECS on fresh storage, for replies georoute builds
// itself (FORMERR apart: explain answers, error replies).
func withECS(extra []dns.RR, ecs *dns.EDNS0_SUBNET) []dns.RR {
	return appendWithECS(make([]dns.RR, 0, len(extra)+1), new(dns.OPT), nil, extra, ecs)
}
