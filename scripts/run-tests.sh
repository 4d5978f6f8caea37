#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, M failed".
#  1. unit tests (cmocka, ASan+UBSan)      build/test/unit/test_*
#  2. fuzz targets over their corpora       build/fuzz/fuzz_* fuzz/corpus/<name>
#  3. end-to-end tests, Python              tests/e2e/test_*.py  (Debian's /usr/bin/python3)
#  4. end-to-end tests, Node                tests/e2e/*.test.mjs (node --test)
# The e2e tests start build/test/herald (sanitized) themselves on free loopback ports.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0; failed=0; failures=()
mkdir -p build/logs
export HERALD_BIN=${HERALD_BIN:-$PWD/build/test/herald}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
only=${1:-}

count() { # name pass fail
  passed=$((passed + $2)); failed=$((failed + $3))
  [ "$3" -gt 0 ] && failures+=("$1")
  printf '%-40s %4d passed %4d failed\n' "$1" "$2" "$3"
}

if [ -z "$only" ] || [ "$only" = unit ]; then
  for t in build/test/unit/test_*; do
    [ -x "$t" ] || continue
    n=$(basename "$t"); log=build/logs/$n.log
    "$t" >"$log" 2>&1; rc=$?
    p=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$4} END{print s+0}')
    f=$(grep -oE '^\[  FAILED  \] [0-9]+ test' "$log" | awk '{s+=$4} END{print s+0}')
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crash or sanitizer report
    [ "$f" -gt 0 ] && tail -40 "$log"
    count "unit/$n" "$p" "$f"
  done
fi

if [ -z "$only" ] || [ "$only" = fuzz ]; then
  for t in build/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    n=$(basename "$t"); log=build/logs/$n.log
    if "$t" -runs=0 "fuzz/corpus/$n" >"$log" 2>&1; then count "fuzz/$n (corpus)" 1 0
    else tail -30 "$log"; count "fuzz/$n (corpus)" 0 1; fi
  done
fi

if [ -z "$only" ] || [ "$only" = e2e ] || [ "$only" = py ]; then
  for t in tests/e2e/test_*.py; do
    [ -f "$t" ] || continue
    n=$(basename "$t" .py); log=build/logs/$n.log
    timeout 600 /usr/bin/python3 "$t" >"$log" 2>&1; rc=$?
    line=$(grep -E '^RESULT passed=[0-9]+ failed=[0-9]+' "$log" | tail -1)
    p=$(echo "$line" | sed -E 's/.*passed=([0-9]+).*/\1/'); f=$(echo "$line" | sed -E 's/.*failed=([0-9]+).*/\1/')
    [ -n "$line" ] || { p=0; f=1; }
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    [ "$f" -gt 0 ] && grep -E '^(FAIL|ERROR)|Error|assert' "$log" | head -40
    count "e2e/$n" "$p" "$f"
  done
fi

if [ -z "$only" ] || [ "$only" = e2e ] || [ "$only" = node ]; then
  for t in tests/e2e/*.test.mjs; do
    [ -f "$t" ] || continue
    n=$(basename "$t" .test.mjs); log=build/logs/$n.node.log
    timeout 600 node --test --test-reporter=tap "$t" >"$log" 2>&1; rc=$?
    p=$(grep -E '^# pass [0-9]+' "$log" | awk '{print $3}' | tail -1); f=$(grep -E '^# fail [0-9]+' "$log" | awk '{print $3}' | tail -1)
    p=${p:-0}; f=${f:-1}
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    [ "$f" -gt 0 ] && grep -E 'not ok|Error|expected|actual' "$log" | head -40
    count "e2e/$n (node)" "$p" "$f"
  done
fi

echo
[ ${#failures[@]} -gt 0 ] && echo "failing: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
