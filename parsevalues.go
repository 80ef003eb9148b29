package georoute

// The values of the georoute block's properties: each parser reads one
// property's arguments and says, with file and line, what was expected.

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
)

// parsePop reads `pop ID LAT LON ADDRESS... [{ check URL }]`.
func parsePop(c *caddy.Controller, args []string, rank int) (*pop, error) {
	if len(args) < 4 {
		return nil, c.Errf("pop needs ID LAT LON ADDRESS...; got %d arguments", len(args))
	}
	p := &pop{id: args[0], rank: rank, line: c.Line()}
	if !popID.MatchString(p.id) {
		return nil, c.Errf("pop id %q; expected lowercase letters, digits and '-'", p.id)
	}
	var err error
	if p.lat, err = parseDegrees(c, "latitude", args[1], 90); err != nil {
		return nil, err
	}
	if p.lon, err = parseDegrees(c, "longitude", args[2], 180); err != nil {
		return nil, err
	}
	p.at = pointAt(p.lat, p.lon)
	for _, s := range args[3:] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, c.Errf("pop %s address %q is not an IPv4 or IPv6 address", p.id, s)
		}
		a = a.Unmap()
		if slices.ContainsFunc(p.addrs, func(x *popAddress) bool { return x.addr == a }) {
			return nil, c.Errf("pop %s lists address %s twice", p.id, a)
		}
		p.addrs = append(p.addrs, &popAddress{pop: p, addr: a})
	}
	// An optional block on the same line: { check URL }. RemainingArgs
	// stopped before its brace, so the next token on the line is '{'.
	// A '{' on the next line would silently end the georoute block (the
	// dispenser opens blocks only on the line they belong to, as
	// everywhere in a Corefile): look ahead on a copy and name the cause.
	if peek := c.Dispenser; !peek.NextArg() && peek.NextLine() && peek.Val() == "{" {
		return nil, peek.Errf("pop %s: '{' must end the line it opens; expected pop %s {", p.id, strings.Join(args, " "))
	}
	if c.NextArg() {
		for c.Next() {
			if c.Val() == "}" {
				return p, nil
			}
			switch c.Val() {
			case "check":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				if p.check != "" {
					return nil, c.Errf("pop %s has two checks; expected one", p.id)
				}
				if strings.Contains(args[0], "{address}") {
					return nil, c.Errf("check %q in pop %s: {address} only belongs in the top-level template; expected one URL for the whole pop", args[0], p.id)
				}
				if err := validateCheckURL(args[0]); err != nil {
					return nil, c.Errf("check %q: %v", args[0], err)
				}
				p.check = args[0]
			default:
				return nil, c.Errf("unknown property %q in pop %s; expected check", c.Val(), p.id)
			}
		}
		return nil, fmt.Errorf("%s:%d - Error during parsing: pop %s block is not closed; expected '}'", c.File(), p.line, p.id)
	}
	return p, nil
}

func parseDegrees(c *caddy.Controller, what, s string, limit float64) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		// A decimal comma is the likely slip; show the input as it should be.
		example := ""
		if d := strings.Replace(s, ",", ".", 1); d != s {
			if _, err := strconv.ParseFloat(d, 64); err == nil {
				example = " such as " + d
			}
		}
		return 0, c.Errf("%s %q is not a number; expected decimal degrees -%g..%g%s", what, s, limit, limit, example)
	}
	if v < -limit || v > limit {
		return 0, c.Errf("%s %q out of range; expected decimal degrees -%g..%g", what, s, limit, limit)
	}
	return v, nil
}

func parseDuration(c *caddy.Controller, prop string, args []string) (time.Duration, error) {
	if len(args) != 1 {
		return 0, c.ArgErr()
	}
	d, err := time.ParseDuration(args[0])
	if err != nil || d <= 0 {
		return 0, c.Errf("%s %q; expected a positive duration such as 10s", prop, args[0])
	}
	return d, nil
}

func parseCount(c *caddy.Controller, prop string, args []string, min int) (int, error) {
	if len(args) != 1 {
		return 0, c.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < min {
		return 0, c.Errf("%s %q; expected a whole number of at least %d", prop, args[0], min)
	}
	return n, nil
}

func parseECSPolicy(c *caddy.Controller, args []string) (ecsPolicy, error) {
	if len(args) == 0 {
		return ecsPolicy{}, c.Err("ecs needs on, off or trust CIDR...")
	}
	switch args[0] {
	case "on":
		if len(args) == 1 {
			return ecsPolicy{}, nil
		}
	case "off":
		if len(args) == 1 {
			return ecsPolicy{off: true}, nil
		}
	case "trust":
		if len(args) == 1 {
			return ecsPolicy{}, c.Err("ecs trust needs at least one CIDR of trusted resolvers")
		}
		var p ecsPolicy
		for _, s := range args[1:] {
			n, err := netip.ParsePrefix(s)
			if err != nil {
				return ecsPolicy{}, c.Errf("ecs trust %q is not a CIDR; expected e.g. 192.0.2.0/24 or 2001:db8::/32", s)
			}
			if n.Addr().Is4In6() && n.Bits() >= 96 {
				// Source addresses are compared unmapped.
				n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
			}
			p.trusted = append(p.trusted, n.Masked())
		}
		return p, nil
	}
	return ecsPolicy{}, c.Errf("ecs %s; expected on, off or trust CIDR...", strings.Join(args, " "))
}

func parseFallback(c *caddy.Controller, args []string) (fallbackPolicy, error) {
	switch {
	case len(args) == 1 && args[0] == "all":
		return fallbackPolicy{all: true}, nil
	case len(args) == 2:
		lat, err := parseDegrees(c, "fallback latitude", args[0], 90)
		if err != nil {
			return fallbackPolicy{}, err
		}
		lon, err := parseDegrees(c, "fallback longitude", args[1], 180)
		if err != nil {
			return fallbackPolicy{}, err
		}
		return fallbackPolicy{lat: lat, lon: lon, at: pointAt(lat, lon)}, nil
	}
	return fallbackPolicy{}, c.Errf("fallback %s; expected all or LAT LON", strings.Join(args, " "))
}

// validateCheckURL accepts http://, https:// and tcp://HOST:PORT probes.
func validateCheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL; expected http://, https:// or tcp://HOST:PORT")
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("no host; expected %s://HOST[:PORT]/PATH", u.Scheme)
		}
	case "tcp":
		if u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("expected tcp://HOST:PORT")
		}
		if p, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || p == 0 {
			return fmt.Errorf("port %q; expected 1..65535", u.Port())
		}
	default:
		return fmt.Errorf("scheme %q; expected http, https or tcp", u.Scheme)
	}
	return nil
}
