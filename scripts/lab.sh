#!/usr/bin/env bash
# `npm run lab [-- --check | --keep | down]`: the lab anyone can run (README "Quick start").
# `npm run lab -- --ha [--check] [--connections N] [--no-failback]`: the router pair (dist/lab/ha-demo.js,
# README "Running a pair"); it also installs keepalived, conntrackd and conntrack (services left off).
#
# On a fresh Debian/Ubuntu machine, as root, it first installs whatever is missing (scripts/setup.sh:
# nftables, iproute2, dnsutils, procps, openssl, the npm dependencies, the native addon), builds when a .ts
# file is newer than the compiled lab, then runs dist/lab/demo.js (lab/demo.ts) with the arguments. Everything
# the lab does stays inside the network namespaces it creates; `down` removes a lab left up with --keep.
#
# LAB_NO_SETUP=1 installs no npm dependencies and builds nothing (it fails if they are missing):
# the CI test runs the lab on the tree `npm test` has just built.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'lab: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (it creates network namespaces and nftables tables): sudo npm run lab"; exit 1; }
lab=dist/lab/demo.js
case " $* " in *" --ha "*) lab=dist/lab/ha-demo.js; export LAB_HA=1 ;; esac
bash scripts/setup.sh lab

if [ "${LAB_NO_SETUP:-}" = 1 ]; then
  [ -f "$lab" ] || { say "LAB_NO_SETUP=1 but $lab is missing: run npm run build first"; exit 1; }
elif [ ! -f "$lab" ] || [ tsconfig.json -nt "$lab" ] \
  || [ -n "$(find src test bench lab -name '*.ts' -newer "$lab" -print -quit 2>/dev/null)" ]; then
  say "building (tsc)"
  # tsc emits every file even when some part of the tree has type errors: report them, and stop
  # only if the lab itself was not built.
  if ! npm run --silent build >&2; then
    [ -f "$lab" ] || { say "build failed"; exit 1; }
    say "tsc reported errors (above); running the lab with what it emitted"
  fi
fi

exec node "$lab" "$@"
