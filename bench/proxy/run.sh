#!/usr/bin/env bash
# The L7 proxy benchmarks, all in one run so that the ratios hold.
#
#   sudo bench/proxy/run.sh            # prints the markdown tables on stdout
#
# Targets, each in front of the same Go origin (bench/proxy/origin: HTTP/1.1
# and h2c on :28080, gRPC on :28051):
#   direct       the origin itself (loopback)
#   haproxy      Debian's haproxy, one thread, ten regex ACLs (haproxy.cfg)
#   portcullis   `portcullis proxy` standalone, GOMAXPROCS=1, the same ten
#                rules as a TrafficPolicy (policy.yaml)
#   pod-l4       pod to pod through the BPF datapath, an L4 allow only
#   pod-l7       pod to pod redirected by the BPF datapath (bpf_sk_assign) to
#                the agent's proxy, same policy (bench/proxy/podbench)
# The proxy under test gets CPU $PROXY_CPU alone; the load generator and the
# origin share CPU $LOAD_CPU. Every request matches the last of the ten rules.
#
# Environment: DURATION (wrk/h2load/gRPC, default 10s), RATE (fixed-rate
# test, default 1000), RATE_DURATION (default 10s), IDLE_CONNS (default
# 10000), PODS=0 skips the pod (BPF) targets, PROFILE=0 skips the perf
# profile of the standalone proxy, LOCK_TIMEOUT (how long the pod targets
# wait for the e2e node lock, default 10m), PORTCULLIS_BIN (default: the one built
# here), OUT (raw outputs; default a
# fresh directory under /tmp, kept).
set -euo pipefail

DURATION=${DURATION:-10s}
RATE=${RATE:-1000}
RATE_DURATION=${RATE_DURATION:-10s}
IDLE_CONNS=${IDLE_CONNS:-10000}
PODS=${PODS:-1}
PROFILE=${PROFILE:-1}
LOCK_TIMEOUT=${LOCK_TIMEOUT:-10m}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PATH_OK=/api/v2/items/abc-123/details   # matches only the 10th rule
PATH_DENIED=/api/v2/items/abc-123/secret # matches none: 403

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Measurements. Each appends "TARGET KIND key=value..." to $RES. They take an
# optional command prefix in $NSEXEC (ip netns exec NS) for the pod targets.
NSEXEC=()

# to_us converts wrk's "123.45us", "1.23ms", "1.2s" into microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000; printf "%.0f", n * m }'; }

record() { echo "$*" >>"$RES"; }
# problem TARGET TEXT: a failure that does not stop the run; listed under
# the tables, and its target's figure is marked.
problem() {
	log "PROBLEM $1: $2"
	echo "$1 problem $2" >>"$RES"
}

# wrk_run TARGET URL: HTTP/1.1 keep-alive, one thread, 16 connections.
wrk_run() {
	local t=$1 url=$2 out="$OUT/wrk-$1.txt"
	log "wrk $t $url"
	"${NSEXEC[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c16 -d"$DURATION" --latency "$url" >"$out"
	if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then problem "$t" "wrk: $(grep -h -e 'Non-2xx' -e 'Socket errors' "$out" | tr -s ' ' | tr '\n' ' ')($out)"; fi
	record "$t wrk rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")" \
		"p50_us=$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")" \
		"p99_us=$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")"
}

# rate_run TARGET ADDR: open loop at $RATE requests/s.
rate_run() {
	local t=$1 addr=$2 out="$OUT/rate-$1.txt"
	log "fixed rate $RATE/s $t $addr"
	"${NSEXEC[@]}" taskset -c "$LOAD_CPU" "$BIN/loadgen" rate -addr "$addr" -path "$PATH_OK" -rps "$RATE" -d "$RATE_DURATION" -c 16 >"$out" 2>"$out.err" ||
		problem "$t" "loadgen rate: $(cat "$out.err")"
	[ ! -s "$out" ] || record "$t rate $(cat "$out")"
}

