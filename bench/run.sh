#!/bin/bash
# run.sh BUILD_DIR - the SMIS load benchmarks (bench/RESULTS.md says what
# they measure and how). Starts ringring-sim, govapp-sim (when built) and smisd
# with a benchmark configuration on loopback, drives them with wrk and
# bench/post.lua, and rewrites bench/RESULTS.md with the medians.
#
# Every scenario is run BENCH_REPS times; one repetition runs every scenario
# once, each "through smisd" run right after its baseline run straight at the
# simulator, so drift on a noisy machine hits both alike. Figures are medians
# and smisd/baseline ratios.
#
# Environment (all optional):
#   BENCH_DURATION=6      seconds per wrk run
#   BENCH_REPS=3          repetitions
#   BENCH_CONNECTIONS=1000
#   BENCH_THREADS=2       wrk threads
#   BENCH_ONLY=sms|govapp only one path
#   BENCH_OUT=FILE        where to write (default bench/RESULTS.md)
#   BENCH_KEEP=1          keep the scratch folder (logs, raw results)
#   BENCH_PROXY=0         leave out the reference runs through nginx (made
#                         when nginx is installed: apt-get install
#                         nginx-light): the same load as sms_only through a
#                         reverse proxy that only forwards, for scale
#   BENCH_COMPARE=DIR     another build (e.g. the previous commit's): every
#                         "through smisd" run is also made with its smisd and
#                         plugins, beside this build's in the same repetition
#                         (which goes first alternates), and RESULTS.md gets
#                         the per-repetition ratios. On a machine whose speed
#                         drifts, this is how a change is measured.
# Every process it starts is stopped by PID on exit.
set -euo pipefail

usage() { echo "usage: bench/run.sh BUILD_DIR" >&2; exit 2; }
[ $# -ge 1 ] || usage
# The command as given, with the BENCH_* settings it ran under.
cmdline="$(env | grep '^BENCH_' | grep -v '^BENCH_OUT=' | sort | tr '\n' ' ')bench/run.sh $*"
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
bench="$src/bench"
# The source tree the build was configured from (for its git revision).
build_src=$(cd "$build" && sed -n "s/^srcdir='\(.*\)'$/\1/p" config.status 2> /dev/null | head -1)
build_src=$(cd "$build" && cd "${build_src:-.}" && pwd)
DURATION=${BENCH_DURATION:-6}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNECTIONS:-1000}
THREADS=${BENCH_THREADS:-2}
ONLY=${BENCH_ONLY:-}
OUT=${BENCH_OUT:-$bench/RESULTS.md}
old_build=""
old_build_src=""
if [ -n "${BENCH_COMPARE:-}" ]; then
	old_build=$(cd "$BENCH_COMPARE" && pwd)
	# No config.status (a wrapper folder, say): its own folder names it.
	old_build_src=$(cd "$old_build" && { sed -n "s/^srcdir='\(.*\)'$/\1/p" config.status 2> /dev/null || true; } | head -1)
	old_build_src=$(cd "$old_build" && cd "${old_build_src:-.}" && pwd)
fi
# The targets of the issue: closed-loop rate at 0 ms and 50 ms, and "half
# that load" for the latency target, paced to half the target rate.
TARGET_0=12000
TARGET_50=9000
HALF_0=$((TARGET_0 / 2))
HALF_50=$((TARGET_50 / 2))
# Recipients rotate over 20,000 numbers (the GovApp ones are seeded citizens):
# enough that smisd's per-recipient limit (default 10 messages per number
# per hour, left on as in production) is not what answers below ~25,000
# msg/s, few enough that the limiter's per-number memory does not swamp the
# per-message memory the RSS target is about.
RECIPIENTS=20000
GA_CITIZENS=$RECIPIENTS

for tool in wrk curl python3 openssl; do
	command -v "$tool" > /dev/null || { echo "run.sh: $tool is needed" >&2; exit 1; }
done
for f in smisd tools/ringring-sim/ringring-sim plugin-dir/sms_only.so; do
	[ -e "$build/$f" ] || { echo "run.sh: $build/$f is missing: build first" >&2; exit 1; }
done
for f in smisd plugin-dir/sms_only.so; do
	[ -z "$old_build" ] || [ -e "$old_build/$f" ] ||
		{ echo "run.sh: $old_build/$f is missing: build BENCH_COMPARE first" >&2; exit 1; }
