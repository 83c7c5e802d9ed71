#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README command 1: install what is missing, build, run the lab demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install-deps.sh"
bash "$root/tools/build.sh"
mipsec="${MIPSEC_BUILD_DIR:-$root/build}/apps/mipsec/mipsec"
# Default: the flagship `mipsec lab` scenario — a laptop running the whole RFC 5265 stack walks
# out of the office (mode c), through a café (cvc), behind a NAT and back to the café (x-MIP
# moves alone), and back (c), against an unmodified strongSwan gateway; it prints the per-move table and where
# the report is. Options: --keep (keep configs, logs and captures), --report DIR.
# --roaming: the same walk (kept for older instructions).
# --ipip: the small two-host IP-in-IP demo (the lab scenario `ipip-tunnel`).
case "${1:-}" in
  --ipip)
    shift
    exec "$mipsec" lab run ipip-tunnel "$@" ;;
  --roaming)
    shift ;;
esac
exec "$mipsec" lab run rfc5265-cvc --set gateway=strongswan "$@"
