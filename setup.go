package georoute

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
)

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	g, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	config := dnsserver.GetConfig(c)
	config.AddPlugin(func(next plugin.Handler) plugin.Handler {
		g.Next = next
		return g
	})
	c.OnStartup(func() error {
		if err := g.checkCachePosition(config); err != nil {
			return plugin.Error(pluginName, err)
		}
		g.refuseChaos = chaosOpenedOnlyByGeoroute(config)
		g.freshAnswers = config.Handler("cache") != nil
		g.opaqueOPT = config.Handler("rewrite") != nil
		g.warnLoadbalance(config)
		return g.start()
	})
	c.OnShutdown(g.stop)
	g.owner = c.Context()
	c.OnRestartFailed(func() error {
		running.stopOthers(g.owner)
		return nil
	})
	return nil
}

// popID is the form of a pop's id: short, and safe as a metric label.
var popID = regexp.MustCompile(`^[a-z0-9-]+$`)

// parse reads the georoute block. Every error names the file and line of the
// offending property and says what was expected.
func parse(c *caddy.Controller) (*GeoRoute, error) {
	g := &GeoRoute{
		byAddr:  map[netip.Addr]*popAddress{},
		answers: 1,
		ttl:     30,
	}
	g.fallback.all = true
	hc := defaultHealthConfig()
	root := dnsserver.GetConfig(c).Root

	blocks := 0
	for c.Next() {
		blocks++
		if blocks > 1 {
			return nil, c.Err("georoute may appear only once per server block")
		}
		blockFile, blockLine := c.File(), c.Line()
		names := c.RemainingArgs()
		for _, n := range names {
			if len(plugin.Host(n).NormalizeExact()) == 0 {
				return nil, c.Errf("name %q is not a domain name; expected NAME... such as www.example.org", n)
			}
		}
		g.zones = plugin.OriginsFromArgsOrServerBlock(names, c.ServerBlockKeys)
		var dbPaths []string
		seen := map[string]bool{}
		var timeoutLine, intervalLine int
		for c.NextBlock() {
			prop := c.Val()
			if seen[prop] && prop != "pop" {
				return nil, c.Errf("property %q given twice; expected it at most once", prop)
			}
			seen[prop] = true
			args := c.RemainingArgs()
			switch prop {
			case "db":
				if len(args) == 0 {
					return nil, c.Err("db needs at least one PATH of an MMDB City database")
				}
				for _, p := range args {
					if !filepath.IsAbs(p) && root != "" {
						p = filepath.Join(root, p)
					}
					dbPaths = append(dbPaths, p)
				}
				db, err := newGeoDB(dbPaths)
				if err != nil {
					return nil, c.Errf("db: %v", err)
				}
				g.db = db
			case "pop":
				p, err := parsePop(c, args, len(g.pops))
				if err != nil {
					return nil, err
				}
				for _, other := range g.pops {
					if other.id == p.id {
						return nil, c.Errf("pop id %q already used on line %d; expected a unique id", p.id, other.line)
					}
				}
				for _, a := range p.addrs {
					if prev, dup := g.byAddr[a.addr]; dup {
						return nil, c.Errf("address %s already belongs to pop %q; an address belongs to at most one pop", a.addr, prev.pop.id)
					}
					g.byAddr[a.addr] = a
				}
				g.pops = append(g.pops, p)
			case "check":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				if !strings.Contains(args[0], "{address}") {
					return nil, c.Errf("top-level check %q has no {address}; expected a URL template such as http://{address}/healthz (use a check block inside pop for one URL per pop)", args[0])
				}
				for _, a := range []string{"192.0.2.1", "[2001:db8::1]"} {
					if err := validateCheckURL(strings.ReplaceAll(args[0], "{address}", a)); err != nil {
						return nil, c.Errf("check %q: %v", args[0], err)
					}
				}
				hc.template = args[0]
			case "interval", "timeout":
				d, err := parseDuration(c, prop, args)
				if err != nil {
					return nil, err
				}
				if prop == "interval" {
					hc.interval, intervalLine = d, c.Line()
				} else {
					hc.timeout, timeoutLine = d, c.Line()
				}
			case "rise", "fall":
				n, err := parseCount(c, prop, args, 1)
				if err != nil {
					return nil, err
				}
				if prop == "rise" {
					hc.rise = n
				} else {
					hc.fall = n
				}
			case "answers":
				n, err := parseCount(c, prop, args, 1)
				if err != nil {
					return nil, err
				}
				g.answers = n
			case "ttl":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				n, err := strconv.ParseUint(args[0], 10, 32)
				if err != nil {
					return nil, c.Errf("ttl %q is not a number of seconds; expected 0..4294967295", args[0])
				}
				g.ttl = uint32(n)
			case "ecs":
				p, err := parseECSPolicy(c, args)
				if err != nil {
					return nil, err
				}
				g.ecs = p
			case "fallback":
				f, err := parseFallback(c, args)
				if err != nil {
					return nil, err
				}
				g.fallback = f
			case "debug":
				if len(args) != 0 {
					return nil, c.ArgErr()
				}
				g.debug = true
			case "ca":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				p := args[0]
				if !filepath.IsAbs(p) && root != "" {
					p = filepath.Join(root, p)
				}
				pool, err := loadCA(p)
				if err != nil {
					return nil, c.Errf("ca: %v", err)
				}
				hc.roots = pool
			default:
				return nil, c.Errf("unknown property %q; expected one of db, pop, check, interval, timeout, rise, fall, answers, ttl, ecs, fallback, ca, debug", prop)
			}
		}
		if g.db == nil {
			return nil, fmt.Errorf("%s:%d - Error during parsing: missing db; expected db PATH... with an MMDB City database", blockFile, blockLine)
		}
		if hc.timeout >= hc.interval {
			line := timeoutLine
			if line == 0 {
				line = intervalLine
			}
			if line == 0 {
				line = blockLine
			}
			return nil, fmt.Errorf("%s:%d - Error during parsing: timeout %s is not below interval %s; expected timeout < interval", blockFile, line, hc.timeout, hc.interval)
		}
		g.blockFile, g.blockLine = blockFile, blockLine
	}
	g.health = newHealthChecker(hc, g.pops)
	// Series for every outcome from the start, so that rate() and
	// increase() see the first event (ecs_total's exist from init).
	for _, r := range []string{"ok", "error"} {
		dbReloadCount.WithLabelValues(r)
	}
	if g.debug {
		// The server refuses every class but IN unless a plugin asks for
		// CH; explain queries are CH TXT.
		dnsserver.EnableChaos[pluginName] = struct{}{}
	}
	return g, nil
}

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

