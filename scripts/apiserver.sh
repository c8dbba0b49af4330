#!/usr/bin/env bash
# Builds the real-API-server test tools once, keyed by version, under
# target/tools/kubernetes-<version>/:
#   nftpol-apiserver  embedded etcd + kube-apiserver (integration/apiserver)
#   kubectl           k8s.io/kubernetes/cmd/kubectl of the same release
#   clusternetworkpolicies.yaml  the ClusterNetworkPolicy CRD (experimental
#                     channel: it carries domainNames) from sigs.k8s.io/network-policy-api
# The Kubernetes version is pinned once, in integration/apiserver/go.mod.
#
# Usage: scripts/apiserver.sh build   builds if missing, prints the directory
set -euo pipefail
cd "$(dirname "$0")/.."

# The CRD's module version: v0.3.0 serves v1alpha2 (what the agent watches)
# next to v1beta1 (the stored version).
netpol_api_version=v0.3.0

usage() {
  echo "usage: scripts/apiserver.sh build" >&2
  exit 2
}

[ "${1:-}" = build ] || usage
command -v go >/dev/null 2>&1 || {
  echo "scripts/apiserver.sh needs Go (1.24 or newer) to build kube-apiserver and kubectl" >&2
  exit 2
}

module=integration/apiserver
version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$module/go.mod")
[ -n "$version" ] || { echo "no k8s.io/kubernetes line in $module/go.mod" >&2; exit 1; }
# Every staging module must be the matching v0.MINOR.PATCH: a mismatch builds
# but mixes two releases' API machinery.
staging=v0.${version#v1.}
mismatched=$(awk -v want="$staging" '$2 == "=>" && $1 ~ /^k8s\.io\// && $4 != want { print $1 " " $4 }' "$module/go.mod")
if [ -n "$mismatched" ]; then
  echo "$module/go.mod: staging modules not at $staging:" >&2
  echo "$mismatched" >&2
  exit 1
fi

out="$PWD/target/tools/kubernetes-$version"
if [ ! -x "$out/nftpol-apiserver" ] || [ ! -x "$out/kubectl" ] || [ ! -s "$out/clusternetworkpolicies.yaml" ]; then
  echo "building kube-apiserver and kubectl $version (once, about 10 CPU-minutes)" >&2
  mkdir -p "$out"
  # nojsonv2: Go 1.27 turns the jsonv2 experiment on by default, and
  # kube-openapi then serves a malformed /openapi/v2 (kubectl apply fails with
  # "failed to download openapi"); harmless on 1.26.
  export GOEXPERIMENT=nojsonv2 GOFLAGS="-buildvcs=false -mod=readonly"
  (cd "$module" &&
    go build -trimpath -ldflags='-s -w' -o "$out/nftpol-apiserver.tmp" . &&
    go build -trimpath -ldflags='-s -w' -o "$out/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
  crd_dir=$(GOFLAGS='' go mod download -json "sigs.k8s.io/network-policy-api@$netpol_api_version" |
    awk -F'"' '$2 == "Dir" { print $4 }')
  crd="$crd_dir/config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml"
  grep -q '^    name: v1alpha2$' "$crd" || {
    echo "$crd does not serve v1alpha2" >&2
    exit 1
  }
  cp "$crd" "$out/clusternetworkpolicies.yaml.tmp"
  mv "$out/nftpol-apiserver.tmp" "$out/nftpol-apiserver"
  mv "$out/kubectl.tmp" "$out/kubectl"
  mv "$out/clusternetworkpolicies.yaml.tmp" "$out/clusternetworkpolicies.yaml"
fi
echo "$out"
