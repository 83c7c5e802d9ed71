#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README command 1: install what is missing, build, run the lab demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install-deps.sh"
bash "$root/tools/build.sh"
mipsec="${MIPSEC_BUILD_DIR:-$root/build}/apps/mipsec/mipsec"
# Default: the whole RFC 5265 stack (i-MIP inside IPsec inside x-MIP) roaming against an
# unmodified strongSwan gateway. --ipip: the small two-host IP-in-IP demo. --keep: keep the
# lab's configs, logs and captures.
if [[ "${1:-}" == "--ipip" ]]; then
  shift
  exec /usr/bin/python3 "$root/tools/demo.py" --mipsec "$mipsec" "$@"
fi
if [[ "${1:-}" == "--keep" ]]; then
  export MIPSEC_KEEP_LAB=1
fi
exec /usr/bin/python3 "$root/tests/netns/rfc5265_test.py" --mipsec "$mipsec"
