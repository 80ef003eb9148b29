package georoute

import (
	"fmt"
	"slices"

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
