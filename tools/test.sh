#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README command 2 (and .ci/run): install what is missing, build, run every test.
#  1. release build: unit tests, interop checks with scapy/cryptography/tshark, fuzz-target
#     replays, and the network-namespace end-to-end tests (root; they skip without it);
#  2. clang build with ASan+UBSan and libFuzzer: unit tests again under the sanitizers, then
#     each fuzz target for a short time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIPSEC_BUILD_DIR:-$root/build}
fuzz_build=${MIPSEC_FUZZ_BUILD_DIR:-$root/build-fuzz}
fuzz_seconds=${MIPSEC_FUZZ_SECONDS:-15}
jobs=$(nproc)

bash "$root/tools/install-deps.sh"

echo "== release build"
bash "$root/tools/build.sh"
echo "== tests (release)"
ctest --test-dir "$build" --output-on-failure -j "$jobs" -LE netns
ctest --test-dir "$build" --output-on-failure -L netns

echo "== sanitizer + fuzzer build (clang, ASan+UBSan)"
CC=clang CXX=clang++ cmake -S "$root" -B "$fuzz_build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMIPSEC_FUZZ=ON >/dev/null
cmake --build "$fuzz_build" -j "$jobs"
echo "== unit tests under ASan+UBSan"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$fuzz_build" --output-on-failure -j "$jobs" -L unit
echo "== fuzzing, ${fuzz_seconds}s per target"
fuzz_failed=0
fuzz_passed=0
for f in "$fuzz_build"/tests/fuzz/fuzz_*; do
  [[ -x $f ]] || continue
  corpus=$(mktemp -d)
  if "$f" -max_total_time="$fuzz_seconds" -print_final_stats=0 "$corpus" >"$corpus.log" 2>&1; then
    fuzz_passed=$((fuzz_passed + 1))
    echo "fuzz $(basename "$f"): $(grep -Eo 'Done [0-9]+ runs' "$corpus.log" || echo done)"
  else
    fuzz_failed=$((fuzz_failed + 1))
    echo "fuzz $(basename "$f"): FAILED"
    tail -40 "$corpus.log"
  fi
  rm -rf "$corpus" "$corpus.log"
done
echo "fuzz: ${fuzz_passed} passed, ${fuzz_failed} failed"
[[ $fuzz_failed -eq 0 ]]
