#!/usr/bin/env bash
# plugincfg.sh builds CoreDNS the way operators build it with an external
# plugin: the stock CoreDNS source, one line added to its plugin.cfg,
# `go generate`, `go build`. The result is .plugincfg/coredns, stock layout
# (coredns.go, core/plugin/zplugin.go, core/dnsserver/zdirectives.go).
#
# PLUGINCFG_PLUGINS=slim (default) trims plugin.cfg to the plugins of
# cmd/coredns: a full build compiles every upstream plugin (kubernetes, cloud
# DNS providers, etcd …) and downloads about 1.7 GB of modules, which is too
# heavy for CI. PLUGINCFG_PLUGINS=all keeps upstream plugin.cfg as it is.
# PLUGINCFG_OUT (default .plugincfg) is where the source copy and binary go.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
version=v1.15.0
checkout=$(pwd -P)
out=${PLUGINCFG_OUT:-$checkout/.plugincfg}
src=$out/coredns-src
plugins=${PLUGINCFG_PLUGINS:-slim}

# The plugins of cmd/coredns (design §7), by plugin.cfg name.
slim="root acl chaos rewrite errors log prometheus health ready reload bind any loadbalance cache dnssec template hosts file forward whoami"

upstream=$("$GO" mod download -json "github.com/coredns/coredns@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
if [ ! -f "$upstream/plugin.cfg" ]; then
  echo "plugincfg: no CoreDNS $version source in the module cache ($upstream)" >&2
  exit 1
fi

mkdir -p "$out"
if [ -d "$src" ]; then chmod -R u+w "$src" && rm -rf "$src"; fi
cp -R "$upstream" "$src"
chmod -R u+w "$src"
cd "$src"

case $plugins in
slim)
  awk -v keep="$slim" 'BEGIN { n = split(keep, k, " "); for (i = 1; i <= n; i++) want[k[i]] = 1 }
    /^#/ || /^$/ { print; next }
    { split($0, f, ":"); if (f[1] in want) print }' plugin.cfg > plugin.cfg.new
  ;;
all) cp plugin.cfg plugin.cfg.new ;;
*)
  echo "plugincfg: PLUGINCFG_PLUGINS=$plugins; expected slim or all" >&2
  exit 1
  ;;
esac
# The one line an operator adds: georoute right after acl (design §2, §7).
awk '{ print } $0 == "acl:acl" { print "georoute:github.com/georoute/georoute" }' plugin.cfg.new > plugin.cfg
rm plugin.cfg.new
if [ "$(grep -c '^georoute:github.com/georoute/georoute$' plugin.cfg)" != 1 ]; then
  echo "plugincfg: could not insert georoute after acl:acl in plugin.cfg" >&2
  exit 1
fi

# go generate: the //go:generate lines of coredns.go (directives_generate.go
# writes core/plugin/zplugin.go and core/dnsserver/zdirectives.go from
# plugin.cfg; owners_generate.go writes plugin/chaos/zowners.go). They are run
# as written rather than through `go generate`, which would first load the
# imports of the old zplugin.go, i.e. download every upstream plugin's modules.
grep '^//go:generate ' coredns.go | sed 's|^//go:generate ||' | while read -r -a cmd; do
  [ "${cmd[0]}" = go ] && cmd[0]=$GO
  "${cmd[@]}"
done
grep -q '"georoute",' core/dnsserver/zdirectives.go || { echo "plugincfg: go generate left georoute out of zdirectives.go" >&2; exit 1; }

# Build against this checkout rather than a published version: require
# georoute, replace it by this directory, and raise every requirement that
# georoute's module graph selects at a higher version (the versions
# `go list -m all` picks here, where coredns v1.15.0 is itself a dependency),
# so that go.mod is consistent as it stands. Leaving that to -mod=mod would
# make go re-check every package of the whole tree, i.e. download the modules
# of all upstream plugins even when plugin.cfg is trimmed.
listed=" $(awk '/^require \(/ { r = 1; next } r && /^\)/ { r = 0 } r { print $1 } /^require [^(]/ { print $2 }' go.mod | tr '\n' ' ')"
direct=" $(cd "$checkout" && "$GO" list -m -f '{{if not .Main}}{{if not .Indirect}}{{.Path}}{{end}}{{end}}' all | grep -vx github.com/coredns/coredns | tr '\n' ' ')"
edits=(-require=github.com/georoute/georoute@v0.0.0-00010101000000-000000000000
  -replace="github.com/georoute/georoute=$checkout")
while read -r path version; do
  case "$listed$direct" in
  *" $path "*) edits+=(-require="$path@$version") ;;
  esac
done < <(cd "$checkout" && "$GO" list -m -f '{{if not .Main}}{{.Path}} {{.Version}}{{end}}' all)
"$GO" mod edit "${edits[@]}"
cat "$checkout/go.sum" >> go.sum

GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" "$GO" build -o "$out/coredns" .
echo "plugincfg: built $out/coredns ($plugins plugin.cfg, georoute after acl)"
