#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the libFuzzer targets of a MIPSEC_FUZZ=ON (clang, ASan+UBSan) build, one at a time,
# each starting from its seed corpus in tests/fuzz/corpus/<target>/ (and its dictionary in
# tests/fuzz/dict/<target>.dict, if any). New corpus entries and crash inputs go to a
# scratch directory, never into the repository.
#
#   tools/fuzz.sh                 short mode (CI): each target for --seconds (default 12)
#   tools/fuzz.sh --long          each target to --runs executions (default 10,000,000)
#   options: --build DIR (default build-fuzz)  --work DIR (default <build>/fuzz-work)
#            --seconds N  --runs N  [target ...] (e.g. fuzz_shell_config; default: all)
#            --max-seconds N: in long mode, stop a target after N s even short of --runs
#            (the table then says how far it got)
# The long mode keeps <work>/<target>/corpus between runs, so a second campaign resumes.
# Prints, per target, executions, exec/s, final cov/ft and any crash; a Markdown table of
# the same goes to <work>/summary.md. Exit status 1 if any target crashed, leaked or hung.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
work=
mode=short
seconds=${MIPSEC_FUZZ_SECONDS:-10}
runs=10000000
max_seconds=
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --long) mode=long ;;
    --build) build=$2; shift ;;
    --work) work=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --runs) runs=$2; shift ;;
    --max-seconds) max_seconds=$2; shift ;;
    -h|--help) sed -n '3,16p' "$0"; exit 0 ;;
    fuzz_*) targets+=("$1") ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
work=${work:-$build/fuzz-work}
if [[ ${#targets[@]} -eq 0 ]]; then
  for f in "$build"/tests/fuzz/fuzz_*; do
    [[ -x $f ]] && targets+=("$(basename "$f")")
  done
fi
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "fuzz.sh: no fuzz targets in $build/tests/fuzz (configure with -DMIPSEC_FUZZ=ON and build)" >&2
  exit 2
fi
mkdir -p "$work"
summary=$work/summary.md
{
  echo "| target | executions | exec/s | exec per CPU s | cov (of edges) | ft | corpus | wall s | CPU s | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
} >"$summary"

# User + system CPU seconds of this shell's finished children: bash's `times` (second line),
# run in this shell itself (in a pipe or $(...) it would report a fresh subshell).
children_cpu() {
  times >"$work/.times"
  awk 'NR == 2 { t = 0; for (i = 1; i <= 2; ++i) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] } printf "%.2f", t }' "$work/.times"
}

failed=0
passed=0
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/$t
  [[ -x $bin ]] || { echo "fuzz $t: no binary at $bin"; failed=$((failed + 1)); continue; }
  seeds=$root/tests/fuzz/corpus/${t#fuzz_}
  dict=$root/tests/fuzz/dict/${t#fuzz_}.dict
  dir=$work/$t
  if [[ $mode == short ]]; then rm -rf "$dir"; fi
  mkdir -p "$dir/corpus" "$dir/artifacts"
  args=(-print_final_stats=1 -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$dir/artifacts/")
  if [[ $mode == long ]]; then
    args+=(-runs="$runs")
    [[ -n $max_seconds ]] && args+=(-max_total_time="$max_seconds")
  else
    args+=(-max_total_time="$seconds")
  fi
  [[ -f $dict ]] && args+=(-dict="$dict")
  # libFuzzer writes new inputs into the first directory only: the scratch corpus.
  corpora=("$dir/corpus")
  [[ -d $seeds ]] && corpora+=("$seeds")
  log=$dir/log.txt
  start=$(date +%s)
  status=0
  # CPU seconds as well as wall time: on a shared machine (nice -n 19) the two differ a lot,
  # and executions per CPU second say what an idle core would do.
  children_cpu >"$dir/cpu-before"
  "$bin" "${args[@]}" "${corpora[@]}" >"$log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  children_cpu >"$dir/cpu-after"
  cpu=$(awk 'NR == FNR { a = $1; next } { printf "%.1f", $1 - a }' "$dir/cpu-before" "$dir/cpu-after")
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  rate=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  cov=$(grep -Eo 'cov: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || echo "?")
  ft=$(grep -Eo 'ft: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || echo "?")
  edges=$(grep -Eo 'Loaded [0-9]+ modules +\([0-9]+ inline 8-bit counters' "$log" | grep -Eo '\([0-9]+' | tr -d '(' | head -1 || true)
  corp=$(grep -Eo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" | sed 's/corp: //' || echo "?")
  if [[ $status -eq 0 ]]; then
    result=ok
    if [[ $mode == long && ${execs:-0} -lt $runs ]]; then result="ok, stopped by --max-seconds short of $runs runs"; fi
    passed=$((passed + 1))
  else
    result="FAILED (exit $status)"
    failed=$((failed + 1))
  fi
  per_cpu=$(awk -v n="${execs:-0}" -v c="$cpu" 'BEGIN { if (n > 0 && c > 0) printf "%d", n / c; else print "?" }')
  printf 'fuzz %-24s %10s runs  %7s exec/s (%s per CPU s)  cov %5s/%-6s  ft %6s  corpus %-10s %5ss wall %5ss CPU  %s\n' \
    "$t" "${execs:-?}" "${rate:-?}" "$per_cpu" "$cov" "${edges:-?}" "$ft" "$corp" "$elapsed" "$cpu" "$result"
  echo "| $t | ${execs:-?} | ${rate:-?} | $per_cpu | $cov (of ${edges:-?}) | $ft | $corp | $elapsed | $cpu | $result |" >>"$summary"
  if [[ $status -ne 0 ]]; then
    grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)|runtime error' "$log" | head -20 || true
    tail -40 "$log"
    ls -1 "$dir/artifacts" 2>/dev/null | sed 's/^/  crash input: /' || true
  fi
  # A short run's scratch corpus is thrown away; a crash input is kept for the report.
  if [[ $mode == short && $status -eq 0 ]]; then rm -rf "$dir"; fi
done
echo "fuzz ($mode): ${passed} passed, ${failed} failed; table in $summary"
[[ $failed -eq 0 ]]
