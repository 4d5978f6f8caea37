#!/usr/bin/env bash
# `make bench`, second part: herald against itself under two settings that cost
# something, each measured BENCH_RUNS times (median shown):
#   1. WebSocket handshakes per second, without a token, with an HS256 JWT and with
#      an ES256 JWT (every connection's token verified): the loadgen's `idle`
#      workload opening BENCH_HANDSHAKE_CONNS connections, reporting connections/s.
#   2. Acknowledged publishes per second with 64 concurrent publishers (wrk, one
#      request in flight per connection), with the durable store (the default:
#      each answer waits for its group commit) and with memory-only history.
# The server runs pinned to BENCH_SERVER_CPU (all its threads, the store's writer
# too), the load to BENCH_LOADGEN_CPU. Prints a table and writes
# build/bench/extras.md.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

OUT=build/bench
LOADGEN=$OUT/loadgen
HERALD=${HERALD_BIN:-build/release/herald}
RUNS=${BENCH_RUNS:-3}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
CONNS=${BENCH_HANDSHAKE_CONNS:-5000}
PUB_SECONDS=${BENCH_PUBLISH_SECONDS:-5}
PORT=${BENCH_EXTRAS_PORT:-18790}

die() { echo "bench extras: $*" >&2; exit 2; }
[ -x "$LOADGEN" ] || die "$LOADGEN is missing"
[ -x "$HERALD" ] || die "$HERALD is missing"
command -v wrk >/dev/null || die "wrk is missing (scripts/deps.sh bench installs it)"
command -v openssl >/dev/null || die "openssl is missing"
ulimit -n 65536 2>/dev/null || true

TMP=$(mktemp -d /tmp/herald-extras.XXXXXX) || die "mktemp failed"
SRV=""
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# ---- tokens: HS256 with a secret, ES256 with a P-256 key (signed here, with openssl) ----
SECRET=bench-secret-0123456789abcdef
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/ec.pem" 2>/dev/null
openssl ec -in "$TMP/ec.pem" -pubout -out "$TMP/ec.pub" 2>/dev/null
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt_hs256() {
  local h p
  h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
  p=$(printf '{"sub":"bench","exp":%d}' $(($(date +%s) + 3600)) | b64url)
  printf '%s.%s.%s' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)"
}
jwt_es256() {
  local h p der
  h=$(printf '{"alg":"ES256","typ":"JWT"}' | b64url)
  p=$(printf '{"sub":"bench","exp":%d}' $(($(date +%s) + 3600)) | b64url)
  der=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$TMP/ec.pem" | od -An -v -tx1 | tr -d ' \n')
  # DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each (RFC 7518 3.4)
  local sig
  sig=$(python3 - "$der" <<'PY'
import base64, sys
d = bytes.fromhex(sys.argv[1]); i = 2
if d[1] & 0x80: i = 2 + (d[1] & 0x7f)
out = b""
for _ in range(2):
    n = d[i + 1]; v = d[i + 2:i + 2 + n].lstrip(b"\0"); out += v.rjust(32, b"\0"); i += 2 + n
sys.stdout.write(base64.urlsafe_b64encode(out).decode().rstrip("="))
PY
)
  printf '%s.%s.%s' "$h" "$p" "$sig"
}

start() {   # start CONFIG_JSON: herald on $PORT, pinned; waits for /health
  printf '%s' "$1" >"$TMP/config.json"
  rm -rf "$TMP/data"
  taskset -c "$SERVER_CPU" "$HERALD" serve --config "$TMP/config.json" --listen "127.0.0.1:$PORT" \
    --data-dir "$TMP/data" --workers 1 --log-level warn 2>>"$TMP/server.log" &
  SRV=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0; sleep 0.05; done
  die "herald did not start: $(tail -3 "$TMP/server.log")"
}
stop() { kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null; SRV=""; PORT=$((PORT + 1)); }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }

handshakes() {   # CONFIG TOKEN -> median connections/s
  for _ in $(seq "$RUNS"); do
    start "$1"
    local path=/ws
    [ -n "$2" ] && path="/ws?token=$2"
    taskset -c "$LOADGEN_CPU" "$LOADGEN" --proto native --workload idle --port "$PORT" --conns "$CONNS" \
      --sub-path "$path" --idle-wait 0.5 --server-pid "$SRV" --timeout 120 2>>"$TMP/loadgen.log" |
      python3 -c 'import json,sys; r=json.loads(sys.stdin.read() or "{}"); print(r.get("conns_per_s",0) if r.get("ready")==r.get("conns") else 0)'
    stop
  done | median
}

publishes() {   # CONFIG -> median acknowledged publishes/s
  cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"channel":"jobs","event":"job_created","data":{"id":1,"title":"Fix the sink"}}'
wrk.headers["Content-Type"] = "application/json"
EOF
  for _ in $(seq "$RUNS"); do
    start "$1"
    taskset -c "$LOADGEN_CPU" wrk -t1 -c64 -d"${PUB_SECONDS}s" -s "$TMP/post.lua" \
      "http://127.0.0.1:$PORT/api/publish" 2>/dev/null | awk '/Non-2xx/ { bad = 1 } /Requests\/sec/ { r = $2 } END { print bad ? 0 : r }'
    stop
  done | median
}

echo "bench extras: handshakes ($CONNS connections x $RUNS runs)" >&2
H_NONE=$(handshakes '{}' '')
H_HS=$(handshakes "{\"auth\":{\"jwt\":{\"secret\":\"$SECRET\"}}}" "$(jwt_hs256)")
H_ES=$(handshakes "{\"auth\":{\"jwt\":{\"public_key_file\":\"$TMP/ec.pub\",\"algorithms\":[\"ES256\"]}}}" "$(jwt_es256)")
echo "bench extras: publishes (64 publishers, ${PUB_SECONDS}s x $RUNS runs)" >&2
P_MEM=$(publishes '{"history":{"durable":false}}')
P_DUR=$(publishes '{}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
{
  echo "# herald: the cost of JWT verification and of the durable store"
  echo
  echo "- one worker pinned to CPU $SERVER_CPU (with the store's writer thread), load on CPU $LOADGEN_CPU; median of $RUNS runs"
  echo
  echo "| measurement | value | ratio |"
  echo "|---|---|---|"
  echo "| WebSocket handshakes/s, no token | $H_NONE | 1.00x |"
  echo "| WebSocket handshakes/s, HS256 JWT | $H_HS | $(ratio "$H_HS" "$H_NONE") |"
  echo "| WebSocket handshakes/s, ES256 JWT | $H_ES | $(ratio "$H_ES" "$H_NONE") |"
  echo "| acknowledged publishes/s, 64 publishers, memory-only history | $P_MEM | 1.00x |"
  echo "| acknowledged publishes/s, 64 publishers, durable store (group commit) | $P_DUR | $(ratio "$P_DUR" "$P_MEM") |"
} | tee "$OUT/extras.md"