# h2_run TARGET URL: h2c (prior knowledge), 16 connections, 10 streams each.
h2_run() {
	local t=$1 url=$2 out="$OUT/h2load-$1.txt"
	log "h2load $t $url"
	"${NSEXEC[@]}" taskset -c "$LOAD_CPU" h2load -t1 -c16 -m10 -D "${DURATION%s}" "$url" >"$out" 2>&1 || problem "$t" "h2load failed ($out)"
	local failed
	failed=$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")
	[ "$failed" = 0 ] || problem "$t" "h2load: $failed failed requests ($out)"
	grep -q ' 0 4xx, 0 5xx' "$out" || problem "$t" "h2load: error statuses ($out)"
	record "$t h2 rps=$(awk '/^finished in/ {printf "%.0f", $4}' "$out")"
}

# grpc_run TARGET ADDR: 16 concurrent unary calls over one connection.
grpc_run() {
	local t=$1 addr=$2 out="$OUT/grpc-$1.txt"
	log "gRPC $t $addr"
	"${NSEXEC[@]}" taskset -c "$LOAD_CPU" "$BIN/loadgen" grpc -addr "$addr" -c 16 -d "$DURATION" >"$out" 2>"$out.err" ||
		problem "$t" "loadgen grpc: $(cat "$out.err")"
	[ ! -s "$out" ] || record "$t grpc $(cat "$out")"
}

# idle_run TARGET ADDR PID: RSS of PID per idle keep-alive connection.
idle_run() {
	local t=$1 addr=$2 pid=$3 out="$OUT/idle-$1.txt"
	log "$IDLE_CONNS idle connections $t $addr (pid $pid)"
	"${NSEXEC[@]}" taskset -c "$LOAD_CPU" "$BIN/loadgen" idle -addr "$addr" -path "$PATH_OK" -n "$IDLE_CONNS" -pid "$pid" >"$out" 2>"$out.err" ||
		problem "$t" "loadgen idle: $(cat "$out.err")"
	[ ! -s "$out" ] || record "$t idle $(sed 's/ failed=.*//' "$out")"
	if grep -q ' failed=' "$out"; then
		problem "$t" "$(sed 's/.* failed=\([0-9]*\).*/\1/' "$out") of $IDLE_CONNS connections failed (the first: $(sed 's/.* first=//' "$out")); measured with the $(sed 's/^conns=\([0-9]*\).*/\1/' "$out") held"
	fi
}

# check TARGET ADDR PATH STATUS: the policy is in force (allowed 200,
# denied 403); a problem otherwise.
check() {
	local err
	if ! err=$("${NSEXEC[@]}" "$BIN/loadgen" check -addr "$2" -path "$3" -want "$4" 2>&1); then
		problem "$1" "GET $3 did not answer $4: $err; target skipped"
		return 1
	fi
}

wait_port() {
	local i
	for i in $(seq 100); do
		if "${NSEXEC[@]}" bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "nothing listens on $1"
	return 1
}

# ---------------------------------------------------------------------------
# Pod phases: bench/proxy/podbench runs this script again inside its setup
# (cluster, pods, agent with the proxy), once per policy.
if [ "${1:-}" = "--pod-phase" ]; then
	: "${OUT:?}" "${RES:?}" "${BIN:?}" "${BENCH_CLIENT_NETNS:?}" "${BENCH_ORIGIN_IP:?}" "${BENCH_PROXY_PID:?}"
	NSEXEC=(ip netns exec "$BENCH_CLIENT_NETNS")
	t=$2
	o=$BENCH_ORIGIN_IP
	if [ "$t" = pod-l7 ]; then check "$t" "$o:28080" "$PATH_DENIED" 403 || exit 0; fi
	check "$t" "$o:28080" "$PATH_OK" 200 || exit 0
	wrk_run "$t" "http://$o:28080$PATH_OK"
	rate_run "$t" "$o:28080"
	h2_run "$t" "http://$o:28080$PATH_OK"
	grpc_run "$t" "$o:28051"
	if [ "$t" = pod-l7 ]; then idle_run "$t" "$o:28080" "$BENCH_PROXY_PID"; fi
	exit 0
fi

