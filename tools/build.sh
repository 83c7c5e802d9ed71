#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Configures and builds mipsec (release with debug info) into build/ (or $MIPSEC_BUILD_DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIPSEC_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
