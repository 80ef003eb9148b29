package georoute

import (
	"net"
	"reflect"
	"sync"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
)

// chaosLoad is the Corefile load whose georoute blocks last decided
// whether georoute opens the CH class. The server refuses every class but
// IN unless a plugin named in dnsserver.EnableChaos is in one of the
// listener's chains; explain queries are CH TXT, so `debug` needs it.
// That map is process-wide: each load starts it afresh, so a reload that
// removes `debug` closes the class again.
var chaosLoad struct {
	mu   sync.Mutex
	load caddy.Context
}

// openChaos records, while a load's blocks are set up, whether one of them
// has `debug`. The servers of the load read the map after every block is
// set up.
func openChaos(load caddy.Context, debug bool) {
	chaosLoad.mu.Lock()
	defer chaosLoad.mu.Unlock()
	if chaosLoad.load != load {
		chaosLoad.load = load
		delete(dnsserver.EnableChaos, pluginName)
	}
	if debug {
		dnsserver.EnableChaos[pluginName] = struct{}{}
	}
}

// chaosOpenedOnlyByGeoroute reports whether the listener lets non-IN
// queries in only because of georoute: no other plugin of the map is in
// any server block on it. Such queries, explain queries apart, are then
// refused by georoute as the server would have refused them, so that
// `debug` changes nothing else.
func chaosOpenedOnlyByGeoroute(listener []*dnsserver.Config) bool {
	if _, opened := dnsserver.EnableChaos[pluginName]; !opened {
		return false
	}
	for _, cfg := range listener {
		for name := range dnsserver.EnableChaos {
			if name != pluginName && cfg.Handler(name) != nil {
				return false
			}
		}
	}
	return true
}

// listenerConfigs returns the server blocks that share a listener with
// config. CoreDNS keeps the list of a load's blocks unexported in its
// context; it is read by reflection, and when that fails (another CoreDNS
// version) the block counts as if another one on its listener had opened
// CH (known is false): georoute then refuses nothing, which is never
// wrong, only lenient.
func listenerConfigs(load caddy.Context, config *dnsserver.Config) (listener []*dnsserver.Config, known bool) {
	all, ok := loadConfigs(load)
	if !ok {
		return nil, false
	}
	mine := listenAddrs(config)
	var out []*dnsserver.Config
	for _, cfg := range all {
		for a := range listenAddrs(cfg) {
			if mine[a] {
				out = append(out, cfg)
				break
			}
		}
	}
	return out, true
}

// loadConfigs reads the `configs` field of CoreDNS's dnsContext.
func loadConfigs(load caddy.Context) ([]*dnsserver.Config, bool) {
	v := reflect.ValueOf(load)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	f := v.Elem().FieldByName("configs")
	if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem() != reflect.TypeFor[*dnsserver.Config]() {
		return nil, false
	}
	out := make([]*dnsserver.Config, f.Len())
	for i := range out {
		out[i] = (*dnsserver.Config)(f.Index(i).UnsafePointer())
	}
	return out, true
}

// listenAddrs are the addresses a server block listens on, as CoreDNS
// groups blocks into servers: transport, host and port.
func listenAddrs(cfg *dnsserver.Config) map[string]bool {
	out := map[string]bool{}
	for _, h := range cfg.ListenHosts {
		out[cfg.Transport+"://"+net.JoinHostPort(h, cfg.Port)] = true
	}
	return out
}

// firstHandler is the first handler of a server block's chain: the
// handlers run in directive order.
func firstHandler(config *dnsserver.Config) plugin.Handler {
	for _, name := range dnsserver.Directives {
		if h := config.Handler(name); h != nil {
			return h
		}
	}
	return nil
}
