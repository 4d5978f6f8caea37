#!/usr/bin/env bash
# Installs what herald needs on a Debian 12 machine, and nothing that is already there.
#   scripts/deps.sh build   compiler and libraries (what `make run` needs)
#   scripts/deps.sh test    + test tools: cmocka, redis, chromium, Python and npm clients
#   scripts/deps.sh bench   + the peers `make bench` compares against (nginx with nchan)
# Debian packages come from apt (one `apt-get update` first, only when something is
# missing); npm packages come from the committed package-lock.json via `npm ci`.
set -euo pipefail
mode=${1:-build}
cd "$(dirname "$0")/.."

build_pkgs=(build-essential pkg-config libssl-dev zlib1g-dev libjansson-dev libjwt-dev
            libhiredis-dev libsqlite3-dev libhttp-parser-dev uuid-runtime ca-certificates)
test_pkgs=(clang libclang-rt-14-dev libcmocka-dev curl python3 python3-websockets
           python3-socketio python3-requests python3-websocket redis-server chromium)
bench_pkgs=(nginx-light libnginx-mod-nchan wrk)

want=("${build_pkgs[@]}")
case "$mode" in
  build) ;;
  test)  want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js and npm: any install that provides the commands will do (Debian's or NodeSource's).
if [ "$mode" != build ] && ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d keeps apt from starting redis/nginx as system services: tests start their own.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$mode" != build ]; then
  # npm test clients (ws, socket.io, socket.io-client, playwright-core), pinned by the lock file.
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
  fi
fi
