#!/usr/bin/env bash
# `make bench`: herald against a Node `ws` gateway, a Socket.IO 4 gateway and
# nginx+nchan, on four workloads (bench/README.md says what each one measures); and,
# on the fanout workload only, three herald nodes sharing one redis-server against
# one herald node.
# Each server is started fresh for every measurement, pinned to one core (a
# cluster's nodes and its redis-server all on that same core); the load generator
# runs pinned to another. Each measurement is repeated BENCH_RUNS times
# and the median is reported, as a table on stdout and in build/bench/results.md;
# every raw result line is kept in build/bench/results.jsonl.
#
# Environment (all optional):
#   BENCH_RUNS=3          repetitions (median taken)
#   BENCH_SCALE=1         multiplies every connection and event count (0.1: smoke run)
#   BENCH_SERVERS="herald herald-sio herald-cluster ws socketio nchan"
#                         (herald-cluster measures the fanout workload only)
#   BENCH_WORKLOADS="idle fanout targeted latency"
#   BENCH_IDLE_CONNS, BENCH_FANOUT_SUBS, BENCH_FANOUT_EVENTS, BENCH_TARGETED_SUBS,
#   BENCH_TARGETED_EVENTS, BENCH_LATENCY_SUBS, BENCH_LATENCY_RATE, BENCH_LATENCY_SECONDS
#   BENCH_TIMEOUT=300     bound on one measurement, seconds
#   BENCH_PORT=18700      first port tried (each server start takes the next free one)
#   BENCH_SERVER_CPU=0 BENCH_LOADGEN_CPU=1   cores for taskset
#   BENCH_HERALD_WORKERS=1   BENCH_HERALD_ARGS="--log-level warn"   HERALD_BIN=build/release/herald
#   BENCH_CLUSTER_NODES=3  herald nodes of herald-cluster (one redis-server with them)
#   BENCH_LOADGEN_ARGS=""  extra loadgen flags for every measurement
# Exit status: 1 when a herald measurement failed (lost events, errors, no start);
# peers' failures are reported in the table only.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

