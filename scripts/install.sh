#!/usr/bin/env bash
# Installs apns-proxy on a Linux router (run as root from a checkout; safe to run again: upgrades).
#
#   scripts/install.sh [--root DIR] [--prefix DIR] [--bindir DIR] [--node PATH] [--now] [--no-enable] [--no-kernel]
#
#   PREFIX (/opt/apns-proxy)  the program: dist/src, production node_modules, the native addons, nft/,
#                             systemd/, scripts/, README.md — replaced as a whole on every run
#   BINDIR (/usr/local/bin)   `apns-proxy` symlink to PREFIX/dist/src/cli.js
#   /etc/apns-proxy/          config.json with every key at its default, written ONLY if none exists
#                             ("$schema" first: PREFIX/config.schema.json, for editors);
#                             README.md (what to edit; rewritten on every run)
#   /etc/systemd/system/apns-proxy.service, /etc/sysctl.d/apns-proxy.conf, /etc/modules-load.d/apns-proxy.conf
#
# On the running system (no --root): loads the modules and applies the sysctl file (--no-kernel
# skips that), then, when systemd runs, daemon-reload and enable the service; a running service is
# restarted onto the new version (the kernel map stays in place meanwhile); --now also starts a
# stopped one. It does not start the service by default: review config.json first.
#
# --ha [--router a|b]: also one router of a pair (README "Running a pair"): /etc/apns-proxy/ha/notify.sh,
# /etc/sysctl.d/apns-proxy-ha.conf, /etc/apns-proxy/ha/pair.json (an example, ONLY if none exists); with
# --router, /etc/keepalived/keepalived.conf and /etc/conntrackd/conntrackd.conf rendered from pair.json
# (an existing file not rendered by us is kept, the new one written next to it as *.apns-proxy).
#
# --root DIR (or DESTDIR=DIR) installs into DIR as if it were / and touches nothing of the running
# system (tests, image builds). PREFIX, BINDIR and APNS_PROXY_NODE (--node) may also be given in
# the environment.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/apns-proxy}
BINDIR=${BINDIR:-/usr/local/bin}
NODE_BIN=${APNS_PROXY_NODE:-}
START=0 ENABLE=1 KERNEL=1 HA=0 HA_ROUTER=

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --bindir) BINDIR=${2:?--bindir needs a directory}; shift 2 ;;
    --node) NODE_BIN=${2:?--node needs a path}; shift 2 ;;
    --now) START=1; shift ;;
    --no-enable) ENABLE=0; shift ;;
    --no-kernel) KERNEL=0; shift ;;
    --ha) HA=1; shift ;;
    --router) HA_ROUTER=${2:?--router needs a or b}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) printf 'install: unknown argument %s\n\n' "$1" >&2; usage 2 ;;
  esac
