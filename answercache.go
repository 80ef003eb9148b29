package georoute

import (
	"bytes"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/miekg/dns"
)

// answerInfo is what routing needs to know about one answer that depends
// neither on the client nor on health: where the RRset to route is and
// which sites its addresses belong to.
type answerInfo struct {
	// routed is false when the RRset at the end of the CNAME chain does not
	// belong to a configured name.
	routed bool
	owner  string
	// target marks the answer records to route: address records of the
	// queried type owned by owner.
	target []bool
	// signed is set when an RRSIG covers them.
	signed bool
	cands  []candidate

	// The key: where the answer slice's records were (data), a copy of them
	// (records, kept alive so that no other record can take their place
	// while cached), the question and the database generation the anonymous
	// sites were located in.
	data    unsafe.Pointer
	records []dns.RR
	qname   string
	qtype   uint16
	dbGen   uint64
}

// smallAnswer is an answerInfo with room for an answer of up to
// largeAnswer records, so that routing one allocates nothing.
type smallAnswer struct {
	answerInfo
	targetBuf [largeAnswer]bool
	candBuf   [largeAnswer]candidate
}

// analyze fills a for answer. The slices it builds start from the buffers
// of a, so that small answers are analyzed without allocating.
func (g *GeoRoute) analyze(a *answerInfo, answer []dns.RR, qname string, qtype uint16) {
	a.owner = chainEnd(answer, qname)
	if a.routed = g.routes(a.owner); !a.routed {
		return
	}
	var targetBuf [16]dns.RR
	targets := targetBuf[:0]
	for i, rr := range answer {
		t := isTarget(rr, qtype, a.owner)
		a.target = append(a.target, t)
		if t {
			targets = append(targets, answer[i])
		}
	}
	a.signed = signed(answer, qtype, a.owner)
	a.cands = g.candidates(targets, a.cands)
}

// largeAnswer is the size above which an answer's analysis is cached: the
// work is proportional to the number of records, a fraction of a
// microsecond for a few, tens of microseconds for a thousand.
const largeAnswer = 16

// answerCache keeps the analysis of large answers. Zone plugins such as
// file hand out the same RR slice for every query of a name, so the slice's
// identity (its first element's address and length, then every record by
// pointer) tells a repeat. An entry is also tied to the database generation,
// since anonymous sites are located in it; health is never cached.
type answerCache struct {
	slots [256]atomic.Pointer[answerInfo]
}

func (c *answerCache) slot(data unsafe.Pointer) *atomic.Pointer[answerInfo] {
	return &c.slots[(uintptr(data)*0x9E3779B97F4A7C15)>>56]
}

// get returns the cached analysis of answer for the question, or nil.
func (c *answerCache) get(answer []dns.RR, qname string, qtype uint16, dbGen uint64) *answerInfo {
	data := unsafe.Pointer(unsafe.SliceData(answer))
	a := c.slot(data).Load()
	if a == nil || a.data != data || len(a.records) != len(answer) ||
		a.qtype != qtype || a.dbGen != dbGen || a.qname != qname {
		return nil
	}
	// The same records, by pointer, in the same order: a slice changed in
	// place, or new records at a reused address, are a miss.
	if !sameRecords(a.records, answer) {
		return nil
	}
	return a
}

// sameRecords reports whether a and b hold the same records in the same
// order: a == b element by element, done as one comparison of their memory.
// Two interface values are equal exactly when their type and data words
// are, and a record is a pointer, so this is the identity of every record
// at the cost of a memcmp (a thousand records in a fraction of a
// microsecond, where comparing interfaces one by one takes over one).
func sameRecords(a, b []dns.RR) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	n := len(a) * int(unsafe.Sizeof(a[0]))
	return bytes.Equal(unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), n), unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), n))
}

// put caches the analysis a of answer; a must not change afterwards.
func (c *answerCache) put(answer []dns.RR, a *answerInfo) {
	a.data = unsafe.Pointer(unsafe.SliceData(answer))
	a.records = slices.Clone(answer)
	c.slot(a.data).Store(a)
}
