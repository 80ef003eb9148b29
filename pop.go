package georoute

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// pop is a point of presence: a site with coordinates and the addresses it
// serves.
type pop struct {
	id       string
	lat, lon float64
	at       point
	// rank is the declaration order; it breaks ties between equidistant pops.
	rank  int
	addrs []*popAddress
	// check is the probe URL of a `check` inside the pop's block; empty when
	// the pop's addresses use the top-level template, or nothing.
	check string
	line  int
}

// popAddress is one address a pop serves, with its health. Health is written
// by the checker and read by every query without a lock.
type popAddress struct {
	pop  *pop
	addr netip.Addr
	// down is false for an address no check covers, so that a configuration
	// without checks serves every address. A checked address starts down
	// when the checker starts, until its first probe says up (or the state
	// its check target had before a Corefile reload does): no answer claims
	// healthy what no probe has confirmed.
	down atomic.Bool
	// since is the UnixNano of the last change of healthy/down; 0: never
	// probed.
	since atomic.Int64
	// lastCheck is the newest probe of the address's check target; nil:
	// never probed, or unchecked.
	lastCheck atomic.Pointer[checkResult]
}

// checkResult is one probe as it happened.
type checkResult struct {
	at       time.Time
	ok       bool
	detail   string // why it failed; "" when ok
	duration time.Duration
}

func (a *popAddress) healthy() bool { return !a.down.Load() }
