#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README command 1: install what is missing, build, run the lab demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install-deps.sh"
bash "$root/tools/build.sh"
exec /usr/bin/python3 "$root/tools/demo.py" --mipsec "${MIPSEC_BUILD_DIR:-$root/build}/apps/mipsec/mipsec" "$@"
