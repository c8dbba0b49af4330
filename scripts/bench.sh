#!/usr/bin/env bash
# Regenerates crates/nftpol-bench/BENCHMARKS.md, its plots and
# crates/nftpol-bench/results/results.json from scratch (issue #6).
#
#   scripts/bench.sh            full sizes (1k–100k pods × 100–10k policies; tens of minutes on 2 cores)
#   scripts/bench.sh --smoke    seconds-long sizes that keep the bench code working (CI);
#                               writes to a scratch directory unless --out is given
#   scripts/bench.sh --only dataplane,features
#                               reruns only those measurements (any of compile, commit,
#                               churn, dataplane, memory, rejudge, features,
#                               cluster-policies, objects, policy-churn) at full size
#                               and replaces them in the existing results.json, then
#                               rewrites BENCHMARKS.md and every plot: for rerunning the
#                               dataplane measurements on a quiet machine
#
# Builds the nftpol binary too: measurement 5 runs the real agent process.
# Needs root: every kernel measurement runs in network namespaces it creates
# and removes itself (nothing touches the root namespace). Timings are
# reported, never asserted: this script fails only if the bench code breaks.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
out=""
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out="$2"; shift ;;
    --only) only=(--only "$2"); shift ;;
    *) echo "usage: scripts/bench.sh [--smoke] [--out DIR] [--only MEASUREMENT,...]" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/bench.sh needs root: it builds network namespaces and programs nftables in them" >&2
  exit 2
fi
needed=()
command -v nft >/dev/null 2>&1 || needed+=(nftables)
if [ ${#needed[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${needed[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${needed[@]}" >/dev/null
  }
fi

if [ "$smoke" -eq 1 ]; then
  # Debug build: CI has it from the test run already; smoke sizes need no optimiser.
  cargo build --locked -p nftpol-bench -p nftpol
  bin=target/debug/nftpol-bench
  if [ -z "$out" ]; then
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
  fi
  "$bin" all --smoke --out "$out" "${only[@]}"
  test -s "$out/BENCHMARKS.md" && test -s "$out/results/results.json" && test -s "$out/results/dataplane.svg"
  echo "bench smoke: report written to $out"
else
  cargo build --locked --release -p nftpol-bench -p nftpol
  bin=target/release/nftpol-bench
  out="${out:-crates/nftpol-bench}"
  # Written aside and moved in at the end: an interrupted run leaves the
  # previous report in place.
  fresh="$(mktemp -d)"
  trap 'rm -rf "$fresh"' EXIT
  if [ ${#only[@]} -gt 0 ]; then
    # The measurements not rerun come from the report in place.
    mkdir -p "$fresh/results"
    cp "$out/results/results.json" "$fresh/results/"
  fi
  "$bin" all --out "$fresh" "${only[@]}"
  mkdir -p "$out/results"
  rm -f "$out/BENCHMARKS.md" "$out"/results/*.svg "$out/results/results.json"
  cp "$fresh/BENCHMARKS.md" "$out/"
  cp "$fresh"/results/* "$out/results/"
  echo "wrote $out/BENCHMARKS.md and $out/results/"
fi
