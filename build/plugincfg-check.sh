#!/usr/bin/env bash
# plugincfg-check.sh proves what build/plugincfg.sh built: georoute sits right
# after acl in the generated directive order, the binary has it compiled in,
# and it answers routed queries (with cache in the server block, which
# georoute refuses to sit below).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd -P)
out=${PLUGINCFG_OUT:-$checkout/.plugincfg}
bin=$out/coredns
directives=$out/coredns-src/core/dnsserver/zdirectives.go

fail() {
  echo "plugincfg-check: FAIL: $*" >&2
  exit 1
}

[ -x "$bin" ] || fail "$bin is missing; run build/plugincfg.sh"

# 1. Chain order as generated from plugin.cfg.
order=$(sed -n 's/^[[:space:]]*"\([a-z0-9_]*\)",$/\1/p' "$directives")
after_acl=$(awk 'prev == "acl" { print; exit } { prev = $0 }' <<<"$order")
[ "$after_acl" = georoute ] || fail "directive after acl is '$after_acl'; expected georoute"
pos() { grep -nx "$1" <<<"$order" | cut -d: -f1; }
[ "$(pos georoute)" -lt "$(pos cache)" ] || fail "georoute is not above cache"
[ "$(pos georoute)" -lt "$(pos dnssec)" ] || fail "georoute is not above dnssec"
echo "plugincfg-check: chain ... $(grep -B1 -A1 -x georoute <<<"$order" | tr '\n' ' ')..."

# 2. Compiled in.
"$bin" -plugins | grep -qx '[[:space:]]*georoute' || fail "coredns -plugins does not list georoute"

# 3. Routed answers, queried with dig.
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cp testdata/example.org.zone "$work/"

started=
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 30000))
  cat >"$work/Corefile" <<COREFILE
example.org:$port {
    bind 127.0.0.1
    georoute www.example.org {
        db $checkout/testdata/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
    }
    cache 60
    loadbalance
    file example.org.zone
    errors
}
COREFILE
  (cd "$work" && exec "$bin" -conf Corefile) >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if [ -n "$(dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short example.org SOA 2>/dev/null)" ]; then
      started=1
      break
    fi
    sleep 0.2
  done
  [ -n "$started" ] && break
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  grep -q 'address already in use' "$work/log" || fail "coredns did not start:
$(cat "$work/log")"
done
[ -n "$started" ] || fail "no free port after 5 attempts"

expect() { # subnet type want
  local got
  got=$(dig @127.0.0.1 -p "$port" +time=2 +tries=1 +short +subnet="$1" www.example.org "$2" | tr '\n' ' ')
  [ "$got" = "$3 " ] || fail "client $1 $2 got '$got'; expected '$3'"
  echo "plugincfg-check: client $1 $2 -> $3"
}
# Each client twice: cache sits below georoute and must not hand one client's
# nearest pop to the next.
for round in 1 2; do
  expect 198.18.2.0/24 A 198.51.100.10   # London -> lhr
  expect 198.18.3.0/24 A 203.0.113.10    # Tokyo -> nrt
  expect 198.18.1.0/24 A 192.0.2.10      # New York -> nyc
  expect 198.18.2.0/24 AAAA 2001:db8:2::10
done
echo "plugincfg-check: ok: $bin routes with georoute right after acl"
