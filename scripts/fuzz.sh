#!/usr/bin/env bash
# Runs every cargo-fuzz target of crates/nftpol-fuzz for a bounded time,
# seeded with the committed corpus, and fails on the first crash (the input
# is left in crates/nftpol-fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 30
#
# New inputs go to a scratch directory, so a CI run never grows the
# committed corpus. To fold them in (minimised), run with FUZZ_MERGE=1 and
# commit crates/nftpol-fuzz/corpus/ (keep it under 2 MB).
#
# Needs: rustup (installs the nightly toolchain if missing), crates.io
# (installs cargo-fuzz if missing), and for the sampled `nft -c` checks root
# with nftables and util-linux (installed here like scripts/test.sh does;
# without them the targets skip those checks and say so).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
dir=crates/nftpol-fuzz

if ! rustup toolchain list | grep -q '^nightly'; then
  # cargo fuzz needs nightly (libFuzzer instrumentation). A machine that can
  # neither provide nor fetch it cannot fuzz: say so loudly, fail nothing else.
  if ! rustup toolchain install nightly --profile minimal >&2; then
    echo "fuzz: SKIPPED: no nightly toolchain here and none can be installed" >&2
    exit 0
  fi
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked >&2
fi
if [ "$(id -u)" -eq 0 ] && ! command -v nft >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends nftables util-linux >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends nftables util-linux >/dev/null
  }
fi

# Safe Rust only (unsafe_code is denied), so no sanitizer: more executions.
fuzz=(cargo +nightly fuzz)
common=(--fuzz-dir "$dir" --sanitizer none)
"${fuzz[@]}" build "${common[@]}" >&2

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for target in $("${fuzz[@]}" list --fuzz-dir "$dir"); do
  mkdir -p "$scratch/$target" "$dir/corpus/$target"
  echo "== fuzzing $target for ${seconds}s" >&2
  # -max_len keeps inputs (and so the corpus) small; manifests need room
  # for a few YAML documents, and whole dumps of a compiled ruleset.
  max_len=4096
  case "$target" in manifests | dump_bytes) max_len=16384 ;; esac
  if ! "${fuzz[@]}" run "${common[@]}" "$target" "$scratch/$target" "$dir/corpus/$target" -- \
      -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 2>"$scratch/$target.log"; then
    tail -n 60 "$scratch/$target.log" >&2
    echo "fuzz target $target failed; the input is in $dir/artifacts/$target/" >&2
    status=1
    continue
  fi
  grep -E '^(Done|stat::number_of_executed_units)' "$scratch/$target.log" >&2 || true
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "${fuzz[@]}" run "${common[@]}" "$target" "$dir/corpus/$target" "$scratch/$target" -- \
      -merge=1 -max_len="$max_len" 2>/dev/null
  fi
done
exit "$status"
