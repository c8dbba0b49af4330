#!/usr/bin/env bash
# Runs the upstream NetworkPolicy conformance tests (e2e.test, focus "Netpol",
# SCTP and ipBlock tests included) against nftpol in a Kind cluster.
#
# CNI choice: the cluster is created with disableDefaultCNI: true and gets
# kindnet pinned to an image from kind v0.23 (KINDNET_IMAGE), which predates
# kindnetd's built-in NetworkPolicy enforcer. kindnetd from kind v0.24 on
# embeds an NFQUEUE-based enforcer whose verdicts AND with nftpol's, so a
# false "allow" by nftpol would be hidden by kindnet's "deny" and never
# fail a test. This kindnet routes pods over ptp veths (no bridge), so
# same-node traffic crosses the FORWARD hook nftpol polices.
#
# With --cnp, nftpol is deployed with the upstream ClusterNetworkPolicy CRD
# (deploy/overlays/with-cluster-network-policy) and, after the Netpol tests,
# the network-policy-api conformance suite of the CRD's release runs with
# --conformance-profiles=ClusterNetworkPolicy and the extended features
# nftpol enforces (named ports, egress node peers); its report is written
# beside the e2e log (CNP_REPORT_URL and CNP_REPORT_CONTACT fill its
# implementation fields).
#
# Needs: docker, kind, kubectl, curl, tar (and go for --cnp). Not runnable
# without Docker.
#
# Usage: scripts/kind-conformance.sh [--proxy-mode iptables|nftables|ipvs]
#            [--ip-family ipv4|ipv6|dual] [--name NAME] [--k8s-version X.Y.Z]
#            [--cnp] [--keep]
set -euo pipefail

PROXY_MODE=iptables
IP_FAMILY=ipv4
CLUSTER=nftpol-conformance
K8S_VERSION=1.34.0
KEEP=false
CNP=false
# The extended ClusterNetworkPolicy features nftpol enforces (domainNames
# peers are not: they fail closed, as the spec says for unknown peers).
CNP_FEATURES=ClusterNetworkPolicyNamedPorts,ClusterNetworkPolicyEgressNodePeers
KINDNET_IMAGE=${KINDNET_IMAGE:-docker.io/kindest/kindnetd:v20240513-cd2ac642}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --proxy-mode) PROXY_MODE=${2:?--proxy-mode needs a value}; shift 2 ;;
        --ip-family) IP_FAMILY=${2:?--ip-family needs a value}; shift 2 ;;
        --name) CLUSTER=${2:?--name needs a value}; shift 2 ;;
        --k8s-version) K8S_VERSION=${2:?--k8s-version needs a value}; shift 2 ;;
        --cnp) CNP=true; shift ;;
        --keep) KEEP=true; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done

case "$PROXY_MODE" in iptables|nftables|ipvs) ;; *) echo "bad --proxy-mode: $PROXY_MODE" >&2; exit 2 ;; esac
case "$IP_FAMILY" in
    ipv4) POD_SUBNET=10.244.0.0/16 ;;
    ipv6) POD_SUBNET=fd00:10:244::/56 ;;
    dual) POD_SUBNET=10.244.0.0/16,fd00:10:244::/56 ;;
    *) echo "bad --ip-family: $IP_FAMILY" >&2; exit 2 ;;
esac

tools=(docker kind kubectl curl tar)
DEPLOY="$ROOT/deploy/"
if [[ "$CNP" == true ]]; then
    tools+=(go)
    DEPLOY="$ROOT/deploy/overlays/with-cluster-network-policy"
    # The suite's release is the CRD's: one pin, in the kustomize component.
    NPAPI_VERSION=$(grep -o 'network-policy-api/refs/tags/v[0-9.]*' \
        "$ROOT/deploy/components/cluster-network-policy-crd/kustomization.yaml" | sed 's|.*/tags/||')
    [[ -n "$NPAPI_VERSION" ]] || { echo "no network-policy-api tag in the CRD component" >&2; exit 2; }
fi
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

WORK=$(mktemp -d)
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    if [[ "$KEEP" == false ]]; then
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '==> %s\n' "$*" >&2; }

log "creating Kind cluster $CLUSTER (kube-proxy $PROXY_MODE, $IP_FAMILY, no default CNI)"
cat >"$WORK/kind.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
  kubeProxyMode: $PROXY_MODE
  ipFamily: $IP_FAMILY
  podSubnet: "$POD_SUBNET"
nodes:
  - role: control-plane
  - role: worker
  - role: worker
YAML
kind create cluster --name "$CLUSTER" --image "kindest/node:v$K8S_VERSION" --config "$WORK/kind.yaml" --wait 0s
KUBECONFIG_FILE="$WORK/kubeconfig"
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
export KUBECONFIG="$KUBECONFIG_FILE"

# SCTP tests need the module on the host (Kind nodes share its kernel).
if ! lsmod | grep -q '^sctp'; then
    log "loading the sctp kernel module for the SCTP tests (needs sudo)"
    sudo modprobe sctp || log "could not load sctp: the SCTP tests will fail"
fi

