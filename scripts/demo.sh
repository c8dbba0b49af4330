#!/usr/bin/env bash
# The main job on one machine: render the ruleset nftpol installs for the
# seed example (the role=db policy of the Kubernetes documentation) and
# check that nft accepts it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nft >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends nftables iproute2 >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends nftables iproute2 >/dev/null
  }
}
cargo build --release --locked --bin nftpol >&2
rendered=$(./target/release/nftpol render --manifests integration/examples/seed-role-db.yaml --node node-1)
printf '%s\n' "$rendered"
printf '%s\n' "$rendered" | unshare --net nft -c -f - && echo "nft -c accepts the ruleset" >&2
