#!/bin/sh
# keepalived notify script for an apns-proxy router pair (README "Running a pair"):
# the steps of conntrack-tools' primary-backup.sh, then a state file `apns-proxy doctor` reads.
#
#   notify.sh primary|backup|fault [CONNTRACKD_CONFIG] [STATE_FILE]
#
#   primary  conntrackd -c (commit the external cache), -f (flush the caches), -R (resync the
#            internal cache with the kernel table), -B (bulk update to the new backup)
#   backup   conntrackd -n (ask the primary for a full resync)
#   fault    conntrackd -t (shorten the kernel timers: states of a router that lost its links go)
# STATE_FILE gets "MASTER|BACKUP|FAULT <unix time> <keepalived pid>"; STATE_FILE.log one line per step.
set -u
what=${1:-}
conf=${2:-/etc/conntrackd/conntrackd.conf}
statefile=${3:-/run/apns-proxy/ha-state}
conntrackd=${CONNTRACKD:-/usr/sbin/conntrackd}
mkdir -p "$(dirname "$statefile")"
log() { printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$*" >> "$statefile.log"; }
step() {
	if out=$("$conntrackd" -C "$conf" "$@" 2>&1); then log "conntrackd $*: ok"
	else log "conntrackd $*: failed: $out"; fi
}
case "$what" in
	primary) state=MASTER; step -c; step -f; step -R; step -B ;;
	backup) state=BACKUP; step -n ;;
	fault) state=FAULT; step -t ;;
	*) echo "usage: $0 primary|backup|fault [CONNTRACKD_CONFIG] [STATE_FILE]" >&2; exit 2 ;;
esac
printf '%s %s %s\n' "$state" "$(date +%s)" "$PPID" > "$statefile.tmp" && mv "$statefile.tmp" "$statefile"
log "state $state"
exit 0
