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
# Needs: cargo (stable is enough, see below), crates.io (installs cargo-fuzz
# if missing), and for the sampled `nft -c` checks root with nftables and
# util-linux (installed here like scripts/test.sh does; without them the
# targets skip those checks and say so).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
dir=crates/nftpol-fuzz

# The fuzz crate is its own workspace and copies the root's lint table
# (see its Cargo.toml): fail when the copy drifts, and hold it to clippy
# like the workspace (sharing the workspace's target directory, so only
# the fuzz crate itself is checked anew).
lints() { sed -n '/^\[\(workspace\.\)\{0,1\}lints\./,/^$/p' "$1" | sed 's/^\[workspace\./[/' | grep -v '^$'; }
if ! diff <(lints Cargo.toml) <(lints "$dir/Cargo.toml") >&2; then
  echo "fuzz: the lint table of $dir/Cargo.toml differs from the root's [workspace.lints]" >&2
  exit 1
fi
CARGO_TARGET_DIR=$PWD/target cargo clippy --manifest-path "$dir/Cargo.toml" --all-targets -- -D warnings

# cargo-fuzz passes unstable flags to rustc (-Z options, the sancov passes).
# The stable toolchain accepts them with RUSTC_BOOTSTRAP=1, so fuzzing needs
# no nightly toolchain (CI's machine may have none, and cannot fetch one).
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked >&2
fi
if [ "$(id -u)" -eq 0 ] && ! command -v nft >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends nftables util-linux >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends nftables util-linux >/dev/null
  }
fi

# Safe Rust only (unsafe_code is denied), so no sanitizer: more executions.
fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
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