done
have_govapp=0
if [ "$ONLY" != sms ] && [ -x "$build/tools/govapp-sim/govapp-sim" ] &&
   [ -e "$build/plugin-dir/govapp.so" ] && [ -e "$build/plugin-dir/govapp_first.so" ]; then
	have_govapp=1
fi
if [ "$ONLY" = govapp ] && [ $have_govapp = 0 ]; then
	echo "run.sh: govapp-sim or the govapp plugins are not built" >&2
	exit 1
fi

# 1000 client sockets + 1000 upstream sockets in smisd, the same again in
# the simulators and wrk.
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS * 2 + 256)) ]; then
	echo "run.sh: open files limit $(ulimit -n) is too low for $CONNS connections" >&2
	exit 1
fi

# How busy the machine already is (other users of a shared machine), in
# hundredths of a core, over 2 s before anything starts.
read -r b0 _ <<< "$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat)"
sleep 2
read -r b1 _ <<< "$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat)"
idle_busy=$(( (b1 - b0) * 100 / $(getconf CLK_TCK) / 2 ))

# What one X25519 operation costs on this machine (OpenSSL, one core): the
# floor of the GovApp path's cost, which report.py turns into a bound.
x25519_ops=$(openssl speed -seconds 2 ecdhx25519 2> /dev/null |
	awk '/ecdh \(X25519\)/ {print int($NF); exit}')
x25519_ops=${x25519_ops:-0}

