#!/usr/bin/env bash
# First-use setup for `npm run lab` and `npm test` (the `pretest` hook) on Debian/Ubuntu: installs
# only what is missing, so on a prepared machine it is a quick no-op.
#
#   scripts/setup.sh lab|test
#
#   OS packages  lab:  nftables, iproute2, dnsutils (dig), procps (sysctl), openssl (the HTTPS bag's certificates)
#                test: the same plus knot-dnsutils (kdig), systemd (systemd-analyze), util-linux (setpriv),
#                      dpkg-dev, binutils and lintian (the Debian package test), chromium (the status page test)
#                lab --ha and test: keepalived, conntrackd, conntrack (the router pair); they run only inside
#                the lab's namespaces: their system services are neither started nor enabled here
#                and make, g++, python3 when the native addons still have to be compiled (no prebuild)
#   npm deps     npm ci, when node_modules is missing or older than package-lock.json
#   addons       npm run build:native (prebuildify), when src/dns/fastpath or src/fallback/relay has neither
#                a prebuild (prebuilds/linux-<arch>/) nor a local build (build/Release/)
#
# Installing packages needs root and apt-get. Without them, `lab` stops with the list of what is
# missing; `test` warns and goes on (the unit tests need none of it; integration tests fail loudly).
# LAB_NO_SETUP=1 skips npm ci and the addon build (and fails if they are missing).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
case "$what" in lab|test) ;; *) echo "usage: scripts/setup.sh lab|test" >&2; exit 2 ;; esac

say() { printf 'setup: %s\n' "$*" >&2; }
# System directories only: under `npm run`, node_modules/.bin is first in PATH and holds an unrelated
# `nft` (from @vercel/nft, a dev dependency).
have() {
  local d
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do [ -x "$d/$1" ] && return 0; done
  return 1
}

command -v node >/dev/null 2>&1 || { say "Node.js >= 20 is needed (https://nodejs.org/en/download)"; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { say "Node.js >= 20 is needed; this is $(node --version)"; exit 1; }

addons=(src/dns/fastpath src/fallback/relay)  # the UDP fast path, the fallback's relay
# an addon is there when node-gyp-build can find it: a prebuild for this arch or a local build
addon_missing() {
  local a
  for a in "${addons[@]}"; do
    compgen -G "$a/prebuilds/linux-$(node -p process.arch)/*.node" >/dev/null || compgen -G "$a/build/Release/*.node" >/dev/null || return 0
  done
  return 1
}
nosetup=0
[ "${LAB_NO_SETUP:-}" = 1 ] && nosetup=1

pkgs=()
have nft || pkgs+=(nftables)
have ip || pkgs+=(iproute2)
have dig || pkgs+=(dnsutils)
have sysctl || pkgs+=(procps)
have openssl || pkgs+=(openssl)
ha_pkgs=()
if [ "$what" = test ] || [ "${LAB_HA:-}" = 1 ]; then
  have keepalived || ha_pkgs+=(keepalived)
  have conntrackd || ha_pkgs+=(conntrackd)
  have conntrack || ha_pkgs+=(conntrack)
  pkgs+=("${ha_pkgs[@]}")
fi
if [ "$what" = test ]; then
  have kdig || pkgs+=(knot-dnsutils)
  have systemd-analyze || pkgs+=(systemd)
  have setpriv || pkgs+=(util-linux)
  # the Debian package test: npm run package (dpkg-shlibdeps, dpkg-buildflags, strip), lintian
  have dpkg-shlibdeps || pkgs+=(dpkg-dev)
  have strip || pkgs+=(binutils)
  have lintian || pkgs+=(lintian)
  # the status page test: headless Chromium loads the page in the lab
  have chromium || pkgs+=(chromium)
fi
npm_ci=0
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm_ci=1; fi
if [ "$nosetup" = 0 ] && { addon_missing || [ "$npm_ci" = 1 ]; }; then
  # npm ci compiles the native addons where no prebuild matches (node-gyp)
  have make || pkgs+=(make)
  have g++ || pkgs+=(g++)
  have python3 || pkgs+=(python3)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && have apt-get; then
    say "installing ${pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # keepalived and conntrackd must not run as system services here (the lab runs its own, per
    # namespace): a policy-rc.d that refuses every start while apt installs, then disable them.
    norc=0
    if [ ${#ha_pkgs[@]} -gt 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && norc=1
    fi
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; } \
      || { [ "$norc" = 0 ] || rm -f /usr/sbin/policy-rc.d; say "apt-get install ${pkgs[*]} failed"; exit 1; }
    [ "$norc" = 0 ] || rm -f /usr/sbin/policy-rc.d
    if [ ${#ha_pkgs[@]} -gt 0 ] && have systemctl; then
      systemctl disable keepalived.service conntrackd.service >/dev/null 2>&1 || true
    fi
  elif [ "$what" = lab ]; then
    say "missing: ${pkgs[*]} — install them (as root: apt-get install ${pkgs[*]}) and run again"
    exit 1
  else
    say "warning: missing ${pkgs[*]} (apt-get install ${pkgs[*]} as root); the integration tests need them"
  fi
fi

if [ "$nosetup" = 1 ]; then
  [ -e node_modules/.package-lock.json ] || { say "LAB_NO_SETUP=1 but node_modules is missing: run npm ci first"; exit 1; }
  if addon_missing; then say "LAB_NO_SETUP=1 but a native addon is not built (${addons[*]}): run npm run build:native first"; exit 1; fi
  exit 0
fi
if [ "$npm_ci" = 1 ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund >&2
fi
if addon_missing; then
  say "building the native addons: UDP fast path, fallback relay (npm run build:native: prebuildify)"
  npm run --silent build:native >&2
fi
