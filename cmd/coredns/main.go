// Command coredns is a slim CoreDNS with georoute compiled in right after
// acl, where plugin.cfg would put it: below acl and rewrite, which should act
// on a query before it is routed, and above cache (which must hold the full
// RRset, never a tailored one) and dnssec.
package main

import (
	"slices"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/acl"
	_ "github.com/coredns/coredns/plugin/any"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/chaos"
	_ "github.com/coredns/coredns/plugin/dnssec"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/root"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"

	_ "github.com/georoute/georoute"
)

func main() {
	if err := dnsserver.SetDirectives(withGeoroute(dnsserver.Directives)); err != nil {
		panic(err)
	}
	coremain.Run()
}

// withGeoroute returns the upstream directive order with georoute inserted
// right after acl, exactly as the plugin.cfg line
// `georoute:github.com/georoute/georoute` after `acl:acl` would.
func withGeoroute(directives []string) []string {
	i := slices.Index(directives, "acl")
	return slices.Insert(slices.Clone(directives), i+1, "georoute")
}
