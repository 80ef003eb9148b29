package georoute

import (
	"cmp"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
)

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
	g.addrIndex = newAddrIndex(g.addrs)
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
		a, err := parseAdmin(c, args, p.path)
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
		g.addrs = append(g.addrs, a)
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