# ---------------------------------------------------------------------------
# The tables, from $RES and $OUT/meta.env.
tables() {
	get() { awk -v t="$1" -v k="$2" -v f="$3" '$1 == t && $2 == k { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$RES"; }
	ratio() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; else echo "–"; fi; }
	ms() { if [ -n "$1" ]; then awk -v u="$1" 'BEGIN { printf "%.3f ms", u / 1000 }'; else echo "–"; fi; }
	added() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f ms", (a - b) / 1000 }'; else echo "–"; fi; }
	num() { if [ -n "$1" ]; then echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; else echo "–"; fi; }
	name() {
		case $1 in
		direct) echo "direct (loopback)" ;;
		haproxy) echo "haproxy $(haproxy -v | awk 'NR == 1 {print $3}'), 1 thread, 10 regex ACLs" ;;
		portcullis) echo "portcullis proxy (standalone), GOMAXPROCS=1, 10 rules" ;;
		pod-l4) echo "pod → pod, BPF datapath, L4 allow (no proxy)" ;;
		pod-l7) echo "pod → pod, BPF redirect → agent's proxy, 10 rules" ;;
		esac
	}
	base() { case $1 in pod-*) echo pod-l4 ;; *) echo direct ;; esac; }
	TARGETS=(direct haproxy portcullis pod-l4 pod-l7)

	{
		echo "- Run of $START_TIME, $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)."
		echo "- Tools: wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), h2load $(h2load --version 2>&1 | awk 'NR == 1 {print $2}'), haproxy $(haproxy -v | awk 'NR == 1 {print $3}'), $(go version | awk '{print $3}')."
		echo "- Load average at start: $LOAD_START; at end: $LOAD_END."
		echo "- Proxy on CPU $PROXY_CPU alone; load generator and origin on CPU $LOAD_CPU. Raw outputs: $OUT."
		if awk -v a="${LOAD_START%% *}" 'BEGIN { exit !(a > 0.5) }'; then
			echo
			echo "**The machine was not quiet at the start (load average above 0.5): the figures include other work; ratios between targets are only rough.**"
		fi
		echo
		echo "HTTP/1.1 keep-alive, \`wrk -t1 -c16 -d$DURATION --latency\`, GET $PATH_OK (allowed by the 10th rule):"
		echo
		echo "| target | requests/s | × direct | × haproxy | p50 | p99 |"
		echo "|---|---|---|---|---|---|"
		for t in "${TARGETS[@]}"; do
			r=$(get "$t" wrk rps)
			[ -n "$r" ] || continue
			# Pod targets take another network path (veths, the BPF programs):
			# compared with their own base only.
			hr="–"
			case $t in pod-*) ;; *) hr=$(ratio "$r" "$(get haproxy wrk rps)") ;; esac
			echo "| $(name "$t") | $(num "$r") | $(ratio "$r" "$(get "$(base "$t")" wrk rps)") | $hr | $(ms "$(get "$t" wrk p50_us)") | $(ms "$(get "$t" wrk p99_us)") |"
		done
		echo
		echo "Fixed rate, $RATE requests/s for $RATE_DURATION over 16 keep-alive connections (\`loadgen rate\`, open loop), latency from the write of the request to the end of the response:"
		echo
		echo "| target | p50 | p99 | p99.9 | added p50 | added p99 |"
		echo "|---|---|---|---|---|---|"
		for t in "${TARGETS[@]}"; do
			p50=$(get "$t" rate p50_us)
			[ -n "$p50" ] || continue
			b=$(base "$t")
			if [ "$t" = "$b" ]; then a50="(base)" a99="(base)"; else
				a50=$(added "$p50" "$(get "$b" rate p50_us)")
				a99=$(added "$(get "$t" rate p99_us)" "$(get "$b" rate p99_us)")
			fi
			echo "| $(name "$t") | $(ms "$p50") | $(ms "$(get "$t" rate p99_us)") | $(ms "$(get "$t" rate p999_us)") | $a50 | $a99 |"
		done
		echo
		echo "h2c (prior knowledge), \`h2load -t1 -c16 -m10 -D ${DURATION%s}\`, and gRPC unary (bench.Echo/Echo, 16 concurrent calls on one connection, \`loadgen grpc\`; the 10th gRPC rule allows it):"
		echo
		echo "| target | h2c requests/s | × direct | gRPC calls/s | × direct | gRPC p50 | gRPC p99 |"
		echo "|---|---|---|---|---|---|---|"
		for t in "${TARGETS[@]}"; do
			h=$(get "$t" h2 rps)
			g=$(get "$t" grpc rps)
			[ -n "$h$g" ] || continue
			b=$(base "$t")
			echo "| $(name "$t") | $(num "$h") | $(ratio "$h" "$(get "$b" h2 rps)") | $(num "$g") | $(ratio "$g" "$(get "$b" grpc rps)") | $(ms "$(get "$t" grpc p50_us)") | $(ms "$(get "$t" grpc p99_us)") |"
		done
		echo
		echo "Memory, up to $IDLE_CONNS idle HTTP/1.1 keep-alive connections (one request each, so that the upstream side is open too), growth of the proxy process's VmRSS:"
		echo
		echo "| target | connections | RSS before | RSS with the connections | per connection | per 10,000 connections |"
		echo "|---|---|---|---|---|---|"
		for t in "${TARGETS[@]}"; do
			k=$(get "$t" idle kib_per_conn)
			[ -n "$k" ] || continue
			echo "| $(name "$t") | $(num "$(get "$t" idle conns)") | $(num "$(get "$t" idle rss_before_kib)") KiB | $(num "$(get "$t" idle rss_after_kib)") KiB | $k KiB | $(awk -v k="$k" 'BEGIN { printf "%.1f MiB", k * 10000 / 1024 }') |"
		done
		if grep -q '^[^ ]* problem ' "$RES"; then
			echo
			echo "Problems in this run (the figures of these targets are incomplete or include failures):"
			echo
			awk '$2 == "problem" { t = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); print "- " t ": " $0 }' "$RES"
		fi
		if [ -s "$OUT/profile-portcullis.txt" ]; then
			echo
			echo "Where the standalone proxy's CPU goes under the same wrk load (\`perf record -F 999 -g -p PID\`): self time by category, the top 20 symbols by self time, then inclusive time (children, self) of the proxy's functions:"
			echo
			echo '```'
			cat "$OUT/profile-portcullis.txt"
			echo '```'
		fi
	}
}