log "installing kindnet without NetworkPolicy support ($KINDNET_IMAGE)"
cat >"$WORK/kindnet.yaml" <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kindnet
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kindnet
rules:
  - apiGroups: [""]
    resources: ["nodes"]
    verbs: ["list", "watch", "patch"]
  - apiGroups: ["storage.k8s.io"]
    resources: ["storageclasses"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kindnet
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kindnet
subjects:
  - kind: ServiceAccount
    name: kindnet
    namespace: kube-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kindnet
  namespace: kube-system
spec:
  selector:
    matchLabels:
      app: kindnet
  template:
    metadata:
      labels:
        app: kindnet
    spec:
      hostNetwork: true
      tolerations:
        - operator: Exists
      serviceAccountName: kindnet
      containers:
        - name: kindnet-cni
          image: $KINDNET_IMAGE
          env:
            - name: HOST_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.hostIP
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
            - name: POD_SUBNET
              value: "$POD_SUBNET"
            - name: CONTROL_PLANE_ENDPOINT
              value: "$CLUSTER-control-plane:6443"
          volumeMounts:
            - name: cni-cfg
              mountPath: /etc/cni/net.d
            - name: xtables-lock
              mountPath: /run/xtables.lock
            - name: lib-modules
              mountPath: /lib/modules
              readOnly: true
          securityContext:
            privileged: false
            capabilities:
              add: ["NET_RAW", "NET_ADMIN"]
      volumes:
        - name: cni-cfg
          hostPath:
            path: /etc/cni/net.d
        - name: xtables-lock
          hostPath:
            path: /run/xtables.lock
            type: FileOrCreate
        - name: lib-modules
          hostPath:
            path: /lib/modules
YAML
kubectl apply -f "$WORK/kindnet.yaml"
kubectl wait --for=condition=Ready nodes --all --timeout=5m

log "building the nftpol image"
docker build -f "$ROOT/deploy/Containerfile" -t nftpol:latest "$ROOT"
kind load docker-image nftpol:latest --name "$CLUSTER"

log "deploying nftpol ($DEPLOY)"
kubectl apply -k "$DEPLOY"
kubectl -n nftpol-system rollout status daemonset/nftpol --timeout=5m

log "fetching the e2e binary for v$K8S_VERSION"
curl -fsSL "https://dl.k8s.io/v$K8S_VERSION/kubernetes-test-linux-amd64.tar.gz" \
    | tar -xz -C "$WORK" kubernetes/test/bin/e2e.test
E2E="$WORK/kubernetes/test/bin/e2e.test"

log "running the NetworkPolicy conformance tests (focus Netpol)"
REPORT_DIR="$ROOT/target/kind-conformance/$PROXY_MODE-$IP_FAMILY"
mkdir -p "$REPORT_DIR"
status=0
"$E2E" \
    --kubeconfig="$KUBECONFIG" \
    --provider=local \
    --ginkgo.focus="Netpol" \
    --ginkgo.timeout=3h \
    --ginkgo.no-color \
    --report-dir="$REPORT_DIR" \
    >"$REPORT_DIR/e2e.log" 2>&1 || status=$?

log "summary ($PROXY_MODE, $IP_FAMILY); full log: $REPORT_DIR/e2e.log"
grep -E '^\[FAIL\]|^Ran [0-9]+ of [0-9]+ Specs|^(SUCCESS|FAIL)!|Passed \| [0-9]+ Failed' "$REPORT_DIR/e2e.log" | sort -u || true

if [[ "$CNP" == true ]]; then
    log "fetching the network-policy-api $NPAPI_VERSION conformance suite"
    module_dir=$(cd "$WORK" && go mod download -json "sigs.k8s.io/network-policy-api@$NPAPI_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d "$module_dir" ]] || { echo "could not download network-policy-api $NPAPI_VERSION" >&2; exit 1; }
    # The module cache is read-only; the suite runs from a writable copy.
    cp -r "$module_dir" "$WORK/network-policy-api"
    # The report's required implementation fields; override for a report
    # you submit upstream.
    REPORT_URL=${CNP_REPORT_URL:-$(git -C "$ROOT" remote get-url origin 2>/dev/null || echo "file://$ROOT")}
    REPORT_CONTACT=${CNP_REPORT_CONTACT:-$(git -C "$ROOT" config user.email 2>/dev/null || echo "$USER")}
    chmod -R u+w "$WORK/network-policy-api"

    log "running the ClusterNetworkPolicy conformance profile (+ $CNP_FEATURES)"
    cnp_status=0
    (cd "$WORK/network-policy-api" && go test -v ./conformance \
        -run '^TestConformanceProfiles$' -timeout 60m -args \
        --conformance-profiles=ClusterNetworkPolicy \
        --supported-features="$CNP_FEATURES" \
        --organization=nftpol --project=nftpol \
        --url="$REPORT_URL" --version="$(git -C "$ROOT" describe --always --dirty)" \
        --contact="$REPORT_CONTACT" \
        --additional-info="scripts/kind-conformance.sh --cnp ($PROXY_MODE, $IP_FAMILY, Kubernetes v$K8S_VERSION)" \
        --report-output="$REPORT_DIR/cnp-conformance-report.yaml") \
        >"$REPORT_DIR/cnp-conformance.log" 2>&1 || cnp_status=$?
    log "ClusterNetworkPolicy summary; full log: $REPORT_DIR/cnp-conformance.log"
    grep -E '^(--- FAIL|--- PASS|FAIL|ok|PASS)' "$REPORT_DIR/cnp-conformance.log" | sort | uniq -c || true
    if [[ "$status" -eq 0 ]]; then
        status=$cnp_status
    fi
fi
kubectl -n nftpol-system logs daemonset/nftpol --tail=5 || true
exit "$status"
