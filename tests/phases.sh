#!/usr/bin/env bash
# phases.sh - run `make test`'s phases, some of them side by side, and time each.
#
# Usage: tests/phases.sh GROUP...   (from the repository root; MAKE may name make)
#
# A GROUP is one or more lanes joined by '+', run at the same time; a lane is
# one or more phase names joined by ',', run one after the other. Phase NAME
# is `$MAKE --no-print-directory do-NAME`; its output goes to
# build/phases/NAME.log; "nice:NAME" runs it under `nice -n 10` (a CPU-bound
# phase beside phases that wait: theirs get the CPU first when they wake). The groups run in order; the next one starts when
# every lane of the current one has ended.
#
#   tests/phases.sh test-build spec-lint 'unit,unit-asan,valgrind-smoke+integration'
#
# A group of one lane prints its phases' output as it comes. In a group of
# several lanes nothing is interleaved: each phase's whole log is printed as
# one block when the phase ends (under flock), so a failing phase's output
# reads as if it had run alone. Every phase ends with a line
#
#   phase NAME: 116 s (cpu 57 s, load 1.20 -> 3.40) ok|FAILED (rc N)
#
# (cpu: user+sys of the processes it waited for; load: the 1-minute load
# average when it started and ended) and the run ends with a table of all
# of them. A failed phase stops its own lane; the other lanes of its group
# run to their end, then the run stops with exit status 1 and names the
# failed phases.
#
# Must never: hide the output of a failed phase, or let two phases' output
# interleave.

set -u

LOGDIR=build/phases
MAKE=${MAKE:-make}
mkdir -p "$LOGDIR"
LOCK=$LOGDIR/.print.lock
SUMMARY=$LOGDIR/summary.txt
: >"$SUMMARY"

load1() { cut -d' ' -f1 /proc/loadavg; }

# run_phase NAME LIVE: run do-NAME with its log; print the block and the
# timing line; append the timing line to the summary. Returns make's status.
run_phase() {
	local name=$1 live=$2 log tfile start end rc cpu l0 l1 line
	local -a pre=()
	if [ "${name#nice:}" != "$name" ]; then
		name=${name#nice:}
		pre=(nice -n 10)
	fi
	log="$LOGDIR/$name.log"
	tfile="$LOGDIR/.$name.times"
	l0=$(load1)
	start=$(date +%s)
	if [ "$live" = 1 ]; then
		echo "=== phase $name"
		set -o pipefail
		TIMES=$tfile bash -c '"$@"; rc=$?; times >"$TIMES"; exit $rc' _ \
			"${pre[@]}" "$MAKE" --no-print-directory "do-$name" 2>&1 </dev/null | tee "$log"
		rc=$?
		set +o pipefail
	else
		{ flock 9; echo "=== phase $name: started (output in $log)"; } 9>"$LOCK"
		TIMES=$tfile bash -c '"$@"; rc=$?; times >"$TIMES"; exit $rc' _ \
			"${pre[@]}" "$MAKE" --no-print-directory "do-$name" >"$log" 2>&1 </dev/null
		rc=$?
	fi
	end=$(date +%s)
	l1=$(load1)
	# `times`, second line: the children's user and system time, "0m37.548s 0m19.331s"
	cpu=$(sed -n 2p "$tfile" 2>/dev/null | awk '{ t = 0; for (i = 1; i <= NF; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } printf "%.0f", t }')
	rm -f "$tfile"
	line="phase $name: $((end - start)) s (cpu ${cpu:-?} s, load $l0 -> $l1${pre:+, nice})"
	if [ $rc = 0 ]; then line="$line ok"; else line="$line FAILED (rc $rc)"; fi
	{
		flock 9
		if [ "$live" != 1 ]; then
			echo "=== phase $name: output"
			cat "$log"
		fi
		echo "$line"
		echo "$line" >>"$SUMMARY"
	} 9>"$LOCK"
	return $rc
}

# run_lane LIVE PHASE,PHASE...: one after the other, stopping at a failure.
run_lane() {
	local live=$1 p
	local -a names
	IFS=, read -r -a names <<<"$2"
	for p in "${names[@]}"; do
		run_phase "$p" "$live" || return 1
	done
	return 0
}

t0=$(date +%s)
failed=""
for group in "$@"; do
	IFS=+ read -r -a lanes <<<"$group"
	if [ ${#lanes[@]} = 1 ]; then
		run_lane 1 "${lanes[0]}" || failed="${lanes[0]}"
	else
		pids=()
		for lane in "${lanes[@]}"; do
			run_lane 0 "$lane" &
			pids+=($!)
		done
		for i in "${!pids[@]}"; do
			wait "${pids[$i]}" || failed="$failed ${lanes[$i]}"
		done
	fi
	[ -n "$failed" ] && break
done

echo "=== phases ($(($(date +%s) - t0)) s in all, $(nproc) cores)"
cat "$SUMMARY"
if [ -n "$failed" ]; then
	echo "FAILED:$(grep -h FAILED "$SUMMARY" | sed 's/^phase \([^:]*\):.*/ \1/' | tr -d '\n') (logs in $LOGDIR/)"
	exit 1
fi
exit 0
