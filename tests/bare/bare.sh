#!/usr/bin/env bash
# tests/bare/bare.sh - the "two commands on a bare machine" proof.
#
# Starts from a debootstrap minbase Debian 12 chroot (git, make and
# ca-certificates only, the standard /etc/hosts with ::1 localhost), clones a
# commit of this repository into it and runs, as a new user would:
#
#   1. `make run` in the background until the dev server prints its curl
#      line; runs that curl line and waits for the message to land in
#      var/mail/; stops the server;
#   2. `make test` (unless --run-only).
#
# Each step is timed, and what it installed is recorded (packages, installed
# MiB from dpkg, downloaded MiB from apt's cache). The report goes to stdout
# and to $BARE_DIR/report-<time>.txt, the logs to $BARE_DIR/logs-<time>/.
#
# The pristine debootstrap result is kept as $BARE_DIR/pristine.tar (outside
# the repository), so later runs start bare again in seconds; delete it to
# bootstrap anew. Each run unpacks it into a fresh $BARE_DIR/root-<time>,
# removed on exit (--keep keeps it).
#
# Every command runs in its own mount namespace whose root is the tree
# (pivot_root, with /proc, /sys and /dev mounted inside), not under a plain
# chroot: the kernel refuses user namespaces to a chrooted process, and the
# tests that give txmail a private /etc/hosts (`unshare -rm`) must run as
# they do on a real machine. The mounts vanish with the namespace.
#
# Needs root (namespaces, mounts) and network access to the Debian mirror this
# machine's apt uses (read from /etc/apt/sources.list.d/debian.sources, or
# MIRROR=...). Never kills anything it did not start: it stops the processes
# of its own mount namespace and their descendants, and fails with a message when the dev server's
# ports (127.0.0.1:8080 and :2525, shared with the host's network) are taken.
# Daemons that packages start on install (redis-server, dnsmasq) are held
# back by a policy-rc.d in the chroot, as in Debian's container images.
#
#   usage: tests/bare/bare.sh [--repo PATH] [--commit REV] [--run-only] [--keep]
#          tests/bare/bare.sh --pristine-only    (only make pristine.tar)
#   env:   BARE_DIR (default /var/tmp/txmail-bare), MIRROR, SUITE (bookworm),
#          RUN_TIMEOUT (s until the curl line, 1800), TEST_TIMEOUT (s, 3600)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
commit=""
run_only=0
keep=0
pristine_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--repo) repo=$(cd "$2" && pwd); shift 2 ;;
	--commit) commit=$2; shift 2 ;;
	--run-only) run_only=1; shift ;;
	--keep) keep=1; shift ;;
	--pristine-only) pristine_only=1; shift ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
	*) echo "bare.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

BARE_DIR=${BARE_DIR:-/var/tmp/txmail-bare}
SUITE=${SUITE:-bookworm}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
TEST_TIMEOUT=${TEST_TIMEOUT:-3600}
HTTP_PORT=8080
SINK_PORT=2525

die() { echo "bare.sh: $*" >&2; exit 1; }
now() { date +%s; }
say() { echo "[bare $(date +%H:%M:%S)] $*"; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, namespaces, mounts)"
[ -n "$commit" ] || commit=$(git -C "$repo" rev-parse HEAD)
commit=$(git -C "$repo" rev-parse --verify "$commit^{commit}") || die "no commit $commit in $repo"

# The dev server listens on the host's loopback (the chroot shares the
# network): never take over a port somebody else is using.
for p in $HTTP_PORT $SINK_PORT; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "127.0.0.1:$p is in use on this machine; the dev server needs it (stop what listens there, or run later)"
	fi
done

mirror_from_env=0
[ -n "${MIRROR:-}" ] && mirror_from_env=1
if [ -z "${MIRROR:-}" ]; then
	MIRROR=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	[ -n "$MIRROR" ] || die "no mirror: set MIRROR=http://.../debian"
fi
if ! command -v debootstrap >/dev/null; then
	say "installing debootstrap on this machine"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$BARE_DIR"
root=$BARE_DIR/root-$stamp
logs=$BARE_DIR/logs-$stamp
report=$BARE_DIR/report-$stamp.txt
mkdir -p "$logs"
: >"$report"
rep() { echo "$*" | tee -a "$report"; }