// checkCachePosition refuses a server block in which cache would sit between
// georoute and the client: cache keys only on name and type, so it would
// hand one client's tailored answer to everybody.
func (g *GeoRoute) checkCachePosition(config *dnsserver.Config) error {
	if config.Handler("cache") == nil {
		return nil
	}
	self, cache := slices.Index(dnsserver.Directives, pluginName), slices.Index(dnsserver.Directives, "cache")
	if self > cache {
		return fmt.Errorf("%s:%d - georoute is compiled below cache in this CoreDNS (plugin.cfg), so cache would serve one client's nearest pop to every client; rebuild with georoute above cache (right after acl) or remove cache from this server block", g.blockFile, g.blockLine)
	}
	return nil
}

// chaosOpenedOnlyByGeoroute reports whether the server lets non-IN queries
// into this server block only because some georoute block has `debug`. Such
// queries, explain queries apart, are then refused by georoute as the server
// would have refused them, so that `debug` changes nothing else.
func chaosOpenedOnlyByGeoroute(config *dnsserver.Config) bool {
	if _, opened := dnsserver.EnableChaos[pluginName]; !opened {
		return false
	}
	for name := range dnsserver.EnableChaos {
		if name != pluginName && config.Handler(name) != nil {
			return false
		}
	}
	return true
}

// warnLoadbalance says at start-up what loadbalance above georoute does to
// `answers` above 1: the nearest pops are served in random order.
func (g *GeoRoute) warnLoadbalance(config *dnsserver.Config) {
	if g.answers < 2 || config.Handler("loadbalance") == nil {
		return
	}
	if slices.Index(dnsserver.Directives, "loadbalance") < slices.Index(dnsserver.Directives, pluginName) {
		log.Warningf("%s:%d - loadbalance runs above georoute and shuffles the %d nearest pops: clients get them in random order, not nearest first", g.blockFile, g.blockLine, g.answers)
	}
}