work=$(mktemp -d /tmp/smis-bench-XXXXXX)
pids=""
smisd_pid=""
proxy_pid=""
cleanup() {
	local p i
	pids="${smisd_pid:-} ${proxy_pid:-} $pids"
	for p in $pids; do kill "$p" 2> /dev/null || true; done
	# The simulators are not this shell's children (they were started in a
	# command substitution): wait for them by polling.
	for p in $pids; do
		wait "$p" 2> /dev/null || true
		for i in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
	done
	if [ "${BENCH_KEEP:-}" = 1 ]; then
		echo "scratch folder kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_sim NAME LOG ARGV... : start a simulator on port 0, wait for its
# "listening on HOST:PORT" line, print the port. It runs in a command
# substitution, so the caller adds $work/NAME.pid to $pids.
start_sim() {
	local name=$1 log=$2 i=0
	shift 2
	"$@" > "$log" 2>&1 &
	echo $! > "$work/$name.pid"
	until grep -q "listening on" "$log" 2> /dev/null; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$(cat "$work/$name.pid")" 2> /dev/null; then
			echo "run.sh: $name did not start:" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.05
	done
	sed -n 's/.*listening on .*:\([0-9][0-9]*\)$/\1/p' "$log" | head -1
}

GOVAPP_TOKEN="bench-govapp-token"
GOVAPP_SECRET="bench-govapp-callback-secret"
RR_KEY="bench-ringring-key"
API_KEY="bench-key-0123456789"

rr_port=$(start_sim ringring "$work/ringring-sim.log" \
	"$build/tools/ringring-sim/ringring-sim" --listen 127.0.0.1:0 --api-key "$RR_KEY" --quiet) ||
	{ kill "$(cat "$work/ringring.pid")" 2> /dev/null; exit 1; }
pids="$pids $(cat "$work/ringring.pid")"
RR="http://127.0.0.1:$rr_port"
smisd_port=$(free_port)
API="http://127.0.0.1:$smisd_port"

# The reference proxy: nginx forwarding to ringring-sim, nothing else, set
# up like smisd where they compare (2 workers on SO_REUSEPORT sockets, kept-
# alive upstream connections without a cap). It shows what any process in
# the middle costs on this machine.
NGINX=""
PROXY=""
if [ "$ONLY" != govapp ] && [ "${BENCH_PROXY:-1}" != 0 ]; then
	NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
fi
if [ -n "$NGINX" ]; then
	proxy_port=$(free_port)
	PROXY="http://127.0.0.1:$proxy_port"
	mkdir -p "$work/nginx"
	cat > "$work/nginx/nginx.conf" << EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  upstream ringring { server 127.0.0.1:$rr_port; keepalive 4096; }
  server {
    listen 127.0.0.1:$proxy_port reuseport;
    location / {
      proxy_pass http://ringring;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
fi

GA=""
if [ $have_govapp = 1 ]; then
	# Citizens +32470100000 ...: GovApp installed, notifications on, one
	# device, so govapp_first is a lookup and a send per message.
	python3 - "$work/seed.json" "$GA_CITIZENS" << 'EOF'
import json, sys
n = int(sys.argv[2])
langs = ["nl", "fr", "de", "en"]
citizens = [{"phone": "+%d" % (32470100000 + i), "installed": True, "notifications": True,
             "language": langs[i % 4],
             "devices": [{"device_id": "bench-phone", "platform": "android" if i % 2 else "ios"}]}
            for i in range(n)]
json.dump({"citizens": citizens}, open(sys.argv[1], "w"))
EOF
	ga_port=$(start_sim govapp "$work/govapp-sim.log" \
		"$build/tools/govapp-sim/govapp-sim" --listen 127.0.0.1:0 --token "$GOVAPP_TOKEN" \
		--seed "$work/seed.json" --quiet --record 4) ||
		{ kill "$(cat "$work/govapp.pid")" 2> /dev/null; exit 1; }
	pids="$pids $(cat "$work/govapp.pid")"
	GA="http://127.0.0.1:$ga_port"
fi

# The benchmark configuration: both strategies, log level warn, no status
# callbacks (statusUrl unset) so the runs measure the synchronous path only.
api_hash=$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
cat > "$work/smisd.conf" << EOF
listen = { address = "127.0.0.1"; port = $smisd_port; threads = 2; connection_timeout_s = 60;
           max_connections = 10000; };
plugin_dir = "$build/plugin-dir";
store = { path = "$work/smis.db";
          phone_hash_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"; };
limits = { max_in_flight = 8192; job_timeout_ms = 15000; };
log = { level = "warn"; };
channels = (
  { name = "govapp"; plugin = "govapp"; base_url = "${GA:-http://127.0.0.1:9}"; api_token = "$GOVAPP_TOKEN";
    callback_secret = "$GOVAPP_SECRET"; http = { timeout_ms = 5000; connect_timeout_ms = 1000; }; },
  { name = "ringring"; plugin = "ringring"; base_url = "$RR/v1"; api_key = "$RR_KEY";
    http = { timeout_ms = 5000; connect_timeout_ms = 1000; }; }
);
strategies = (
  { name = "govapp_first"; steps = ( { plugin = "govapp_first"; app = "govapp"; sms = "ringring"; } ); },
  { name = "sms_only"; steps = ( { plugin = "sms_only"; channel = "ringring"; } ); }
);
institutions = (
  { name = "bench"; api_keys = [ "sha256:$api_hash" ];
    strategies = [ "govapp_first", "sms_only" ]; default_strategy = "sms_only"; sender = "SMISBench"; }
);
EOF
"$build/smisd" --check-config -c "$work/smisd.conf" > /dev/null
if [ -n "$old_build" ]; then
	sed "s#^plugin_dir = .*#plugin_dir = \"$old_build/plugin-dir\";#" "$work/smisd.conf" > "$work/smisd-old.conf"
	"$old_build/smisd" --check-config -c "$work/smisd-old.conf" > /dev/null
fi

# smisd is started afresh, on an empty store, for every run: each run's peak
# RSS is its own (glibc keeps freed heap, so a reset VmHWM would still carry
# the previous run's) and the store does not grow across the whole session.
wait_up() { # wait_up NAME PID URL LOG: until URL answers; exit if PID dies first
	local i=0
	until curl -fsS -o /dev/null "$3" 2> /dev/null; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$2" 2> /dev/null; then
			echo "run.sh: $1 did not start:" >&2
			cat "$4" >&2
			exit 1
		fi
		sleep 0.05
	done
}

start_smisd() { # start_smisd [old]: this build's smisd, or BENCH_COMPARE's
	local bin="$build/smisd" conf="$work/smisd.conf"
	if [ "${1:-}" = old ]; then
		bin="$old_build/smisd"
		conf="$work/smisd-old.conf"
	fi
	rm -f "$work/smis.db" "$work/smis.db-wal" "$work/smis.db-shm"
	"$bin" -c "$conf" 2>> "$work/smisd.log" &
	smisd_pid=$!
	wait_up smisd "$smisd_pid" "$API/healthz" "$work/smisd.log"
}
stop_smisd() {
	local rc=0
	kill -TERM "$smisd_pid"
	wait "$smisd_pid" || rc=$?
	smisd_pid=""
	if [ $rc -ne 0 ]; then
		echo "run.sh: smisd exited with status $rc" >&2
		tail -20 "$work/smisd.log" >&2
		exit 1
	fi
	db_bytes=$(( $(stat -c %s "$work/smis.db" 2> /dev/null || echo 0) + \
		     $(stat -c %s "$work/smis.db-wal" 2> /dev/null || echo 0) ))
}

set_latency() { # set_latency MS: upstream latency of both simulators
	# reset forgets messages, counters and faults (govapp-sim keeps its
	# citizens unless told {"registry":true}).
	for u in "$RR" ${GA:+"$GA"}; do
		curl -fsS -X POST "$u/_sim/reset" -d '{}' > /dev/null
		if [ "$1" -gt 0 ]; then
			curl -fsS -X POST "$u/_sim/faults" -d "{\"latency_ms\":$1}" > /dev/null
		fi
	done
}

start_proxy() {
	"$NGINX" -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" \
		-g 'daemon off;' 2>> "$work/nginx/error.log" &
	proxy_pid=$!
	wait_up nginx "$proxy_pid" "$PROXY/_sim/stats" "$work/nginx/error.log"
}
stop_proxy() {
	kill -QUIT "$proxy_pid"
	wait "$proxy_pid" || true
	proxy_pid=""
}
cpu_ticks() { # user+system clock ticks of a process
	awk '{print $14 + $15}' "/proc/$1/stat"
}

proxy_ticks() { # cpu_ticks of nginx's master and workers
	local t=0 p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = "$proxy_pid" ] ||
			[ "$(awk '{print $4}' "/proc/$p/stat" 2> /dev/null)" = "$proxy_pid" ] || continue
		t=$((t + $(cpu_ticks "$p" 2> /dev/null || echo 0)))
	done
	echo "$t"
}

# smisd's own view of what it adds per message: the buckets of its
# smis_message_overhead_seconds histogram (GET /metrics), all strategies
# summed, one "le count" pair per line. Empty for a build without it.
overhead_buckets() {
	curl -fsS "$API/metrics" | awk -F'[{}" ]+' '/^smis_message_overhead_seconds_bucket\{/ {
		for (i = 2; i < NF; i++) if ($i ~ /le=$/) le = $(i + 1)
		n[le] += $NF } END { for (le in n) print le, n[le] }'
}

# own_quantiles BEFORE AFTER: p50 and p99 of the messages between two
# overhead_buckets readings, interpolated within buckets as Prometheus'
# histogram_quantile() does, in ms; "own_count=0" when there is none.
own_quantiles() {
	python3 - "$1" "$2" << 'PY'
import math, sys
def read(p):
    d = {}
    for line in open(p):
        le, n = line.split()
        d[math.inf if le == "+Inf" else float(le)] = float(n)
    return d
a, b = read(sys.argv[1]), read(sys.argv[2])
cum = [(le, b[le] - a.get(le, 0.0)) for le in sorted(b)]
total = cum[-1][1] if cum else 0
out = ["own_count=%d" % total]
for q, key in ((0.5, "own_p50_ms"), (0.99, "own_p99_ms")):
    if not total:
        break
    rank, lo, below = q * total, 0.0, 0.0
    for le, n in cum:
        if n >= rank:
            v = lo if le == math.inf else lo + (le - lo) * ((rank - below) / (n - below) if n > below else 1)
            out.append("%s=%.3f" % (key, v * 1000))
            break
        lo, below = le, n
print(" ".join(out))
PY
}

sim_count() { # sim_count URL KEY: a counter of GET /_sim/stats
	curl -fsS "$1/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$2"
}

# The GovApp baseline replays the two calls govapp_first makes (lookup,
# send) as govapp-sim recorded them, with the phone number rotated.
prepare_govapp_calls() {
	curl -fsS -X POST "$API/v1/messages" -H "Authorization: Bearer $API_KEY" \
		-H 'Content-Type: application/json' \
		-d '{"recipient":"+32470100000","strategy":"govapp_first","content":{"nl":{"title":"Uw document","body":"Uw document is klaar."}}}' \
		> "$work/govapp-probe.json"
	python3 "$bench/govapp_calls.py" "$GA" "$work/govapp-lookup.call" "$work/govapp-send.call"
}

raw="$work/raw.tsv"
: > "$raw"
machine_ticks() { # busy, idle and steal clock ticks of the whole machine
	# Steal (field 9) is time the hypervisor ran other guests while this
	# machine's virtual CPUs had work: counted apart from busy time.
	awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6, $9; exit}' /proc/stat
}

# run_case REP NAME KIND TARGET URL LATENCY [RATE]
#   KIND base|smisd|old|proxy; TARGET ringring|govapp|sms_only|govapp_first
run_case() {
	local rep=$1 name=$2 kind=$3 target=$4 url=$5 lat=$6 rate=${7:-}
	local args=(auth="$API_KEY" apikey="$RR_KEY" recipients="$RECIPIENTS" threads="$THREADS")
	local line t0=0 t1=0 s0 s1 r0 r1 g0 g1 ga0=0 ga1=0 hwm=0 mb0 mi0 ms0 mb1 mi1 ms1 wrk_cpu own=""
	local p0=0 p1=0
	case $target in
	ringring) args+=(target=ringring) ;;
	govapp) args=(auth="$GOVAPP_TOKEN" recipients="$GA_CITIZENS" threads="$THREADS" target=govapp
		      govapp_lookup="$work/govapp-lookup.call" govapp_send="$work/govapp-send.call") ;;
	sms_only) args+=(target=smisd strategy="$target") ;;
	govapp_first) args=(auth="$API_KEY" recipients="$GA_CITIZENS" threads="$THREADS" target=smisd
			    strategy="$target") ;;
	esac
	[ -n "$rate" ] && args+=(rate="$rate")
	set_latency "$lat"
	db_bytes=0
	if [ "$kind" != base ]; then
		if [ "$kind" = proxy ]; then start_proxy; else start_smisd "$kind"; fi
		# One second of the same load first: curl's (or nginx's) upstream
		# connections, the store's first pages, the allocator's arenas.
		wrk -t"$THREADS" -c"$CONNS" -d1s --timeout 10s -s "$bench/post.lua" "$url" \
			-- "${args[@]}" > /dev/null
	fi
	if [ "$kind" = proxy ]; then
		p0=$(proxy_ticks)
	elif [ "$kind" != base ]; then
		echo 5 > "/proc/$smisd_pid/clear_refs" # resets VmHWM
		t0=$(cpu_ticks "$smisd_pid")
		overhead_buckets > "$work/own.before"
	fi
	s0=$(sim_count "$RR" sent)
	g0=0
	[ -n "$GA" ] && g0=$(sim_count "$GA" requests) && ga0=$(cpu_ticks "$(cat "$work/govapp.pid")")
	r0=$(cpu_ticks "$(cat "$work/ringring.pid")")
	read -r mb0 mi0 ms0 <<< "$(machine_ticks)"
	line=$( { TIMEFORMAT='WRKCPU %U %S'; time wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s \
		-s "$bench/post.lua" "$url" -- "${args[@]}"; } 2>&1 | tee -a "$work/wrk.log" | grep -E '^(BENCH|WRKCPU) ' || true)
	read -r mb1 mi1 ms1 <<< "$(machine_ticks)"
	r1=$(cpu_ticks "$(cat "$work/ringring.pid")")
	s1=$(sim_count "$RR" sent)
	g1=0
	[ -n "$GA" ] && g1=$(sim_count "$GA" requests) && ga1=$(cpu_ticks "$(cat "$work/govapp.pid")")
	if [ "$kind" = proxy ]; then
		p1=$(proxy_ticks)
		stop_proxy
	elif [ "$kind" != base ]; then
		t1=$(cpu_ticks "$smisd_pid")
		overhead_buckets > "$work/own.after"
		own=$(own_quantiles "$work/own.before" "$work/own.after")
		hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$smisd_pid/status")
		stop_smisd
	fi
	wrk_cpu=$(echo "$line" | awk '/^WRKCPU/ {printf "%.2f", $2 + $3}')
	line=$(echo "$line" | grep '^BENCH ' || true)
	if [ -z "$line" ]; then
		echo "run.sh: wrk failed for $name" >&2
		tail -20 "$work/wrk.log" >&2
		exit 1
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s smisd_cpu_ticks=%s rr_cpu_ticks=%s ga_cpu_ticks=%s wrk_cpu_s=%s machine_busy_ticks=%s machine_idle_ticks=%s machine_steal_ticks=%s rr_sent=%s ga_sent=%s hwm_kb=%s db_bytes=%s proxy_cpu_ticks=%s %s\n' \
		"$rep" "$name" "$kind" "$target" "$lat" "${rate:-0}" "$line" \
		$((t1 - t0)) $((r1 - r0)) $((ga1 - ga0)) "$wrk_cpu" $((mb1 - mb0)) $((mi1 - mi0)) $((ms1 - ms0)) \
		$((s1 - s0)) $((g1 - g0)) "$hwm" "$db_bytes" $((p1 - p0)) "$own" >> "$raw"
	printf '  %-18s %s\n' "$name" "$(echo "$line" | awk '{print $4, $6, $8, $13}')" >&2
}