done
ROOT=${ROOT%/}
case "$HA_ROUTER" in ''|a|b) ;; *) die "--router must be a or b, got $HA_ROUTER" ;; esac
[ -z "$HA_ROUTER" ] || [ "$HA" = 1 ] || die "--router goes with --ha"
case "$PREFIX$BINDIR" in *' '*) die "PREFIX and BINDIR must not contain spaces" ;; esac
case "$PREFIX" in /*) ;; *) die "--prefix must be absolute, got $PREFIX" ;; esac
case "$BINDIR" in /*) ;; *) die "--bindir must be absolute, got $BINDIR" ;; esac
LIVE=0
[ -z "$ROOT" ] && LIVE=1
[ "$LIVE" = 0 ] || [ "$(id -u)" -eq 0 ] || die "run as root (or give --root DIR to install into a directory)"

# --- requirements ---------------------------------------------------------------------------------
# nft and ip are looked up in the system directories only (under `npm run`, node_modules/.bin has an
# unrelated `nft`); node in PATH first. APNS_PROXY_TOOL_PATH replaces both (tests narrow it).
SYSTEM_PATH=${APNS_PROXY_TOOL_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
NODE_SEARCH=${APNS_PROXY_TOOL_PATH:-$PATH:/usr/local/bin:/usr/bin:/bin}
tool() { PATH=$SYSTEM_PATH command -v "$1" 2>/dev/null || true; }
missing=()
node=${NODE_BIN:-$(PATH=$NODE_SEARCH command -v node 2>/dev/null || true)}
if [ -z "$node" ] || [ ! -x "$node" ]; then
  missing+=("Node.js >= 20 (no node found; https://nodejs.org/en/download or your distribution's nodejs)")
else
  version=$("$node" -p 'process.versions.node' 2>/dev/null || echo unknown)
  major=${version%%.*}
  case "$major" in ''|*[!0-9]*) major=0 ;; esac
  [ "$major" -ge 20 ] || missing+=("Node.js >= 20 ($node is $version)")
fi
[ -n "$(tool nft)" ] || missing+=("nftables (no nft found; apt-get install nftables)")
[ -n "$(tool ip)" ] || missing+=("iproute2 (no ip found; apt-get install iproute2)")
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do printf 'install: missing %s\n' "$m" >&2; done
  exit 1
fi
node=$(readlink -f "$node")
case "$node" in
  /home/*|/root/*|/run/user/*)
    die "node is $node, inside a home directory the service cannot see (ProtectHome=yes): install Node.js system-wide, or pass --node" ;;
esac

# --- the built tree --------------------------------------------------------------------------------
# The native addons sit beside their features, each with its prebuilds (prebuilds/linux-<arch>/, from
# npm run build:native or a package) or a local node-gyp build (build/Release/, compiled by npm ci
# where no prebuild matched). Both are optional: scripts/build-native.mjs uses what is there, compiles
# only what is missing (needs python3, make, g++), and warns, naming what is lost, when it cannot.
addons=(src/dns/fastpath src/fallback/relay)  # the UDP fast path, the fallback's relay
if [ ! -f "$SRC/dist/src/cli.js" ] || [ ! -f "$SRC/node_modules/.package-lock.json" ]; then
  say "building $SRC first (npm ci && npm run build)"
  (cd "$SRC" && npm ci --no-audit --no-fund && npm run build) || die "build failed: run npm ci && npm run build in $SRC and fix what it reports"
fi
"$node" "$SRC/scripts/build-native.mjs" install 2>&1 | sed 's/^apns-proxy: /install: /'

# --- the program: staged next to PREFIX, then swapped in -------------------------------------------
dest=$ROOT$PREFIX
stage=$dest.new.$$
old=$dest.old.$$
trap 'rm -rf "$stage" "$old"' EXIT
mkdir -p "$(dirname "$dest")"
rm -rf "$stage"
mkdir -p "$stage/dist"
cp -a "$SRC/package.json" "$SRC/package-lock.json" "$SRC/README.md" "$SRC/config.schema.json" "$SRC/nft" "$SRC/systemd" "$SRC/contrib" "$stage/"
# The lab (scripts/lab.sh, lab/) is a development tool that runs from a checkout: not installed,
# as it is not in the npm package ("files" in package.json). dist/src imports nothing outside dist/src.
mkdir -p "$stage/scripts"
for f in "$SRC"/scripts/*; do [ "$(basename "$f")" = lab.sh ] || cp -a "$f" "$stage/scripts/"; done
cp -a "$SRC/dist/src" "$stage/dist/"
for a in "${addons[@]}"; do  # where dist/src/.../index.js loads them from (node-gyp-build)
  mkdir -p "$stage/$a"
  if [ -d "$SRC/$a/prebuilds" ]; then cp -a "$SRC/$a/prebuilds" "$stage/$a/"; fi
  if compgen -G "$SRC/$a/build/Release/*.node" >/dev/null; then
    mkdir -p "$stage/$a/build/Release"
    cp -a "$SRC/$a"/build/Release/*.node "$stage/$a/build/Release/"
  fi
done
cp -a "$SRC/node_modules" "$stage/"
# Only the production dependencies; offline, and no install scripts (the addons are already there).
if ! (cd "$stage" && PATH="$(dirname "$node"):$PATH" npm prune --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null 2>&1); then
  say "warning: npm prune failed; the development dependencies stay in $PREFIX/node_modules"
fi
find "$stage/node_modules" -mindepth 1 -maxdepth 1 -type d -empty -delete
chmod 755 "$stage/dist/src/cli.js"
chmod -R go-w "$stage"
if [ -d "$dest" ]; then
  mv "$dest" "$old"
  verb=updated
else
  verb=installed
fi
mv "$stage" "$dest"
rm -rf "$old"
say "$verb $PREFIX ($(cd "$dest" && "$node" -p 'require("./package.json").version' 2>/dev/null || echo '?'))"

mkdir -p "$ROOT$BINDIR"
ln -sfn "$PREFIX/dist/src/cli.js" "$ROOT$BINDIR/apns-proxy"
say "linked $BINDIR/apns-proxy -> $PREFIX/dist/src/cli.js"

# --- configuration: never overwritten ----------------------------------------------------------------
etc=$ROOT/etc/apns-proxy
mkdir -p "$etc"
chmod 755 "$etc"
if [ -e "$etc/config.json" ]; then
  say "kept the existing /etc/apns-proxy/config.json"
else
  # JSON has no comments and the validator rejects unknown keys: the file holds every key at its
  # default, generated from the installed code, after "$schema" naming the installed JSON Schema
  # (an editor then completes keys, shows their meaning and default, and flags bad values);
  # README.md next to it says what to edit.
  "$node" --input-type=module -e "
    const { defaultConfigText } = await import('$dest/dist/src/core/config.js');
    process.stdout.write(defaultConfigText('file://$PREFIX/config.schema.json'));" > "$etc/config.json.tmp"
  chmod 644 "$etc/config.json.tmp"
  mv "$etc/config.json.tmp" "$etc/config.json"
  say "wrote /etc/apns-proxy/config.json (every key at its default; see /etc/apns-proxy/README.md)"
fi
cat > "$etc/README.md" <<EOF
# /etc/apns-proxy

\`config.json\` is apns-proxy's configuration. The installer wrote it with every key at its default
and never overwrites it. JSON has no comments, and unknown keys are errors, so notes go here.

For a real router, review at least:

- \`vipPrefix\`: a /24 your devices route to this router; courier N gets PREFIX.N.
- \`dns.listen\`: the router's address(es) devices (or your DNS server's forwarder) query, e.g. \`["192.168.1.1:53"]\`.
  Nothing else may hold port 53 on those addresses (dnsmasq, systemd-resolved's stub on 127.0.0.53 is fine
  when you listen on a specific address).
- \`dns.allowClients\`: the networks allowed to query; others get REFUSED.
- \`upstreamDns\`: the resolvers apns-proxy itself asks (courier names and forwarded names).
- \`allowedUpstreamNets\`: where couriers may be (Apple: 17.0.0.0/8).

Check and apply:

    apns-proxy render --config /etc/apns-proxy/config.json >/dev/null   # validates (exit 2 names the bad key)
    systemctl reload apns-proxy     # SIGHUP: re-read; an invalid file is logged and the old one kept
    systemctl restart apns-proxy    # needed for dns.listen, fallback.enabled/port and stateDir changes

Every key is explained in $PREFIX/README.md, section "Configuration", and in its JSON Schema,
$PREFIX/config.schema.json, which config.json names in "\$schema": an editor that reads JSON Schema
(VS Code, or any editor with a JSON language server) completes the keys, shows each one's meaning
and default, and marks bad values as you type.
EOF
chmod 644 "$etc/README.md"
if ! "$node" "$dest/dist/src/cli.js" render --config "$etc/config.json" >/dev/null 2>"$etc/.check.$$"; then
  say "warning: /etc/apns-proxy/config.json does not validate: $(cat "$etc/.check.$$") — the service will not start until it is fixed"
fi
rm -f "$etc/.check.$$"

# --- systemd unit and kernel settings ---------------------------------------------------------------
install -D -m 644 /dev/null "$ROOT/etc/systemd/system/apns-proxy.service"
sed -e "s#/usr/bin/node #$node #" -e "s#/opt/apns-proxy#$PREFIX#g" "$SRC/systemd/apns-proxy.service" \
  > "$ROOT/etc/systemd/system/apns-proxy.service"
install -D -m 644 "$SRC/systemd/sysctl.d/apns-proxy.conf" "$ROOT/etc/sysctl.d/apns-proxy.conf"
install -D -m 644 "$SRC/systemd/modules-load.d/apns-proxy.conf" "$ROOT/etc/modules-load.d/apns-proxy.conf"
say "installed /etc/systemd/system/apns-proxy.service, /etc/sysctl.d/apns-proxy.conf, /etc/modules-load.d/apns-proxy.conf"

# --- a router pair (--ha): keepalived, conntrackd, the notify script, the sysctls -------------------
if [ "$HA" = 1 ]; then
  ha=$ROOT/etc/apns-proxy/ha
  mkdir -p "$ha"
  install -m 755 "$SRC/contrib/ha/notify.sh" "$ha/notify.sh"
  install -D -m 644 "$SRC/contrib/ha/sysctl.conf" "$ROOT/etc/sysctl.d/apns-proxy-ha.conf"
  say "installed /etc/apns-proxy/ha/notify.sh, /etc/sysctl.d/apns-proxy-ha.conf"
  if [ ! -e "$ha/pair.json" ]; then
    "$node" --input-type=module -e "
      const { EXAMPLE_PAIR } = await import('$dest/dist/src/ops/ha/render.js');
      process.stdout.write(JSON.stringify(EXAMPLE_PAIR, null, 2) + '\n');" > "$ha/pair.json"
    say "wrote /etc/apns-proxy/ha/pair.json (an example: edit it to your addresses and interfaces, the same file on both routers)"
  fi
  if [ -n "$HA_ROUTER" ]; then
    # an existing file that we did not render is kept; ours go next to it
    ha_target() {
      local target=$ROOT/etc/$1
      mkdir -p "$(dirname "$target")"
      if [ -e "$target" ] && ! grep -q 'of an apns-proxy pair' "$target"; then
        say "kept /etc/$1 (not ours): the rendered one is /etc/$1.apns-proxy" >&2
        target=$target.apns-proxy
      fi
      printf '%s\n' "$target"
    }
    out_keepalived=$(ha_target keepalived/keepalived.conf)
    out_conntrackd=$(ha_target conntrackd/conntrackd.conf)
    "$node" "$dest/dist/src/ops/ha/cli.js" --pair "$ha/pair.json" --router "$HA_ROUTER" --notify /etc/apns-proxy/ha/notify.sh \
      --keepalived "$out_keepalived" --conntrackd "$out_conntrackd" 2>"$ha/.keys.$$" \
      || { cat "$ha/.keys.$$" >&2; rm -f "$ha/.keys.$$"; die "cannot render the pair's configuration from /etc/apns-proxy/ha/pair.json"; }
    say "rendered keepalived and conntrackd configuration for router $HA_ROUTER from /etc/apns-proxy/ha/pair.json"
    sed 's/^/install: /' "$ha/.keys.$$"
    rm -f "$ha/.keys.$$"
  else
    say "then: scripts/install.sh --ha --router a (or b) renders keepalived.conf and conntrackd.conf from pair.json"
  fi
  if [ "$LIVE" = 1 ] && [ "$KERNEL" = 1 ]; then
    sysctl -q -p /etc/sysctl.d/apns-proxy-ha.conf >/dev/null 2>&1 \
      && say "applied /etc/sysctl.d/apns-proxy-ha.conf (nf_conntrack_tcp_loose=0, ip_nonlocal_bind=1)" \
      || say "note: /etc/sysctl.d/apns-proxy-ha.conf applies once nf_conntrack is loaded (at the latest at boot)"
  fi
fi

if [ "$LIVE" = 0 ]; then
  say "--root $ROOT: the running system (kernel settings, systemd) was not touched"
  exit 0
fi

if [ "$KERNEL" = 1 ]; then
  failed=()
  for m in $(grep -Ev '^[[:space:]]*(#|$)' "$SRC/systemd/modules-load.d/apns-proxy.conf"); do
    modprobe -q "$m" 2>/dev/null || failed+=("$m")
  done
  [ ${#failed[@]} -eq 0 ] || say "note: modprobe could not load ${failed[*]} (fine if built into the kernel; apns-proxy doctor checks what matters)"
  if sysctl -q -p /etc/sysctl.d/apns-proxy.conf >/dev/null; then
    say "applied /etc/sysctl.d/apns-proxy.conf (ip_forward=1, nf_conntrack_max=262144)"
  else
    say "warning: sysctl -p /etc/sysctl.d/apns-proxy.conf failed; apns-proxy doctor shows what is missing"
  fi
fi

if [ ! -d /run/systemd/system ]; then
  say "systemd is not running here: the service was not enabled. Run the daemon yourself:"
  say "  apns-proxy run --config /etc/apns-proxy/config.json"
  exit 0
fi
systemctl daemon-reload
if [ "$ENABLE" = 1 ]; then
  systemctl enable apns-proxy.service >/dev/null 2>&1 && say "enabled apns-proxy.service (starts at boot)"
fi
if systemctl is-active --quiet apns-proxy.service; then
  systemctl restart apns-proxy.service
  say "restarted apns-proxy.service onto the new version (the kernel map stayed in place meanwhile)"
elif [ "$START" = 1 ]; then
  systemctl start apns-proxy.service
  say "started apns-proxy.service"
else
  say "review /etc/apns-proxy/config.json, check with: apns-proxy doctor; then: systemctl start apns-proxy"
fi
