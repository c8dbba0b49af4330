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
# Needs: docker, kind, kubectl, curl, tar. Not runnable without Docker.
#
# Usage: scripts/kind-conformance.sh [--proxy-mode iptables|nftables|ipvs]
#            [--ip-family ipv4|ipv6|dual] [--name NAME] [--k8s-version X.Y.Z]
#            [--keep]
set -euo pipefail

PROXY_MODE=iptables
IP_FAMILY=ipv4
CLUSTER=nftpol-conformance
K8S_VERSION=1.34.0
KEEP=false
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

for tool in docker kind kubectl curl tar; do
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

log "deploying nftpol"
kubectl apply -k "$ROOT/deploy/"
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
kubectl -n nftpol-system logs daemonset/nftpol --tail=5 || true
exit "$status"
