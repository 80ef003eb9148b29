#!/usr/bin/env bash
# backends.sh [COMMAND...] starts the five health endpoints this example's
# checks probe, http://127.0.0.1:8001-8005/healthz (nyc lhr nrt syd gru), and
# stops them all together: when COMMAND ends, or on Ctrl-C when there is no
# COMMAND. Each endpoint serves ${TMPDIR:-/tmp}/georoute-cdn/POP/healthz, so
#   rm /tmp/georoute-cdn/lhr/healthz      takes London down (404),
#   touch /tmp/georoute-cdn/lhr/healthz   brings it back.
#
#   ./backends.sh ../../bin/coredns -conf Corefile   # endpoints and CoreDNS, Ctrl-C stops both
#   ./backends.sh                                    # the endpoints alone, until Ctrl-C
set -euo pipefail

command -v python3 >/dev/null || { echo "backends.sh: python3 is missing (Debian python3): it serves the health endpoints" >&2; exit 1; }

pops=(nyc lhr nrt syd gru) # on ports 8001..8005, as in Corefile
root=${TMPDIR:-/tmp}/georoute-cdn
pids=()

# Only what this script made goes at exit.
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ ${#pids[@]} -gt 0 ]; then rm -rf "$root"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in 8001 8002 8003 8004 8005; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "backends.sh: 127.0.0.1:$port is already taken (another backends.sh?)" >&2
    exit 1
  fi
done
for i in "${!pops[@]}"; do
  pop=${pops[$i]} port=$((8001 + i))
  mkdir -p "$root/$pop"
  echo ok >"$root/$pop/healthz"
  python3 -m http.server --bind 127.0.0.1 --directory "$root/$pop" "$port" >/dev/null 2>&1 &
  pids+=($!)
done

# Wait until each endpoint accepts connections; one that exits stops
# everything.
for i in "${!pops[@]}"; do
  port=$((8001 + i))
  for _ in $(seq 1 50); do
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "backends.sh: the endpoint of ${pops[$i]} could not listen on 127.0.0.1:$port" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
echo "backends.sh: ${pops[*]} healthy on 127.0.0.1:8001-8005; rm $root/POP/healthz takes POP down" >&2

if [ $# -gt 0 ]; then
  # In the foreground, so that Ctrl-C reaches COMMAND too.
  "$@"
else
  echo "backends.sh: Ctrl-C stops them" >&2
  wait
fi
