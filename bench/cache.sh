# bench/cache.sh — the resolver-cache scenario of `make bench`, sourced by
# bench/run.sh after the throughput rounds (its variables and functions:
# start, render, log, PORT, PID, SKIP, LOADGEN, WORK, …). The method is in
# run.sh's header. Sets CACHE_TABLE to the file holding its table.

if ! command -v unbound >/dev/null || ! command -v unbound-control >/dev/null; then
  apt_install unbound || SKIP[cache]="apt-get install unbound failed"
  stop_service unbound
fi

cache_scope() { # cache_scope FILE: median of loadgen -check's scope= values
  sed -n 's/.* scope=\([0-9]*\)$/\1/p' "$1" | sort -n | awk '{a[NR]=$1} END{if(NR==0){print "-"; exit} print "/" a[int((NR+1)/2)]}'
}

cache_stat() { # cache_stat CONF NAME: one counter of unbound-control stats_noreset
  unbound-control -c "$1" stats_noreset | awk -F= -v k="$2" '$1==k{print $2; found=1} END{if(!found) print 0}'
}

cache_upstream() { # cache_upstream CONF: ECS queries not answered from the subnet cache so far
  echo $(($(cache_stat "$1" num.query.subnet) - $(cache_stat "$1" num.query.subnet_cache)))
}