OUT=build/bench
LOADGEN=$OUT/loadgen
HERALD=${HERALD_BIN:-build/release/herald}
RUNS=${BENCH_RUNS:-3}
SCALE=${BENCH_SCALE:-1}
SERVERS=${BENCH_SERVERS:-herald herald-sio herald-cluster ws socketio nchan}
WORKLOADS=${BENCH_WORKLOADS:-idle fanout targeted latency}
TIMEOUT=${BENCH_TIMEOUT:-300}
PORT=${BENCH_PORT:-18700}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
HERALD_WORKERS=${BENCH_HERALD_WORKERS:-1}
HERALD_ARGS=${BENCH_HERALD_ARGS:---log-level warn}
LOADGEN_ARGS=${BENCH_LOADGEN_ARGS:-}
NCHAN_MODULE=${BENCH_NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
CLUSTER_NODES=${BENCH_CLUSTER_NODES:-3}
# herald-cluster's publishers: one keep-alive connection per node, together about as
# many requests in flight as the loadgen's default 4 connections x 32 for one server.
CLUSTER_LOADGEN_ARGS="--pub-conns $CLUSTER_NODES --pipeline $(( (4 * 32 + CLUSTER_NODES - 1) / CLUSTER_NODES ))"

# scaled BASE MIN: BASE * BENCH_SCALE, rounded, at least MIN.
scaled() { awk -v b="$1" -v m="$2" -v s="$SCALE" 'BEGIN { v = int(b * s + 0.5); print (v < m ? m : v) }'; }
IDLE_CONNS=${BENCH_IDLE_CONNS:-$(scaled 8000 10)}
FANOUT_SUBS=${BENCH_FANOUT_SUBS:-$(scaled 5000 10)}
FANOUT_EVENTS=${BENCH_FANOUT_EVENTS:-$(scaled 2000 10)}
TARGETED_SUBS=${BENCH_TARGETED_SUBS:-$(scaled 8000 10)}
TARGETED_EVENTS=${BENCH_TARGETED_EVENTS:-$(scaled 50000 10)}
LATENCY_SUBS=${BENCH_LATENCY_SUBS:-$(scaled 5000 10)}
LATENCY_RATE=${BENCH_LATENCY_RATE:-200}
LATENCY_SECONDS=${BENCH_LATENCY_SECONDS:-$(scaled 10 2)}

die() { echo "bench: $*" >&2; exit 2; }
[ -x "$LOADGEN" ] || die "$LOADGEN is missing: run 'make build/bench/loadgen' (or 'make bench')"
command -v python3 >/dev/null || die "python3 is needed to summarize the results"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
if ! [[ "$CLUSTER_NODES" =~ ^[1-9][0-9]?$ ]] || [ "$CLUSTER_NODES" -gt 15 ]; then
  die "BENCH_CLUSTER_NODES must be 1..15"   # loadgen sums at most 16 processes: nodes + redis
fi

mkdir -p "$OUT/logs"
RAW=$OUT/results.jsonl
NOTES=$OUT/notes.txt
: >"$RAW"
: >"$NOTES"
rm -f "$OUT"/logs/*.log
note() { echo "$*" >>"$NOTES"; echo "bench: $*" >&2; }

TMP=$(mktemp -d /tmp/herald-bench.XXXXXX) || die "mktemp failed"
SRV_PIDS=()      # what stop_server stops: the server, or a cluster's herald nodes
REDIS_PID=""     # a cluster's redis-server, stopped after its nodes
MEASURE_PIDS=""  # whose RSS and CPU time loadgen reads (summed), comma-separated
SRV_PORTS=""     # where loadgen connects, comma-separated (a cluster: every node)

# ---- descriptors: every subscriber is a socket on both sides ----
most=$IDLE_CONNS
for n in "$FANOUT_SUBS" "$TARGETED_SUBS" "$LATENCY_SUBS"; do [ "$n" -gt "$most" ] && most=$n; done
need=$((most + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NOFILE" -ge "$need" ] || note "ulimit -n is $NOFILE, below the $need descriptors the largest workload needs; expect connection failures"

# ---- pinning: one core for the server, another for the load generator ----
SRV_PIN=()
LG_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SRV_PIN=(taskset -c "$SERVER_CPU")
  LG_PIN=(taskset -c "$LOADGEN_CPU")
  PINNING="server on CPU $SERVER_CPU (a cluster's nodes and redis-server too), load generator on CPU $LOADGEN_CPU (taskset)"
else
  PINNING="not pinned (taskset missing or fewer than 2 CPUs): server and load generator share the CPUs"
  note "$PINNING"
fi

# ---- which servers can run here ----
declare -A UNAVAILABLE=()
declare -A HERALD_FAILED=()
node_ok() { command -v node >/dev/null && node -e "require('$1')" >/dev/null 2>&1; }
# One copy of the binary for the whole run, so a rebuild meanwhile cannot mix versions.
if [ -x "$HERALD" ]; then
  cp "$HERALD" "$TMP/herald" && HERALD=$TMP/herald
fi
for s in $SERVERS; do
  case $s in
    herald|herald-sio)
      if [ ! -x "$HERALD" ]; then UNAVAILABLE[$s]="not built ($HERALD missing)"; fi ;;
    herald-cluster)
      if [ ! -x "$HERALD" ]; then UNAVAILABLE[$s]="not built ($HERALD missing)"
      elif ! command -v redis-server >/dev/null; then UNAVAILABLE[$s]="redis-server not installed (scripts/deps.sh bench)"
      fi ;;
    ws) node_ok ws || UNAVAILABLE[$s]="node or npm ws missing (scripts/deps.sh bench)" ;;
    socketio) node_ok socket.io || UNAVAILABLE[$s]="node or npm socket.io missing (scripts/deps.sh bench)" ;;
    nchan)
      if ! command -v nginx >/dev/null; then UNAVAILABLE[$s]="nginx not installed (nginx-light)"
      elif [ ! -f "$NCHAN_MODULE" ]; then UNAVAILABLE[$s]="nchan module missing ($NCHAN_MODULE; libnginx-mod-nchan)"
      fi ;;
    *) die "unknown server '$s' in BENCH_SERVERS (herald herald-sio herald-cluster ws socketio nchan)" ;;
  esac
  [ -n "${UNAVAILABLE[$s]:-}" ] && note "$s skipped: ${UNAVAILABLE[$s]}"
done

proto_of() {
  case $1 in herald|herald-cluster|ws) echo native ;; herald-sio|socketio) echo socketio ;; nchan) echo nchan ;; esac
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port() {
  local i
  for ((i = 0; i < 200; i++)); do
    PORT=$((PORT + 1))
    [ "$PORT" -gt 60000 ] && PORT=18700
    port_free "$PORT" && return 0
  done
  return 1
}

wait_health() { # port pid
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -sf --max-time 1 "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# Answers PING: the redis-server is listening.
wait_redis() { # port pid
  local i reply
  for ((i = 0; i < 100; i++)); do
    kill -0 "$2" 2>/dev/null || return 1
    reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'PING\r\n' >&3 && timeout 1 head -c 5 <&3) 2>/dev/null)
    [ "$reply" = "+PONG" ] && return 0
    sleep 0.1
  done
  return 1
}

# start_cluster PORT LOG: a redis-server on PORT, persistence off (the bench keeps
# nothing), then CLUSTER_NODES herald nodes on the next free ports sharing it, each
# with its own data directory, its own log (LOG with -n1, -n2, ... before .log) and
# the default node id (host name and port). Every process is pinned to the server
# core, so the cluster has the same hardware as one node. Sets REDIS_PID, SRV_PIDS,
# SRV_PORTS and MEASURE_PIDS (the nodes and redis).
start_cluster() {
  local rport=$1 log=$2 dir i port pid ports=()
  dir=$TMP/redis-$rport; mkdir -p "$dir"
  "${SRV_PIN[@]}" redis-server --save '' --appendonly no --port "$rport" --bind 127.0.0.1 \
    --dir "$dir" >"$log" 2>&1 &
  REDIS_PID=$!
  wait_redis "$rport" "$REDIS_PID" || return 1
  SRV_PORTS=""
  MEASURE_PIDS=""
  for ((i = 1; i <= CLUSTER_NODES; i++)); do
    next_port || return 1
    port=$PORT
    dir=$TMP/herald-$port; mkdir -p "$dir"
    # shellcheck disable=SC2086 # HERALD_ARGS is a list of flags
    "${SRV_PIN[@]}" "$HERALD" serve --listen "127.0.0.1:$port" --workers "$HERALD_WORKERS" \
      --data-dir "$dir" --redis "redis://127.0.0.1:$rport" $HERALD_ARGS \
      >"${log%.log}-n$i.log" 2>&1 &
    pid=$!
    SRV_PIDS+=("$pid")
    ports+=("$port")
    SRV_PORTS+="${SRV_PORTS:+,}$port"
    MEASURE_PIDS+="${MEASURE_PIDS:+,}$pid"
  done
  MEASURE_PIDS+=",$REDIS_PID"
  # Started together, then waited for: /health answers 200 once Redis is reachable.
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    wait_health "${ports[$i]}" "${SRV_PIDS[$i]}" || return 1
  done
  return 0
}

# start_server NAME PORT LOG: sets SRV_PIDS (what we stop), SRV_PORTS, and
# MEASURE_PIDS (what we read RSS and CPU time of: the nginx worker, the process
# itself otherwise).
start_server() {
  local name=$1 port=$2 log=$3 dir
  SRV_PORTS=$port
  case $name in
    herald-cluster)
      start_cluster "$port" "$log"
      return ;;
    herald|herald-sio)
      dir=$TMP/herald-$port; mkdir -p "$dir"
      # shellcheck disable=SC2086 # HERALD_ARGS is a list of flags
      "${SRV_PIN[@]}" "$HERALD" serve --listen "127.0.0.1:$port" --workers "$HERALD_WORKERS" \
        --data-dir "$dir" $HERALD_ARGS >"$log" 2>&1 &
      ;;
    ws) "${SRV_PIN[@]}" node bench/peers/ws-server.js "$port" >"$log" 2>&1 & ;;
    socketio) "${SRV_PIN[@]}" node bench/peers/socketio-server.js "$port" >"$log" 2>&1 & ;;
    nchan)
      dir=$TMP/nchan-$port; mkdir -p "$dir"
      sed -e "s|@PREFIX@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@MODULE@|$NCHAN_MODULE|g" \
          -e "s|@NOFILE@|$NOFILE|g" bench/nchan.conf.template >"$dir/nginx.conf"
      "${SRV_PIN[@]}" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$log" 2>&1 &
      ;;
  esac
  SRV_PIDS=($!)
  MEASURE_PIDS=$!
  if ! wait_health "$port" "${SRV_PIDS[0]}"; then
    [ -n "${dir:-}" ] && [ -f "$dir/error.log" ] && cat "$dir/error.log" >>"$log"
    return 1
  fi
  if [ "$name" = nchan ]; then
    local kids
    kids=$(cat "/proc/${SRV_PIDS[0]}/task/${SRV_PIDS[0]}/children" 2>/dev/null)
    MEASURE_PIDS=${kids%% *}
    [ -n "$MEASURE_PIDS" ] || MEASURE_PIDS=${SRV_PIDS[0]}
  fi
  return 0
}

# stop_pids PID...: SIGTERM to each, up to 5 s for all of them to exit, then SIGKILL.
stop_pids() {
  local i p left
  kill -TERM "$@" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    left=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do
    if kill -0 "$p" 2>/dev/null; then
      echo "bench: server $p did not stop within 5 s; killing it" >&2
      kill -KILL "$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
  done
}

stop_server() {
  local p
  # A cluster's nodes first, so they do not spend their exit reconnecting to Redis.
  [ ${#SRV_PIDS[@]} -gt 0 ] && stop_pids "${SRV_PIDS[@]}"
  [ -n "$REDIS_PID" ] && stop_pids "$REDIS_PID"
  # An nginx worker whose master was killed would linger: it is ours, stop it too.
  if [ ${#SRV_PIDS[@]} -gt 0 ] && [ "$MEASURE_PIDS" != "${SRV_PIDS[0]}" ]; then
    for p in ${MEASURE_PIDS//,/ }; do
      [[ " ${SRV_PIDS[*]} $REDIS_PID " == *" $p "* ]] && continue
      kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
  fi
  SRV_PIDS=()
  REDIS_PID=""
  MEASURE_PIDS=""
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  stop_server
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

workload_args() {
  case $1 in
    idle) echo "--conns $IDLE_CONNS --idle-wait 3" ;;
    fanout) echo "--conns $FANOUT_SUBS --events $FANOUT_EVENTS" ;;
    targeted) echo "--conns $TARGETED_SUBS --events $TARGETED_EVENTS" ;;
    latency) echo "--conns $LATENCY_SUBS --rate $LATENCY_RATE --duration $LATENCY_SECONDS" ;;
    *) die "unknown workload '$1' in BENCH_WORKLOADS (idle fanout targeted latency)" ;;
  esac
}

summary_of() { # one JSON result line -> a few words for the progress line
  python3 -c '
import json, sys
try:
    r = json.loads(sys.argv[1])
except Exception:
    print("no result"); sys.exit()
w = r.get("workload")
if not r.get("ready"):
    s = "no subscriber connected"
elif w == "idle":
    kb = r.get("kb_per_conn")
    s = "%s KB/conn, %d conns, %.0f conns/s" % ("-" if kb is None else "%.2f" % kb, r["ready"],
                                                 r.get("conns_per_s") or 0)
elif w == "latency":
    l = r.get("latency_ms", {})
    s = "p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms" % (l.get("p50", 0), l.get("p99", 0), l.get("p999", 0))
else:
    s = "%.0f msgs/s" % (r.get("msgs_per_s") or 0)
if not r.get("ok"):
    s += " -- FAILED: lost %s, publish errors %s: %s" % (r.get("lost", 0), r.get("publish_errors", 0),
                                                       r.get("error"))
print(s)' "$1"
}

echo "bench: $RUNS run(s) of [$WORKLOADS] on [$SERVERS]; $PINNING"
case " $SERVERS " in
  *" herald-cluster "*) case " $WORKLOADS " in
    *" fanout "*) ;;
    *) note "herald-cluster skipped: it measures the fanout workload only, and BENCH_WORKLOADS has no fanout" ;;
  esac ;;
esac
echo "bench: idle $IDLE_CONNS conns; fanout $FANOUT_SUBS subs x $FANOUT_EVENTS events;" \
     "targeted $TARGETED_SUBS subs, $TARGETED_EVENTS events; latency $LATENCY_SUBS subs at" \
     "$LATENCY_RATE/s for ${LATENCY_SECONDS}s"
for ((run = 1; run <= RUNS; run++)); do
  for wl in $WORKLOADS; do
    args=$(workload_args "$wl")
    for srv in $SERVERS; do
      [ -n "${UNAVAILABLE[$srv]:-}" ] && continue
      [ "$srv" = herald-cluster ] && [ "$wl" != fanout ] && continue
      if ! next_port; then note "no free port found after $PORT"; break 3; fi
      log=$OUT/logs/$srv-$wl-$run.log
      if ! start_server "$srv" "$PORT" "$log"; then
        stop_server
        note "$srv did not answer /health on port(s) $SRV_PORTS ($wl, run $run); see ${log%.log}*.log"
        echo "{\"server\":\"$srv\",\"run\":$run,\"workload\":\"$wl\",\"rc\":-1,\"result\":null}" >>"$RAW"
        case $srv in herald*) HERALD_FAILED[$srv]=1 ;; esac
        continue
      fi
      extra=""
      [ "$srv" = herald-cluster ] && extra=$CLUSTER_LOADGEN_ARGS
      # shellcheck disable=SC2086 # args, extra and LOADGEN_ARGS are lists of flags
      json=$("${LG_PIN[@]}" "$LOADGEN" --proto "$(proto_of "$srv")" --workload "$wl" --port "$SRV_PORTS" \
             --server-pid "$MEASURE_PIDS" --timeout "$TIMEOUT" $args $extra $LOADGEN_ARGS \
             2>>"$OUT/logs/loadgen.log")
      rc=$?
      stop_server
      [ -n "$json" ] || json=null
      echo "{\"server\":\"$srv\",\"run\":$run,\"workload\":\"$wl\",\"rc\":$rc,\"result\":$json}" >>"$RAW"
      if [ $rc -ne 0 ]; then
        case $srv in herald*) HERALD_FAILED[$srv]=1 ;; esac
      fi
      printf 'bench: run %d/%d %-9s %-14s %s\n' "$run" "$RUNS" "$wl" "$srv" "$(summary_of "$json")"
    done
  done
done

# ---- the table ----
versions() {
  echo "- node $(node --version 2>/dev/null || echo -), ws $(node -p "require('ws/package.json').version" 2>/dev/null || echo -)," \
       "socket.io $(node -p "require('socket.io/package.json').version" 2>/dev/null || echo -)," \
       "$(nginx -v 2>&1 | sed 's|nginx version: ||') with nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo -)," \
       "$(hv=$("$HERALD" version 2>/dev/null | head -1); echo "${hv:-herald (not built)}")," \
       "$(rv=$(redis-server --version 2>/dev/null | awk '{print $1, $2, $3}'); echo "${rv:-redis-server -}")"
}
BENCH_META="$(
  echo "- $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Linux $(uname -r); $PINNING"
  versions
  echo "- $RUNS run(s), median shown; herald: \`serve --workers $HERALD_WORKERS $HERALD_ARGS\`, default configuration"
  case " $SERVERS " in *" herald-cluster "*)
    echo "- herald cluster: $CLUSTER_NODES such nodes with \`--redis\` sharing one redis-server (persistence off)," \
         "all of them on the server's CPU; fanout only: subscribers spread evenly over the nodes," \
         "publishes over $CLUSTER_NODES connections, one per node (\`$CLUSTER_LOADGEN_ARGS\`)" ;;
  esac
  echo "- sizes: idle $IDLE_CONNS connections; fanout $FANOUT_SUBS subscribers x $FANOUT_EVENTS events;" \
       "targeted $TARGETED_SUBS subscribers x $TARGETED_EVENTS events; latency $LATENCY_SUBS subscribers," \
       "$LATENCY_RATE events/s for ${LATENCY_SECONDS}s"
)"
export BENCH_META CLUSTER_NODES
python3 - "$RAW" "$NOTES" "$OUT/results.md" <<'PY'
import json, os, statistics, sys

raw_path, notes_path, md_path = sys.argv[1:4]
rows = [json.loads(l) for l in open(raw_path) if l.strip()]
notes = [l.rstrip() for l in open(notes_path) if l.strip()]

servers = ["herald", "herald-sio", "herald-cluster", "ws", "socketio", "nchan"]
heads = {"herald": "herald (native)", "herald-sio": "herald (Socket.IO)",
         "herald-cluster": "herald cluster (%s nodes)" % os.environ.get("CLUSTER_NODES", "3"),
         "ws": "ws", "socketio": "Socket.IO", "nchan": "nchan"}
# (label, workload, getter, higher_is_better, format)
metrics = [
    ("idle: server memory per connection, KB", "idle", lambda r: r.get("kb_per_conn"), False, "%.1f"),
    ("idle: connections opened per second", "idle", lambda r: r.get("conns_per_s"), True, "%.0f"),
    ("fan-out: deliveries per second", "fanout", lambda r: r.get("msgs_per_s"), True, "%.0f"),
    ("targeted: deliveries per second", "targeted", lambda r: r.get("msgs_per_s"), True, "%.0f"),
    ("latency: p50, ms", "latency", lambda r: r.get("latency_ms", {}).get("p50"), False, "%.2f"),
    ("latency: p99, ms", "latency", lambda r: r.get("latency_ms", {}).get("p99"), False, "%.2f"),
    ("latency: p99.9, ms", "latency", lambda r: r.get("latency_ms", {}).get("p999"), False, "%.2f"),
]
ratios = [("herald/ws", "herald", "ws"), ("herald/socket.io", "herald-sio", "socketio"),
          ("herald/nchan", "herald", "nchan"), ("herald-cluster/herald", "herald-cluster", "herald")]

present = [s for s in servers if any(r["server"] == s for r in rows)]
footnotes = []
starred = set()
LOADGEN_BUSY = 0.9

def ratio(a, b):
    if a is None or not b:
        return "-"
    q = a / b
    return ("%.2fx" % q) if q >= 0.1 else ("%.2gx" % q)   # keep two significant digits

def cell(server, workload, get):
    rs = [r for r in rows if r["server"] == server and r["workload"] == workload]
    if not rs:
        return None, ""
    # A run that connected nobody, or delivered nothing, measured nothing.
    usable = [r["result"] for r in rs if r["result"] is not None and r["result"].get("ready")
              and (workload == "idle" or r["result"].get("delivered"))]
    vals = [v for v in (get(u) for u in usable) if v is not None]
    bad = [r for r in rs if r["result"] is None or not r["result"].get("ok")]
    busy = [u.get("loadgen_busy") for u in usable if u.get("loadgen_busy") is not None]
    mark = " *" if busy and statistics.median(busy) >= LOADGEN_BUSY else ""
    if mark:
        starred.add((server, workload))
    if bad:
        key = (server, workload)
        if key not in [f[0] for f in footnotes]:
            why = []
            for r in bad:
                res = r["result"]
                if res is None:
                    why.append("run %d: no result (server did not start or loadgen crashed)" % r["run"])
                else:
                    parts = ["%s of %s subscribers ready" % (res.get("ready", 0), res.get("conns", "-"))]
                    if res.get("disconnects"):
                        parts.append("%s disconnected" % res["disconnects"])
                    if workload != "idle":
                        parts.append("lost %s of %s deliveries" % (res.get("lost", 0), res.get("expected", 0)))
                        for k in ("duplicates", "misrouted", "reordered", "publish_errors"):
                            if res.get(k):
                                parts.append("%s %s" % (k.replace("_", " "), res[k]))
                    if res.get("timed_out"):
                        parts.append("timed out")
                    if res.get("error"):
                        parts.append("first error: " + res["error"])
                    why.append("run %d: %s" % (r["run"], ", ".join(parts)))
            footnotes.append((key, "%s, %s: %s" % (heads[server], workload, "; ".join(why))))
        mark += " [%d]" % (1 + [f[0] for f in footnotes].index(key))
    if not vals:
        return None, mark or " (failed)"
    return statistics.median(vals), mark

lines = []
hdr = ["workload / metric"] + [heads[s] for s in present] + [r[0] for r in ratios
        if r[1] in present and r[2] in present]
lines.append("| " + " | ".join(hdr) + " |")
lines.append("|" + "---|" * len(hdr))
for label, wl, get, higher, fmt in metrics:
    if not any(r["workload"] == wl for r in rows):
        continue
    vals = {}
    out = [label + (" (higher is better)" if higher else " (lower is better)")]
    for s in present:
        v, mark = cell(s, wl, get)
        vals[s] = v
        out.append(("-" if v is None else fmt % v) + mark)
    for name, a, b in ratios:
        if a in present and b in present:
            va, vb = vals.get(a), vals.get(b)
            out.append(ratio(va, vb))
    lines.append("| " + " | ".join(out) + " |")

md = ["# herald benchmark results", ""]
md += os.environ.get("BENCH_META", "").splitlines()
md += ["", "Ratios are herald's value divided by the peer's: above 1 is better for herald where",
       "higher is better, below 1 is better where lower is better. herald (native) is compared",
       "with ws and nchan, herald (Socket.IO) with Socket.IO."]
if "herald-cluster" in present:
    md += ["herald-cluster/herald is the cluster's value divided by one node's, on the same core:",
           "what going through Redis costs (fan-out only; the cluster's other cells are empty)."]
md += [""]
md += lines
if starred:
    md += ["", "\\* the load generator's core was %d%% busy or more while publishing: the server may be" % (LOADGEN_BUSY * 100),
           "faster than shown (its CPU use is in results.jsonl, `server_busy`)."]
if footnotes:
    md += ["", "Failed or incomplete runs (their numbers above are medians of what was measured):"]
    md += ["%d. %s" % (i + 1, f[1]) for i, f in enumerate(footnotes)]
if notes:
    md += ["", "Notes:"] + ["- " + n for n in notes]
md += ["", "Raw results: build/bench/results.jsonl; server logs: build/bench/logs/."]
text = "\n".join(md) + "\n"
open(md_path, "w").write(text)
print()
print(text, end="")
PY

if [ ${#HERALD_FAILED[@]} -gt 0 ]; then
  echo "bench: herald measurements failed (${!HERALD_FAILED[*]}); see the footnotes above" >&2
  exit 1
fi
exit 0