# Scenarios: NAME KIND TARGET URL-VAR LATENCY RATE
scenarios=()
if [ "$ONLY" != govapp ]; then
	# Each through nginx right after the same load through smisd.
	for s in "sms0 0 -" "sms50 50 -" "sms0half 0 $HALF_0" "sms50half 50 $HALF_50"; do
		read -r g lat rate <<< "$s"
		scenarios+=("$g.base base ringring RR $lat $rate" "$g.smisd smisd sms_only API $lat $rate")
		[ -z "$NGINX" ] || scenarios+=("$g.proxy proxy ringring PROXY $lat $rate")
	done
fi
if [ $have_govapp = 1 ]; then
	scenarios+=(
		"ga0.base base govapp GA 0 -"
		"ga0.smisd smisd govapp_first API 0 -"
		"ga50.base base govapp GA 50 -"
		"ga50.smisd smisd govapp_first API 50 -"
		"ga0half.base base govapp GA 0 $HALF_0"
		"ga0half.smisd smisd govapp_first API 0 $HALF_0"
		"ga50half.base base govapp GA 50 $HALF_50"
		"ga50half.smisd smisd govapp_first API 50 $HALF_50"
	)
	start_smisd
	prepare_govapp_calls
	stop_smisd
fi

started=$(date +%s)
for rep in $(seq 1 "$REPS"); do
	echo "repetition $rep/$REPS (rps p50 p99 status-errors)" >&2
	for s in "${scenarios[@]}"; do
		read -r name kind target urlvar lat rate <<< "$s"
		[ "$rate" = - ] && rate=""
		# With BENCH_COMPARE, the other build's run goes right before this
		# build's in odd repetitions and right after it in even ones.
		if [ -n "$old_build" ] && [ "$kind" = smisd ] && [ $((rep % 2)) = 1 ]; then
			run_case "$rep" "${name%.smisd}.old" old "$target" "${!urlvar}" "$lat" "$rate"
		fi
		run_case "$rep" "$name" "$kind" "$target" "${!urlvar}" "$lat" "$rate"
		if [ -n "$old_build" ] && [ "$kind" = smisd ] && [ $((rep % 2)) = 0 ]; then
			run_case "$rep" "${name%.smisd}.old" old "$target" "${!urlvar}" "$lat" "$rate"
		fi
	done
done
elapsed=$(( $(date +%s) - started ))

python3 "$bench/report.py" --raw "$raw" --out "$OUT" --cmdline "$cmdline" \
	--duration "$DURATION" --reps "$REPS" --conns "$CONNS" --threads "$THREADS" \
	--target0 $TARGET_0 --target50 $TARGET_50 --half0 $HALF_0 --half50 $HALF_50 \
	--elapsed "$elapsed" --govapp $have_govapp --smisd-log "$work/smisd.log" \
	--clk-tck "$(getconf CLK_TCK)" --idle-busy "$idle_busy" --build-src "$build_src" \
	--x25519-ops "$x25519_ops" --compare-build-src "$old_build_src" \
	--allocator "$("$build/smisd" --version | sed -n 's/^allocator: //p')" \
	--compare-allocator "$([ -z "$old_build" ] || "$old_build/smisd" --version | sed -n 's/^allocator: //p')"
echo "wrote $OUT" >&2