# run.sh --report DIR prints the tables of an earlier run again.
if [ "${1:-}" = "--report" ]; then
	OUT=${2:?usage: run.sh --report DIR}
	RES=$OUT/results.txt
	# shellcheck disable=SC1091
	. "$OUT/meta.env"
	tables
	exit 0
fi

# ---------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (taskset, ulimit, the BPF datapath)"
[ "$(nproc)" -ge 2 ] || die "needs two CPUs"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
	log "apt-get install ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
	# Debian's package enables the service; it must not hold the ports.
	if command -v systemctl >/dev/null && systemctl is-active -q haproxy 2>/dev/null; then systemctl stop haproxy; fi
fi

OUT=${OUT:-$(mktemp -d /tmp/portcullis-bench-proxy-XXXXXX)}
mkdir -p "$OUT"
RES=$OUT/results.txt
: >"$RES"
BIN=$OUT/bin
export OUT RES BIN DURATION RATE RATE_DURATION PROXY_CPU LOAD_CPU
# A proxy holds two descriptors per idle connection (client and upstream);
# raising the hard limit needs CAP_SYS_RESOURCE, which a container may lack.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ $((IDLE_CONNS * 2 + 200)) -gt "$(ulimit -n)" ]; then
	IDLE_CONNS=$((($(ulimit -n) - 200) / 2 / 1000 * 1000))
	log "open files limited to $(ulimit -n): $IDLE_CONNS idle connections"
fi
export IDLE_CONNS
# The proxies under test must accept the idle test's connections and more.
MAX_CONNS=$((IDLE_CONNS + 1000))

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CPU CMD...: start a background process pinned to CPU; its pid
# is left in $LAST.
start() {
	local name=$1 cpu=$2
	shift 2
	taskset -c "$cpu" "$@" >"$OUT/$name.log" 2>&1 &
	LAST=$!
	PIDS+=("$LAST")
}
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

