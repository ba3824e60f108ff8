#!/usr/bin/env bash
# Removes apns-proxy (run as root; safe to run again).
#
#   scripts/uninstall.sh [--root DIR] [--prefix DIR] [--bindir DIR] [--purge] [--flush | --no-flush]
#
# Stops and disables the service, removes the kernel state with `apns-proxy flush` (our nftables
# table and the fallback's policy routing: the kernel stops forwarding devices to couriers), then
# the unit, the sysctl.d and modules-load.d files, the `apns-proxy` symlink and PREFIX.
# /etc/apns-proxy (config) and /var/lib/apns-proxy (state) are kept unless --purge.
# The kernel settings already applied (ip_forward, nf_conntrack_max) stay until the next boot.
#
# --root DIR (or DESTDIR=DIR) removes from DIR and touches nothing of the running system, except
# that --flush still runs `apns-proxy flush` in the current network namespace (tests).
set -euo pipefail

ROOT=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/apns-proxy}
BINDIR=${BINDIR:-/usr/local/bin}
PURGE=0 FLUSH=auto

say() { printf 'uninstall: %s\n' "$*"; }
die() { printf 'uninstall: %s\n' "$*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --bindir) BINDIR=${2:?--bindir needs a directory}; shift 2 ;;
    --purge) PURGE=1; shift ;;
    --flush) FLUSH=1; shift ;;
    --no-flush) FLUSH=0; shift ;;
    -h|--help) usage 0 ;;
    *) printf 'uninstall: unknown argument %s\n\n' "$1" >&2; usage 2 ;;
  esac
done
ROOT=${ROOT%/}
LIVE=0
[ -z "$ROOT" ] && LIVE=1
[ "$LIVE" = 0 ] || [ "$(id -u)" -eq 0 ] || die "run as root (or give --root DIR)"
[ "$FLUSH" = auto ] && FLUSH=$LIVE
dest=$ROOT$PREFIX
config=$ROOT/etc/apns-proxy/config.json
unit=$ROOT/etc/systemd/system/apns-proxy.service
systemd=0
[ "$LIVE" = 1 ] && [ -d /run/systemd/system ] && systemd=1

# --- stop the daemon (the kernel map stays until the flush below) -------------------------------------
if [ "$systemd" = 1 ] && [ -e "$unit" ]; then
  systemctl disable --now apns-proxy.service >/dev/null 2>&1 || true
  say "stopped and disabled apns-proxy.service"
fi

# --- flush the kernel state -----------------------------------------------------------------------------
if [ "$FLUSH" = 1 ]; then
  TOOL_PATH=${APNS_PROXY_TOOL_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH}
  node=$(PATH=$TOOL_PATH command -v node 2>/dev/null || true)
  if [ ! -f "$dest/dist/src/cli.js" ] || [ -z "$node" ]; then
    say "apns-proxy is not installed in $PREFIX (or no node): nothing to flush"
  else
    use=$config
    if [ ! -f "$config" ] || ! "$node" "$dest/dist/src/cli.js" render --config "$config" >/dev/null 2>&1; then
      # no usable config: flush what the defaults name (table apns_proxy, fwmark 0x2a, table 42)
      use=$(mktemp)
      echo '{}' > "$use"
      say "no valid $config: flushing the default table and routing"
    fi
    if "$node" "$dest/dist/src/cli.js" flush --config "$use" | sed 's/^/uninstall: /'; then :; else
      say "warning: apns-proxy flush failed; remove by hand: nft delete table inet apns_proxy"
    fi
    [ "$use" = "$config" ] || rm -f "$use"
  fi
else
  say "kernel state not flushed (--root or --no-flush)"
fi

# --- files --------------------------------------------------------------------------------------------------
rm -f "$unit" "$ROOT/etc/sysctl.d/apns-proxy.conf" "$ROOT/etc/modules-load.d/apns-proxy.conf"
link=$ROOT$BINDIR/apns-proxy
if [ -L "$link" ] && [ "$(readlink "$link")" = "$PREFIX/dist/src/cli.js" ]; then rm -f "$link"; fi
rm -rf "$dest"
say "removed $PREFIX, $BINDIR/apns-proxy, the unit, sysctl.d and modules-load.d files"
if [ "$systemd" = 1 ]; then
  systemctl daemon-reload
  systemctl reset-failed apns-proxy.service >/dev/null 2>&1 || true
fi

if [ "$PURGE" = 1 ]; then
  rm -rf "$ROOT/etc/apns-proxy" "$ROOT/var/lib/apns-proxy" "$ROOT/var/lib/private/apns-proxy"
  say "purged /etc/apns-proxy and /var/lib/apns-proxy"
else
  say "kept /etc/apns-proxy (config) and /var/lib/apns-proxy (state); --purge removes them"
fi
