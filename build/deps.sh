#!/usr/bin/env bash
# deps.sh PROGRAM... makes sure the programs the tests and benchmarks run are
# installed: the missing ones are installed from Debian's packages when this
# runs as root on a machine with apt-get; otherwise it stops at once with one
# line that names the packages, instead of letting dozens of tests fail on
# `executable file not found`.
#
#   bash build/deps.sh dig unbound pdns_recursor npm   # what `make test` needs
#
# Daemons that come with a package (unbound, pdns-recursor) must not start
# and take port 53 here: a /usr/sbin/policy-rc.d that exits 101 forbids it
# during the install and is removed afterwards (unless it was there before).
set -euo pipefail

# Debian's package of each program.
declare -A package=(
  [dig]=bind9-dnsutils        # the black-box tests query with dig
  [unbound]=unbound           # a real ECS-caching resolver in front of georoute
  [pdns_recursor]=pdns-recursor # and another one
  [npm]=npm                   # make realdb: DB-IP City Lite from npm
  [dnsperf]=dnsperf           # make bench
)

# Resolvers live in /usr/sbin, which is not on every user's PATH; the tests
# look there too (test/main_test.go).
PATH=$PATH:/usr/sbin:/sbin

missing=() pkgs=()
for prog in "$@"; do
  [ -n "${package[$prog]:-}" ] || { echo "deps: no package known for $prog" >&2; exit 2; }
  command -v "$prog" >/dev/null && continue
  missing+=("$prog")
  pkgs+=("${package[$prog]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "deps: ${missing[*]} missing; install Debian's ${pkgs[*]} (as root: apt-get install --no-install-recommends ${pkgs[*]}), or run make as root on Debian to have them installed" >&2
  exit 1
fi

echo "deps: installing ${pkgs[*]} for ${missing[*]}" >&2
made_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
trap '[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
# Another apt-get may be running (unattended upgrades, a parallel job): wait
# for its lock rather than fail.
lock=(-o DPkg::Lock::Timeout=300)
apt-get "${lock[@]}" update -qq >&2
apt-get "${lock[@]}" install -y -qq --no-install-recommends "${pkgs[@]}" >&2

for prog in "${missing[@]}"; do
  command -v "$prog" >/dev/null || { echo "deps: $prog still missing after apt-get install ${package[$prog]}" >&2; exit 1; }
done
