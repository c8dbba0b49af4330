#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine as root: installs what
# the tests need (nftables for `nft -c` and read-back checks, iproute2 for
# network namespaces, util-linux for unshare, shellcheck for the scripts users
# run, such as the Kind conformance script that cannot run here, conntrack to
# list a namespace's conntrack entries in the conntrack flush tests), then runs
# every test.
set -euo pipefail
cd "$(dirname "$0")/.."

needed=()
command -v nft >/dev/null 2>&1 || needed+=(nftables)
command -v ip >/dev/null 2>&1 || needed+=(iproute2)
command -v unshare >/dev/null 2>&1 || needed+=(util-linux)
command -v shellcheck >/dev/null 2>&1 || needed+=(shellcheck)
command -v conntrack >/dev/null 2>&1 || needed+=(conntrack)
if [ ${#needed[@]} -gt 0 ]; then
  echo "installing ${needed[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${needed[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${needed[@]}" >/dev/null
  }
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh needs root: the tests build network namespaces and program nftables in them" >&2
  exit 2
fi

shellcheck scripts/*.sh .ci/run

# helm for the chart's tests (crates/nftpol-agent/tests/helm_chart.rs), built
# once from its Go module with the machine's Go toolchain and kept under target/.
helm_version=v3.22.0
helm_bin="$PWD/target/tools/helm-$helm_version/helm"
if [ ! -x "$helm_bin" ]; then
  command -v go >/dev/null 2>&1 || { echo "scripts/test.sh needs Go to build helm $helm_version" >&2; exit 2; }
  echo "building helm $helm_version (once)" >&2
  GOBIN="$(dirname "$helm_bin")" GOFLAGS=-buildvcs=false go install "helm.sh/helm/v3/cmd/helm@$helm_version"
fi
export HELM="$helm_bin"

# etcd + kube-apiserver, kubectl and the ClusterNetworkPolicy CRD for the
# real-API-server tests (crates/nftpol/tests/real_apiserver.rs), built once
# from integration/apiserver (Kubernetes version pinned in its go.mod).
NFTPOL_KUBE_TOOLS=$(scripts/apiserver.sh build)
export NFTPOL_KUBE_TOOLS

# Layering: the dataplane knows nothing of Kubernetes, in the build graph and
# not only in its `use` lines (issue 10). Normal dependencies only: the
# netlink crate's tests may use the test kit, which links the model.
forbidden=$(cargo tree -p nftpol-netlink -e normal --locked --prefix none |
  grep -E '^(k8s-openapi|nftpol-model|nftpol-ruleset) ' | sort -u || true)
if [ -n "$forbidden" ]; then
  echo "layering: nftpol-netlink must not depend on Kubernetes types, but links:" >&2
  echo "$forbidden" >&2
  exit 1
fi

cargo test --workspace --all-targets --locked