log "building into $BIN"
pkgs=(./cmd/portcullis ./bench/proxy/origin ./bench/proxy/loadgen)
[ "$PODS" = 0 ] || pkgs+=(./bench/proxy/podbench)
(cd "$ROOT" && go build -o "$BIN/" "${pkgs[@]}")

LOAD_START=$(cat /proc/loadavg)
START_TIME=$(date -u +%Y-%m-%dT%H:%MZ)
log "load average at start: $LOAD_START"

start origin "$LOAD_CPU" env GOMAXPROCS=1 "$BIN/origin" -http 127.0.0.1:28080 -grpc 127.0.0.1:28051
ORIGIN_PID=$LAST
wait_port 127.0.0.1:28080 || die "origin did not start ($OUT/origin.log)"
wait_port 127.0.0.1:28051 || die "origin did not start ($OUT/origin.log)"

start_haproxy() {
	start haproxy "$PROXY_CPU" haproxy -db -f "$HERE/haproxy.cfg"
	HAPROXY_PID=$LAST
	wait_port 127.0.0.1:28180 || die "haproxy did not start ($OUT/haproxy.log)"
	wait_port 127.0.0.1:28181 || die "haproxy did not start ($OUT/haproxy.log)"
	wait_port 127.0.0.1:28151 || die "haproxy did not start ($OUT/haproxy.log)"
}

# `portcullis proxy` standalone: the same code path as the agent's proxy,
# listening on a plain (non-transparent) socket, one upstream per process.
# It writes one access record per request to stdout (formatted, one
# write(2) each): that goes to /dev/null, so that the run measures the
# proxy and not the disk; haproxy logs nothing.
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$BIN/portcullis}
PC_ARGS=(--policy "$HERE/policy.yaml" --src app=bench-client --dst app=bench-origin --max-connections "$MAX_CONNS")
HAVE_PORTCULLIS=0
if "$PORTCULLIS_BIN" proxy --help >/dev/null 2>&1; then HAVE_PORTCULLIS=1; else log "portcullis proxy: not built, skipped"; fi
start_portcullis() {
	start portcullis "$PROXY_CPU" sh -c 'exec "$@" >/dev/null' sh env GOMAXPROCS=1 "$PORTCULLIS_BIN" proxy "${PC_ARGS[@]}" --listen 127.0.0.1:28280 --upstream 127.0.0.1:28080
	PC_PID=$LAST
	start portcullis-grpc "$PROXY_CPU" sh -c 'exec "$@" >/dev/null' sh env GOMAXPROCS=1 "$PORTCULLIS_BIN" proxy "${PC_ARGS[@]}" --listen 127.0.0.1:28251 --upstream 127.0.0.1:28051
	PC_GRPC_PID=$LAST
	wait_port 127.0.0.1:28280 && wait_port 127.0.0.1:28251 ||
		{ problem portcullis "portcullis proxy did not start ($OUT/portcullis.log)"; return 1; }
}

start_haproxy
check haproxy 127.0.0.1:28180 "$PATH_OK" 200 || die "haproxy does not work"
check haproxy 127.0.0.1:28180 "$PATH_DENIED" 403 || die "haproxy does not deny"
if [ $HAVE_PORTCULLIS = 1 ]; then
	start_portcullis &&
	check portcullis 127.0.0.1:28280 "$PATH_OK" 200 && check portcullis 127.0.0.1:28280 "$PATH_DENIED" 403 || HAVE_PORTCULLIS=0
fi

wrk_run direct "http://127.0.0.1:28080$PATH_OK"
wrk_run haproxy "http://127.0.0.1:28180$PATH_OK"
[ $HAVE_PORTCULLIS = 0 ] || wrk_run portcullis "http://127.0.0.1:28280$PATH_OK"

rate_run direct 127.0.0.1:28080
rate_run haproxy 127.0.0.1:28180
[ $HAVE_PORTCULLIS = 0 ] || rate_run portcullis 127.0.0.1:28280