cache_run() {
  log "resolver cache: City-layout copy of every DB-IP IPv4 network (about a minute)"
  go build -o "$WORK/citydb" ./internal/citydb
  "$WORK/citydb" -db "$DBIP4" -out "$WORK/city-full.mmdb"
  local full=$WORK/city-full.mmdb

  # Random public /24s, the same for both servers: first the clients of the
  # two passes, then the unseen ones.
  cache_clients() { # cache_clients SEED N
    awk -v seed="$1" -v n="$2" 'BEGIN{srand(seed)
      while (c < n) { a = 1 + int(rand() * 223); b = int(rand() * 256); d = int(rand() * 256)
        if (a == 10 || a == 127 || a == 0 || (a == 100 && b >= 64 && b < 128) || (a == 169 && b == 254) ||
            (a == 172 && b >= 16 && b < 32) || (a == 192 && b == 168)) continue
        printf "%d.%d.%d.0/24\n", a, b, d; c++ } }'
  }
  cache_clients 12 "$CACHE_N" >"$WORK/cache-clients.txt"
  cache_clients 13 "$CACHE_N" >"$WORK/cache-unseen.txt"

  local i=5 s
  for s in cache-georoute cache-gdnsd cache-ub-georoute cache-ub-gdnsd cache-ctl-georoute cache-ctl-gdnsd; do
    PORT[$s]=$((PORT0 + i)); i=$((i + 1))
  done
  mkdir -p "$WORK/cache-georoute"
  render bench/Corefile.georoute.in PORT "${PORT[cache-georoute]}" ZONE "$WORK/example.org.zone" DB "$full" POPS "${gpops%$'\n'}" >"$WORK/cache-georoute/Corefile"
  start cache-georoute "$COREDNS" -conf "$WORK/cache-georoute/Corefile"
  if [ -z "${SKIP[gdnsd]:-}" ]; then
    local d=$WORK/cache-gdnsd
    mkdir -p "$d/zones" "$d/geoip" "$d/run" "$d/state"
    render bench/gdnsd.config.in PORT "${PORT[cache-gdnsd]}" DIR "$d" DB "$full" \
      DCS "${ids[*]}" COORDS "${coords%$'\n'}" DCMAP "${dcmap%$'\n'}" >"$d/config"
    # The same TTL as the georoute zone, so that no entry expires between passes.
    render bench/gdnsd.zone.in | sed 's/^www  30 /www  300 /' >"$d/zones/example.org"
    start cache-gdnsd gdnsd -c "$d" start
  fi

  # georoute merges a view on the first query of an answer state: wait
  # until London's SCOPE drops below the first reply's (the database
  # network's).
  local began=$SECONDS first= now
  while [ -n "${PID[cache-georoute]:-}" ] && [ $((SECONDS - began)) -lt 120 ]; do
    "$LOADGEN" -server "127.0.0.1:${PORT[cache-georoute]}" -ecs "$FIXED" -check 1 >"$WORK/cache-warm" 2>/dev/null || true
    now=$(sed -n 's/.* scope=\([0-9]*\)$/\1/p' "$WORK/cache-warm")
    first=${first:-$now}
    if [ -n "$now" ] && [ "$now" -lt "$first" ]; then break; fi
    sleep 0.2
  done
  log "cache-georoute: London SCOPE /$first, then /$now after $((SECONDS - began)) s (merged view)"

  CACHE_TABLE=$WORK/cache-table.md
  {
    echo "Resolver cache: unbound $(unbound -V 2>/dev/null | awk '/^Version/{print $2}') subnetcache (max-ecs-tree-size-ipv4/ipv6 100000) in front of each server; database: City-layout copy of every DB-IP IPv4 network (the same file for both); $CACHE_N random public /24 clients twice, then $CACHE_N unseen ones."
    echo
    echo "| server | median SCOPE (server itself) | unbound cache entries (upstream queries), pass 1 | pass 2 | unseen clients answered from the cache | of those, answer ≠ the server's own |"
    echo "|---|--:|--:|--:|--:|--:|"
  } >"$CACHE_TABLE"
  local auth
  for auth in georoute gdnsd; do
    s=cache-$auth
    if [ -z "${PID[$s]:-}" ]; then
      echo "| $auth | not run: ${SKIP[$s]:-${SKIP[$auth]:-did not start}} | | | | |" >>"$CACHE_TABLE"
      continue
    fi
    local ub=cache-ub-$auth dir=$WORK/cache-ub-$auth
    mkdir -p "$dir"
    render bench/unbound.conf.in PORT "${PORT[$ub]}" DIR "$dir" UPSTREAM "${PORT[$s]}" CONTROL "${PORT[cache-ctl-$auth]}" >"$dir/unbound.conf"
    unbound -d -c "$dir/unbound.conf" >"$WORK/$ub.log" 2>&1 &
    PIDS+=("$!")
    local ok=
    for _ in $(seq 1 100); do
      if unbound-control -c "$dir/unbound.conf" status >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.1
    done
    if [ -z "$ok" ]; then
      echo "| $auth | unbound did not start: $(tail -n 1 "$WORK/$ub.log" | cut -c1-160) | | | | |" >>"$CACHE_TABLE"
      continue
    fi
    local conf=$dir/unbound.conf u0 u1 u2 c2 c3 p
    q() { timeout 300 "$LOADGEN" -rd -server "127.0.0.1:$1" -subnets "$2" -check "$CACHE_N" >"$3" 2>/dev/null || true; }
    q "${PORT[$s]}" "$WORK/cache-clients.txt" "$WORK/$s.direct"
    q "${PORT[$s]}" "$WORK/cache-unseen.txt" "$WORK/$s.unseen-direct"
    u0=$(cache_upstream "$conf")
    q "${PORT[$ub]}" "$WORK/cache-clients.txt" "$WORK/$s.pass1"
    u1=$(cache_upstream "$conf")
    q "${PORT[$ub]}" "$WORK/cache-clients.txt" "$WORK/$s.pass2"
    u2=$(cache_upstream "$conf")
    c2=$(cache_stat "$conf" num.query.subnet_cache)
    q "${PORT[$ub]}" "$WORK/cache-unseen.txt" "$WORK/$s.unseen"
    c3=$(cache_stat "$conf" num.query.subnet_cache)
    # An unseen client whose answer through the cache is not the one the
    # server gives it directly.
    p=$(paste -d' ' "$WORK/$s.unseen" "$WORK/$s.unseen-direct" | awk '$3 != $7 {n++} END{print n+0}')
    printf '| %s | %s | %d | %d | %d / %d | %d |\n' "$auth" "$(cache_scope "$WORK/$s.direct")" \
      $((u1 - u0)) $((u2 - u1)) $((c3 - c2)) "$CACHE_N" "$p" >>"$CACHE_TABLE"
    log "cache $auth: $(tail -n 1 "$CACHE_TABLE")"
  done
}

if [ -z "${SKIP[cache]:-}" ]; then cache_run; else log "resolver cache: ${SKIP[cache]}"; fi
