#!/usr/bin/env bash
# The main job on one machine: run the seed example (the role=db policy of
# the Kubernetes NetworkPolicy documentation) in the lab — a small cluster of
# network namespaces enforced by real nftpol agents — and print the
# reachability truth tables it measured with real traffic.
# Needs root (it builds network namespaces); installs nftables and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends nftables iproute2 >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends nftables iproute2 >/dev/null
  }
fi
cargo build --release --locked --bin nftpol >&2
scenario=integration/scenarios/seed-role-db-policy
echo "== nftpol lab run $scenario.yaml (expectation: $scenario.expected.json) ==" >&2
./target/release/nftpol lab run "$scenario.yaml" --expect "$scenario.expected.json"