h2_run direct "http://127.0.0.1:28080$PATH_OK"
h2_run haproxy "http://127.0.0.1:28181$PATH_OK"
[ $HAVE_PORTCULLIS = 0 ] || h2_run portcullis "http://127.0.0.1:28280$PATH_OK"

grpc_run direct 127.0.0.1:28051
grpc_run haproxy 127.0.0.1:28151
[ $HAVE_PORTCULLIS = 0 ] || grpc_run portcullis 127.0.0.1:28251

# Where the standalone proxy's CPU goes under the same wrk load (after the
# measured runs: perf's sampling costs a little).
if [ "$PROFILE" = 1 ] && [ $HAVE_PORTCULLIS = 1 ] && command -v perf >/dev/null; then
	log "perf profile of portcullis proxy under wrk"
	taskset -c "$LOAD_CPU" wrk -t1 -c16 -d"$DURATION" "http://127.0.0.1:28280$PATH_OK" >"$OUT/wrk-profile.txt" &
	wpid=$!
	sleep 1
	perf record -q -F 999 -g -p "$PC_PID" -o "$OUT/perf.data" -- sleep $((${DURATION%s} - 2)) >/dev/null 2>&1 || log "perf record failed"
	wait "$wpid" || true
	perf report -i "$OUT/perf.data" -g none --no-children --sort dso,symbol --stdio 2>/dev/null >"$OUT/perf-report.txt" || true
	awk -f "$HERE/perf-categories.awk" "$OUT/perf-report.txt" | sort -rn >"$OUT/profile-portcullis.txt"
	echo >>"$OUT/profile-portcullis.txt"
	grep -E '^ +[0-9.]+%' "$OUT/perf-report.txt" | sed -e 's/  *- *- *$//' | head -20 >>"$OUT/profile-portcullis.txt" || true
	echo >>"$OUT/profile-portcullis.txt"
	# Inclusive time (children) of the proxy's own functions and the
	# libraries it calls, to tell parsing, policy, forwarding and logging apart.
	perf report -i "$OUT/perf.data" -g none --children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' |
		grep -E 'portcullis\.dev|main\.|regexp\.\(|prometheus\.|http2\.' | sed -e 's/  *- *- *$//' | head -30 >>"$OUT/profile-portcullis.txt" || true
fi

# Memory: fresh processes, so that the benchmarks' heap does not hide it.
stop "$HAPROXY_PID"
start_haproxy
idle_run haproxy 127.0.0.1:28180 "$HAPROXY_PID"
stop "$HAPROXY_PID"
if [ $HAVE_PORTCULLIS = 1 ]; then
	stop "$PC_PID"
	stop "$PC_GRPC_PID"
	start_portcullis && idle_run portcullis 127.0.0.1:28280 "$PC_PID"
	stop "$PC_PID"
	stop "$PC_GRPC_PID"
fi
stop "$ORIGIN_PID"

if [ "$PODS" = 1 ]; then
	log "pod targets (local cluster, BPF datapath, agent with the proxy)"
	"$BIN/podbench" -policy "$HERE/policy.yaml" -proxy-max-connections "$MAX_CONNS" -origin "$BIN/origin" -proxy-cpu "$PROXY_CPU" -load-cpu "$LOAD_CPU" -lock-timeout "$LOCK_TIMEOUT" \
		-- "$HERE/run.sh" --pod-phase >"$OUT/podbench.log" 2>&1 || {
		grep -v '^{' "$OUT/podbench.log" | tail -5 >&2
		problem pod "podbench failed: $(grep -v '^{' "$OUT/podbench.log" | tail -1) ($OUT/podbench.log)"
	}
fi

LOAD_END=$(cat /proc/loadavg)
log "load average at end: $LOAD_END"

cat >"$OUT/meta.env" <<META
START_TIME='$START_TIME'
LOAD_START='$LOAD_START'
LOAD_END='$LOAD_END'
DURATION='$DURATION'
RATE='$RATE'
RATE_DURATION='$RATE_DURATION'
IDLE_CONNS='$IDLE_CONNS'
PROXY_CPU='$PROXY_CPU'
LOAD_CPU='$LOAD_CPU'
META
tables
