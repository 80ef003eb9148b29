package georoute

import (
	"cmp"
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

// setup wires one georoute block into its server block: it parses the
// block, opens what it names, and registers the handler and its start and
// stop. Process-wide side effects (the CH class) happen here, not in parse.
func setup(c *caddy.Controller) error {
	g, err := load(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	openChaos(c.Context(), len(g.debug) > 0)
	config := dnsserver.GetConfig(c)
	config.AddPlugin(func(next plugin.Handler) plugin.Handler {
		g.Next = next
		return g
	})
	c.OnStartup(func() error {
		if err := g.checkCachePosition(config); err != nil {
			return plugin.Error(pluginName, err)
		}
		listener, known := listenerConfigs(c.Context(), config)
		g.refuseChaos = known && chaosOpenedOnlyByGeoroute(listener)
		g.opaqueOPT = config.Handler("rewrite") != nil
		g.top = firstHandler(config)
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

// load parses the block, then opens its database files and builds its
// health checker: only a block that parsed whole costs a database load.
func load(c *caddy.Controller) (*GeoRoute, error) {
	g, err := parse(c)
	if err != nil {
		return nil, err
	}
	if err := g.open(); err != nil {
		return nil, err
	}
	return g, nil
}

// open loads the db files and builds the health checker of a parsed block.
func (g *GeoRoute) open() error {
	db, err := newGeoDB(g.dbPaths)
	if err != nil {
		return fmt.Errorf("%s:%d - Error during parsing: db: %v", g.blockFile, g.dbLine, err)
	}
	g.db = db
	g.health = newHealthChecker(g.hc, g.pops)
	if g.steerRun, err = buildSteering(g.steerCfg, g.pops, &g.steer, g.blockFile, g.reload, g.explainJSON); err != nil {
		return err
	}
	// Series for every outcome from the start, so that rate() and
	// increase() see the first event (ecs_total's exist from init).
	for _, r := range []string{"ok", "error"} {
		dbReloadCount.WithLabelValues(r)
	}
	return nil
}

// popID is the form of a pop's id: short, and safe as a metric label.
var popID = regexp.MustCompile(`^[a-z0-9-]+$`)

// defaultReload is how often files are checked for changes: a change is
// noticed within 10 s, as the design promises for the database.
const defaultReload = 5 * time.Second

// properties are the names parseProperty knows, for its error message.
const properties = "db, pop, check, interval, timeout, rise, fall, answers, ttl, ecs, fallback, ca, debug, reload, override, overrides, state, admin, min_up"

// parse reads the georoute block, and nothing else: no file is opened
// here except small ones named by properties (ca). Every error names the
// file and line of the offending property and says what was expected.
func parse(c *caddy.Controller) (*GeoRoute, error) {
	g := &GeoRoute{
		byAddr:  map[netip.Addr]*popAddress{},
		answers: 1,
		ttl:     30,
		hc:      defaultHealthConfig(),
		reload:  defaultReload,
	}
	g.steerCfg = defaultSteerConfig()
	g.fallback.all = true
	blocks := 0
	for c.Next() {
		if blocks++; blocks > 1 {
			return nil, c.Err("georoute may appear only once per server block")
		}
		g.blockFile, g.blockLine = c.File(), c.Line()
		if err := g.parseNames(c); err != nil {
			return nil, err
		}
		// Drains without `state` live in memory, shared by the instances
		// of this server block across Corefile reloads.
		g.steerCfg.memoryKey = strings.Join(c.ServerBlockKeys, " ")
		p := &blockParser{root: dnsserver.GetConfig(c).Root, seen: map[string]bool{}}
		for c.NextBlock() {
			if err := g.parseProperty(c, p); err != nil {
				return nil, err
			}
		}
		if err := g.checkBlock(p); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// blockParser is what parsing one block remembers between properties.
type blockParser struct {
	root                      string
	seen                      map[string]bool
	timeoutLine, intervalLine int
}

// path resolves a path relative to the server's root, as file and hosts do.
func (p *blockParser) path(s string) string {
	if !filepath.IsAbs(s) && p.root != "" {
		return filepath.Join(p.root, s)
	}
	return s
}

func (g *GeoRoute) parseNames(c *caddy.Controller) error {
	names := c.RemainingArgs()
	for _, n := range names {
		if len(plugin.Host(n).NormalizeExact()) == 0 {
			return c.Errf("name %q is not a domain name; expected NAME... such as www.example.org", n)
		}
	}
	g.zones = plugin.OriginsFromArgsOrServerBlock(names, c.ServerBlockKeys)
	return nil
}

// parseProperty reads one property line of the block.
func (g *GeoRoute) parseProperty(c *caddy.Controller, p *blockParser) error {
	prop := c.Val()
	if p.seen[prop] && prop != "pop" && prop != "override" {
		return c.Errf("property %q given twice; expected it at most once", prop)
	}
	p.seen[prop] = true
	args := c.RemainingArgs()
	switch prop {
	case "db":
		return g.parseDB(c, p, args)
	case "pop":
		return g.parsePopProperty(c, args)
	case "check":
		return g.parseCheckTemplate(c, args)
	case "interval", "timeout", "reload":
		return g.parseInterval(c, p, prop, args)
	case "rise", "fall", "answers":
		return g.parseCountProperty(c, prop, args)
	case "ttl":
		return g.parseTTL(c, args)
	case "ecs":
		e, err := parseECSPolicy(c, args)
		g.ecs = e
		return err
	case "fallback":
		f, err := parseFallback(c, args)
		g.fallback = f
		return err
	case "ca":
		return g.parseCA(c, p, args)
	case "debug":
		return g.parseDebug(c, args)
	case "override":
		return g.steerCfg.parseOverrideProperty(c, args)
	case "overrides", "state":
		return g.steerCfg.parsePathProperty(c, p, prop, args)
	case "admin":
		a, err := parseAdmin(c, args, p.root)
		g.steerCfg.admin = a
		return err
	case "min_up":
		return g.steerCfg.parseMinUp(c, args)
	}
	return c.Errf("unknown property %q; expected one of %s", prop, properties)
}

// checkBlock checks what no single property can: db is given, and the
// probe timeout is below the interval.
func (g *GeoRoute) checkBlock(p *blockParser) error {
	if len(g.dbPaths) == 0 {
		return fmt.Errorf("%s:%d - Error during parsing: missing db; expected db PATH... with an MMDB City database", g.blockFile, g.blockLine)
	}
	if g.hc.timeout >= g.hc.interval {
		line := cmp.Or(p.timeoutLine, p.intervalLine, g.blockLine)
		return fmt.Errorf("%s:%d - Error during parsing: timeout %s is not below interval %s; expected timeout < interval", g.blockFile, line, g.hc.timeout, g.hc.interval)
	}
	return nil
}

func (g *GeoRoute) parseDB(c *caddy.Controller, p *blockParser, args []string) error {
	if len(args) == 0 {
		return c.Err("db needs at least one PATH of an MMDB City database")
	}
	for _, a := range args {
		g.dbPaths = append(g.dbPaths, p.path(a))
	}
	g.dbLine = c.Line()
	return nil
}

func (g *GeoRoute) parsePopProperty(c *caddy.Controller, args []string) error {
	p, err := parsePop(c, args, len(g.pops))
	if err != nil {
		return err
	}
	for _, other := range g.pops {
		if other.id == p.id {
			return c.Errf("pop id %q already used on line %d; expected a unique id", p.id, other.line)
		}
	}
	for _, a := range p.addrs {
		if prev, dup := g.byAddr[a.addr]; dup {
			return c.Errf("address %s already belongs to pop %q; an address belongs to at most one pop", a.addr, prev.pop.id)
		}
		g.byAddr[a.addr] = a
	}
	g.pops = append(g.pops, p)
	return nil
}

func (g *GeoRoute) parseCheckTemplate(c *caddy.Controller, args []string) error {
	if len(args) != 1 {
		return c.ArgErr()
	}
	if !strings.Contains(args[0], "{address}") {
		return c.Errf("top-level check %q has no {address}; expected a URL template such as http://{address}/healthz (use a check block inside pop for one URL per pop)", args[0])
	}
	for _, a := range []string{"192.0.2.1", "[2001:db8::1]"} {
		if err := validateCheckURL(strings.ReplaceAll(args[0], "{address}", a)); err != nil {
			return c.Errf("check %q: %v", args[0], err)
		}
	}
	g.hc.template = args[0]
	return nil
}

func (g *GeoRoute) parseInterval(c *caddy.Controller, p *blockParser, prop string, args []string) error {
	d, err := parseDuration(c, prop, args)
	if err != nil {
		return err
	}
	switch prop {
	case "interval":
		g.hc.interval, p.intervalLine = d, c.Line()
	case "timeout":
		g.hc.timeout, p.timeoutLine = d, c.Line()
	case "reload":
		g.reload = d
	}
	return nil
}

func (g *GeoRoute) parseCountProperty(c *caddy.Controller, prop string, args []string) error {
	n, err := parseCount(c, prop, args, 1)
	if err != nil {
		return err
	}
	switch prop {
	case "rise":
		g.hc.rise = n
	case "fall":
		g.hc.fall = n
	case "answers":
		g.answers = n
	}
	return nil
}

func (g *GeoRoute) parseTTL(c *caddy.Controller, args []string) error {
	if len(args) != 1 {
		return c.ArgErr()
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return c.Errf("ttl %q is not a number of seconds; expected 0..4294967295", args[0])
	}
	g.ttl = uint32(n)
	return nil
}

func (g *GeoRoute) parseCA(c *caddy.Controller, p *blockParser, args []string) error {
	if len(args) != 1 {
		return c.ArgErr()
	}
	pool, err := loadCA(p.path(args[0]))
	if err != nil {
		return c.Errf("ca: %v", err)
	}
	g.hc.roots = pool
	return nil
}

// loopback is who may ask explain queries when `debug` names no network.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// parseDebug reads `debug [CIDR...]`: the networks whose clients may ask
// explain queries, loopback when none is given.
func (g *GeoRoute) parseDebug(c *caddy.Controller, args []string) error {
	if len(args) == 0 {
		g.debug = loopback
		return nil
	}
	for _, s := range args {
		n, err := parseCIDR(s)
		if err != nil {
			return c.Errf("debug %q: %v", s, err)
		}
		g.debug = append(g.debug, n)
	}
	return nil
}

// parseCIDR reads a network without host bits; IPv4-mapped networks become
// IPv4, since addresses are compared unmapped.
func parseCIDR(s string) (netip.Prefix, error) {
	n, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR; expected e.g. 192.0.2.0/24 or 2001:db8::/32")
	}
	if n != n.Masked() {
		return netip.Prefix{}, fmt.Errorf("has host bits set; expected %s", n.Masked())
	}
	if n.Addr().Is4In6() && n.Bits() >= 96 {
		n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
	}
	return n, nil
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
