#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README command 2 (and .ci/run): install what is missing, build, run every test.
#  1. release build: unit tests, interop checks with scapy/cryptography/tshark, fuzz-target
#     replays, and the network-namespace end-to-end tests (root; they skip without it);
#  2. clang build with ASan+UBSan and libFuzzer: unit tests again under the sanitizers, then
#     each fuzz target for a short time, starting from its seed corpus (tools/fuzz.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIPSEC_BUILD_DIR:-$root/build}
fuzz_build=${MIPSEC_FUZZ_BUILD_DIR:-$root/build-fuzz}
fuzz_seconds=${MIPSEC_FUZZ_SECONDS:-10}  # 13 targets x 10 s: no longer than 9 x 15 s was
jobs=$(nproc)

bash "$root/tools/install-deps.sh"

echo "== release build"
bash "$root/tools/build.sh"
echo "== tests (release)"
ctest --test-dir "$build" --output-on-failure -j "$jobs" -LE netns
# Namespace tests mostly wait on timers and handshakes, each in namespaces, run directories
# and (for charon) a private /run of its own: three at a time keep 2 cores busy.
ctest --test-dir "$build" --output-on-failure -j "$((jobs + 1))" -L netns

echo "== sanitizer + fuzzer build (clang, ASan+UBSan)"
CC=clang CXX=clang++ cmake -S "$root" -B "$fuzz_build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMIPSEC_FUZZ=ON >/dev/null
cmake --build "$fuzz_build" -j "$jobs"
echo "== unit tests under ASan+UBSan"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$fuzz_build" --output-on-failure -j "$jobs" -L unit
echo "== fuzzing, ${fuzz_seconds}s per target from the seed corpora (tools/fuzz.sh; --long for the campaign)"
bash "$root/tools/fuzz.sh" --build "$fuzz_build" --work "$(mktemp -d)" --seconds "$fuzz_seconds"
