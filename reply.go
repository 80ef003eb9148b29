package georoute

import "github.com/miekg/dns"

// replyStorage holds everything a tailored reply is made of: the analysis
// of a small answer, the copy of the next plugin's message, its new answer and additional sections, the OPT
// RR with the ECS echo, and TTL-capped copies of address records. It lives
// inside the per-query routingWriter, so that tailoring a reply costs that
// one allocation in the common case; larger replies spill to the heap.
//
// Nothing here may be reused after the reply is written: plugins above
// georoute (log, metrics) keep the written message until their own
// ServeDNS returns.
type replyStorage struct {
	small   smallAnswer
	up      [largeAnswer]bool
	msg     dns.Msg
	kept    [8]dns.RR
	answer  [8]dns.RR
	extra   [4]dns.RR
	opt     dns.OPT
	options [4]dns.EDNS0
	ecs     dns.EDNS0_SUBNET
	ecsAddr [16]byte
	a       [4]dns.A
	aaaa    [4]dns.AAAA
	nA      int
	nAAAA   int
}

// upBuf returns room for the health of n candidates.
func (s *replyStorage) upBuf(n int) []bool {
	if n <= len(s.up) {
		return s.up[:0]
	}
	return make([]bool, 0, n)
}

// copyOf returns a shallow copy of res, backed by the storage.
func (s *replyStorage) copyOf(res *dns.Msg) *dns.Msg {
	s.msg = *res
	return &s.msg
}

// capTTL returns rr with its TTL at most ttl, copying it when the TTL has to
// change: the record may belong to the next plugin's zone.
func (s *replyStorage) capTTL(rr dns.RR, ttl uint32) dns.RR {
	if rr.Header().Ttl <= ttl {
		return rr
	}
	switch r := rr.(type) {
	case *dns.A:
		c := take(s.a[:], &s.nA)
		*c = *r
		c.Hdr.Ttl = ttl
		return c
	case *dns.AAAA:
		c := take(s.aaaa[:], &s.nAAAA)
		*c = *r
		c.Hdr.Ttl = ttl
		return c
	}
	c := dns.Copy(rr)
	c.Header().Ttl = ttl
	return c
}

// take returns the next free element of buf, counted by n, or a new one
// when buf is used up.
func take[T any](buf []T, n *int) *T {
	if *n < len(buf) {
		*n++
		return &buf[*n-1]
	}
	return new(T)
}

// withECS returns extra with its OPT RR carrying exactly one ECS option
// echoing cs with SCOPE scope (RFC 7871 §7.2.1). extra is not modified: an
// OPT the next plugin put there is copied, one without it is added (the
// server's scrub writer then fills in the client's buffer size and DO bit).
func (s *replyStorage) withECS(extra []dns.RR, cs clientSubnet, scope int) []dns.RR {
	cs.echoInto(&s.ecs, s.ecsAddr[:], scope)
	return appendWithECS(s.extra[:0], &s.opt, s.options[:0], extra, &s.ecs)
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
// itself (explain answers).
func withECS(extra []dns.RR, ecs *dns.EDNS0_SUBNET) []dns.RR {
	return appendWithECS(make([]dns.RR, 0, len(extra)+1), new(dns.OPT), nil, extra, ecs)
}