# --- cleanup: the processes of our namespace, then the tree ----------------------
leader=""       # the pid of the namespace's first process (make run / make test)
leader_ns=""    # its mount namespace, once it has entered it
host_ns=$(readlink /proc/self/ns/mnt)
note_ns() {
	local ns
	[ -n "$leader_ns" ] && return 0
	ns=$(readlink "/proc/$leader/ns/mnt" 2>/dev/null) || return 0
	[ "$ns" != "$host_ns" ] || return 0
	# fd 9 holds the namespace: while it is open its id cannot be reused by
	# somebody else's namespace, so ns_procs never matches a stranger
	exec 9<"/proc/$leader/ns/mnt" || return 0
	leader_ns=$(readlink "/proc/$$/fd/9")
	return 0
}
ns_procs() {    # the processes in the leader's mount namespace and all their descendants
	local p line more
	local -A ppid=() keep=()
	note_ns
	[ -n "$leader_ns" ] || return 0
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		{ read -r line <"/proc/$p/stat"; } 2>/dev/null || continue
		line=${line##*) }
		line=${line#* }
		ppid[$p]=${line%% *}
		[ "$(readlink "/proc/$p/ns/mnt" 2>/dev/null)" = "$leader_ns" ] && keep[$p]=1
	done
	more=1
	while [ "$more" = 1 ]; do
		more=0
		for p in "${!ppid[@]}"; do
			if [ -z "${keep[$p]:-}" ] && [ -n "${keep[${ppid[$p]}]:-}" ]; then keep[$p]=1; more=1; fi
		done
	done
	echo "${!keep[@]}"
}
stop_ns_procs() {
	local pids i
	[ -n "$leader" ] || return 0
	pids=$(ns_procs)
	[ -n "$pids" ] || { leader=""; leader_ns=""; exec 9<&-; return 0; }
	kill -TERM $pids 2>/dev/null || true   # txmail stops its redis child on SIGTERM
	for i in $(seq 1 100); do
		kill -0 $pids 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL $pids 2>/dev/null || true
	leader=""; leader_ns=""
	exec 9<&-
	return 0
}
cleanup() {
	local rc=$?
	set +e
	stop_ns_procs
	if [ "$keep" = 0 ] && [ -d "$root" ] && ! grep -q " $root" /proc/mounts; then
		rm -rf "$root"
	fi
	[ "$rc" = 0 ] || echo "bare.sh: failed (rc $rc); logs in $logs" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the pristine chroot ---------------------------------------------------------
if [ ! -s "$BARE_DIR/pristine.tar" ]; then
	say "debootstrap --variant=minbase $SUITE from $MIRROR (first run only)"
	t0=$(now)
	rm -rf "$BARE_DIR/pristine"
	debootstrap --variant=minbase --include=ca-certificates,git,make "$SUITE" "$BARE_DIR/pristine" "$MIRROR" \
		>"$logs/debootstrap.log" 2>&1 || { tail -n 20 "$logs/debootstrap.log"; die "debootstrap failed"; }
	tar -C "$BARE_DIR/pristine" --numeric-owner -cf "$BARE_DIR/pristine.tar.part" .
	mv "$BARE_DIR/pristine.tar.part" "$BARE_DIR/pristine.tar"
	rm -rf "$BARE_DIR/pristine"
	rep "debootstrap:        $(( $(now) - t0 )) s (pristine.tar $(du -m "$BARE_DIR/pristine.tar" | cut -f1) MiB)"
else
	rep "debootstrap:        reused $BARE_DIR/pristine.tar"
fi
[ "$pristine_only" = 0 ] || exit 0
mkdir -p "$root"
tar -C "$root" --numeric-owner -xf "$BARE_DIR/pristine.tar"

# --- what a fresh Debian 12 machine has --------------------------------------------
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -f /etc/npmrc ] && cp /etc/npmrc "$root/etc/npmrc"
if [ -f /etc/apt/sources.list.d/debian.sources ] && [ "$mirror_from_env" = 0 ]; then
	cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
	rm -f "$root/etc/apt/sources.list"
fi
printf '#!/bin/sh\n# bare.sh: no daemons started by package installs\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

git clone -q "$repo" "$root/root/txmail"
git -C "$root/root/txmail" checkout -q --detach "$commit"
rep "commit:             $commit"

# in_chroot CMD: CMD under sh in the clone, with a login-like environment, in
# a new mount namespace whose root is the tree (see the top of this file).
NS_SCRIPT='
		set -e
		r=$1
		mount --bind "$r" "$r"
		mount -t proc proc "$r/proc"
		mount -t sysfs sys "$r/sys"
		mount --rbind /dev "$r/dev"
		mkdir -p "$r/.oldroot"
		cd "$r"
		pivot_root . .oldroot
		cd /
		umount -l /.oldroot
		rmdir /.oldroot
		exec /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			/bin/sh -c "cd /root/txmail && $2"'
in_chroot() {
	unshare --mount --propagation private /bin/sh -c "$NS_SCRIPT" sh "$root" "$1"
}
# start_in_chroot CMD LOG: in_chroot in the background; $! (the leader) is the
# unshare process itself, which becomes the namespace's first process.
start_in_chroot() {
	(exec unshare --mount --propagation private /bin/sh -c "$NS_SCRIPT" sh "$root" "$1") \
		>"$2" 2>&1 </dev/null &
	leader=$!
}
pkgs() { in_chroot "dpkg-query -W -f='\${Package}\n' | sort"; }
inst_kib() { in_chroot "dpkg-query -W -f='\${Installed-Size}\n'" | awk '{ s += $1 } END { print s + 0 }'; }
debs_mib() { du -sm "$root/var/cache/apt/archives" | cut -f1; }
installed() {     # installed LABEL BEFORE_LIST BEFORE_KIB BEFORE_DEBS
	local after n
	after=$(pkgs)
	n=$(comm -13 <(echo "$2") <(echo "$after") | grep -c . || true)
	rep "$(printf '%-20s%s packages, %s MiB installed, %s MiB downloaded' "$1" "$n" \
		$(( ($(inst_kib) - $3) / 1024 )) $(( $(debs_mib) - $4 )))"
	comm -13 <(echo "$2") <(echo "$after") >"$logs/$(echo "$1" | tr -c 'a-z0-9\n' '-')packages.txt"
}

# --- 1. make run ---------------------------------------------------------------
p0=$(pkgs); k0=$(inst_kib); d0=$(debs_mib)
rep "bare packages:      $(echo "$p0" | wc -l) ($(( k0 / 1024 )) MiB)"
say "make run (log $logs/make-run.log)"
t0=$(now)
start_in_chroot 'exec make run' "$logs/make-run.log"
line=""
while [ -z "$line" ]; do
	line=$(grep -m1 '^curl ' "$logs/make-run.log" || true)
	[ -n "$line" ] && break
	note_ns
	kill -0 "$leader" 2>/dev/null || { tail -n 40 "$logs/make-run.log"; die "make run exited before printing the curl line"; }
	[ $(( $(now) - t0 )) -lt "$RUN_TIMEOUT" ] || { tail -n 40 "$logs/make-run.log"; die "no curl line after ${RUN_TIMEOUT}s"; }
	sleep 0.5
done
rep "make run:           $(( $(now) - t0 )) s to the curl line"
installed "run installed:" "$p0" "$k0" "$d0"
p1=$(pkgs); k1=$(inst_kib); d1=$(debs_mib)

in_chroot "$line" >"$logs/curl.out" 2>&1 || { cat "$logs/curl.out"; die "the printed curl line failed"; }
grep -q '"id"' "$logs/curl.out" || { cat "$logs/curl.out"; die "the curl line got no message id"; }
t1=$(now); eml=""
while [ -z "$eml" ]; do
	eml=$(find "$root/root/txmail/var/mail" -name '*.eml' 2>/dev/null | head -n1)
	[ -n "$eml" ] && break
	[ $(( $(now) - t1 )) -lt 30 ] || { tail -n 40 "$logs/make-run.log"; die "no message in var/mail/ 30 s after the curl line"; }
	sleep 0.2
done
grep -q '^Subject: Hello from txmail' "$eml" || die "$eml is not the message the curl line sent"
rep "curl line:          delivered into var/mail/$(basename "$eml") in $(( $(now) - t1 )) s"
note_ns
[ -n "$leader_ns" ] || die "cannot see make run's mount namespace: not stopping blindly"
left=$(ns_procs)
case " $left " in *" $leader "*) ;; *) die "make run ($leader) is not among its namespace's processes ($left)" ;; esac
stop_ns_procs
for p in $left; do
	if kill -0 "$p" 2>/dev/null; then die "process $p of make run is still there after SIGKILL"; fi
done

# --- 2. make test --------------------------------------------------------------
if [ "$run_only" = 0 ]; then
	say "make test (log $logs/make-test.log)"
	t0=$(now)
	set +e
	start_in_chroot 'exec make test' "$logs/make-test.log"
	tpid=$leader
	t_end=$(( t0 + TEST_TIMEOUT ))
	while kill -0 "$tpid" 2>/dev/null && [ "$(now)" -lt "$t_end" ]; do note_ns; sleep 1; done
	if kill -0 "$tpid" 2>/dev/null; then
		echo "make test still running after ${TEST_TIMEOUT}s: stopping it" | tee -a "$logs/make-test.log"
	fi
	stop_ns_procs      # what is left of it (nothing, when the tests clean up)
	wait "$tpid"
	rc=$?
	set -e
	rep "make test:          $(( $(now) - t0 )) s, exit $rc"
	installed "test installed:" "$p1" "$k1" "$d1"
	if [ "$rc" != 0 ]; then
		tail -n 40 "$logs/make-test.log"
		die "make test failed (exit $rc)"
	fi
fi
rep "report:             $report"
