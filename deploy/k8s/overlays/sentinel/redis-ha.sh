#!/bin/sh
# redis-ha.sh - the start script of the Sentinel overlay's Redis pods: one
# script for both containers of a pod, `redis-ha.sh redis` (the data node)
# and `redis-ha.sh sentinel` (its sentinel). What it decides is who the
# primary is, every time a container starts:
#
#   1. ask each sentinel (HA_SENTINELS, in turn, 2 s each) which node is the
#      primary of HA_MASTER: after a failover the answer is the promoted
#      replica, so a restarted old primary comes back as a replica of it and
#      never as a second primary;
#   2. if no sentinel answers (the first start of the group, or every pod
#      restarted at once), the node of ordinal 0.
#
# The data node then starts on HA_CONF (deploy/redis.conf) plus, on stdin,
# its password (requirepass, and masterauth to replicate), the address it
# announces and `replicaof` unless it is the primary. The sentinel writes
# its configuration under HA_SENTINEL_DIR (Sentinel rewrites that file
# itself, so it must be writable) and watches the primary with quorum 2.
# The one password (HA_PASSWORD_FILE) is the data nodes' and the sentinels'
# (txmail: in redis-url and in TXMAIL_REDIS_SENTINEL_PASSWORD_FILE); it is
# never in an argv or an environment variable.
#
# Known limit of step 2: when all three pods restart together after a
# failover, ordinal 0 becomes primary with its own data; a write only the
# last primary had is lost (with TXMAIL_REDIS_MIN_REPLICAS=1 an
# acknowledged write was on two of the three nodes, not necessarily on 0).
#
# Environment (set in redis-sentinel.yaml; a test runs this script on
# loopback ports with other values):
#   HA_ORDINAL        this pod's ordinal (default: from the host name, txmail-redis-N)
#   HA_NODES          host:port of the data nodes, by ordinal, space-separated
#   HA_SENTINELS      host:port of the sentinels, by ordinal
#   HA_MASTER         the master name (the last part of redis+sentinel://.../<master>)
#   HA_PASSWORD_FILE  the password
#   HA_CONF           the data node's redis.conf
#   HA_SENTINEL_DIR   the sentinel's writable directory
#   HA_BIND           the sentinel's bind line (default: every interface)
#   HA_DOWN_AFTER_MS  a primary unanswered this long is down (default 5000)
#   HA_FAILOVER_TIMEOUT_MS  a failover attempt that did not finish (a split
#                     vote) is tried again after twice this (default 10000;
#                     Redis's own 180000 would stop sending for 6 minutes)
set -eu

role=${1:?usage: redis-ha.sh redis|sentinel}
pw=$(cat "$HA_PASSWORD_FILE")
ordinal=${HA_ORDINAL:-$(sed 's/.*-//' /etc/hostname)}

# nth I LIST - the I-th (from 0) word of LIST
nth() {
	echo "$2" | tr ' ' '\n' | grep -v '^$' | sed -n "$(($1 + 1))p"
}

primary=""
for s in $HA_SENTINELS; do
	a=$(REDISCLI_AUTH="$pw" timeout 2 redis-cli -h "${s%:*}" -p "${s##*:}" --raw \
		SENTINEL get-master-addr-by-name "$HA_MASTER" 2>/dev/null) || continue
	host=$(echo "$a" | sed -n 1p)
	port=$(echo "$a" | sed -n 2p)
	case "$port" in
	'' | *[!0-9]*) continue ;;
	esac
	[ -n "$host" ] || continue
	primary="$host:$port"
	break
done
[ -n "$primary" ] || primary=$(nth 0 "$HA_NODES")
echo "redis-ha: $role of ordinal $ordinal, primary $primary" >&2

case "$role" in
redis)
	me=$(nth "$ordinal" "$HA_NODES")
	replicaof=""
	[ "$primary" = "$me" ] || replicaof="replicaof ${primary%:*} ${primary##*:}"
	exec redis-server "$HA_CONF" - <<CONF
port ${me##*:}
requirepass $pw
masterauth $pw
replica-announce-ip ${me%:*}
replica-announce-port ${me##*:}
$replicaof
CONF
	;;
sentinel)
	me=$(nth "$ordinal" "$HA_SENTINELS")
	mkdir -p "$HA_SENTINEL_DIR"
	cat >"$HA_SENTINEL_DIR/sentinel.conf" <<CONF
port ${me##*:}
bind ${HA_BIND:-* -::*}
protected-mode no
dir $HA_SENTINEL_DIR
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${me%:*}
sentinel announce-port ${me##*:}
requirepass $pw
sentinel sentinel-pass $pw
sentinel monitor $HA_MASTER ${primary%:*} ${primary##*:} 2
sentinel auth-pass $HA_MASTER $pw
sentinel down-after-milliseconds $HA_MASTER ${HA_DOWN_AFTER_MS:-5000}
sentinel failover-timeout $HA_MASTER ${HA_FAILOVER_TIMEOUT_MS:-10000}
sentinel parallel-syncs $HA_MASTER 1
CONF
	chmod 600 "$HA_SENTINEL_DIR/sentinel.conf"
	exec redis-server "$HA_SENTINEL_DIR/sentinel.conf" --sentinel
	;;
*)
	echo "redis-ha.sh: unknown role $role (redis or sentinel)" >&2
	exit 2
	;;
esac
