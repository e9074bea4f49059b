#!/usr/bin/env bash
# Builds the local stack's binaries from the Go module proxy into a cache outside the repository:
# kube-apiserver, kube-controller-manager, kubectl (Kubernetes $K8S_VERSION), etcd, helm, MinIO and the Kubeflow
# training-operator (the PyTorchJob controller, with its CRD), and Kueue (with its CRDs and webhook manifests).
# A binary that is already in the cache is not built again. Prints the binary folder on stdout.
#
# Kueue is built in the background: its cold build takes many minutes (see KUEUE_VERSION) and only the Kueue
# tests need it, so it overlaps the tests that run first. Modes:
#   build.sh               everything else in the foreground; Kueue started in the background when missing
#   build.sh --wait-kueue  waits for that background build (or builds Kueue now); fails when the build failed
#   build.sh --kueue       the background build itself
set -euo pipefail
mode=${1:-}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4          # the etcd that Kubernetes 1.34 pins
HELM_VERSION=v3.19.5         # built against client-go v0.34
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
TRAINING_OPERATOR_VERSION=v1.9.3  # the PyTorchJob controller and its published CRD
KUEUE_VERSION=v0.17.0        # no replace directives; go 1.25, Kubernetes libraries v0.35

cache=${V2W_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/video2world}
bin=$cache/localstack/bin
stamps=$cache/localstack/stamps
mkdir -p "$bin" "$stamps"
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
export CGO_ENABLED=0

log() { echo "[localstack/build] $*" >&2; }

# built NAME VERSION: true when NAME at VERSION is already in the cache.
built() { [[ -x $bin/$1 && -f $stamps/$1 && $(cat "$stamps/$1") == "$2" ]]; }
stamp() { echo "$2" > "$stamps/$1"; }

kueue_files=$cache/localstack/kueue
kueue_log=$cache/localstack/kueue-build.log
# build_kueue: the manager (cmd/kueue), its CRDs and its webhook manifests, from the module. Under the Kueue lock.
build_kueue() {
  if ! built kueue "$KUEUE_VERSION"; then
    log "building kueue $KUEUE_VERSION"
    local tmp; tmp=$(mktemp -d)
    GOBIN=$tmp go install -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
      "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
    mv "$tmp/kueue" "$bin/kueue" && rmdir "$tmp"
    stamp kueue "$KUEUE_VERSION"
  fi
  if [[ ! -f $kueue_files/$KUEUE_VERSION ]]; then
    log "fetching the CRDs and webhook manifests of kueue $KUEUE_VERSION"
    local dir; dir=$(cd "$here/kube" && go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" |
                     sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    rm -rf "$kueue_files" && mkdir -p "$kueue_files/crds"
    cp "$dir"/config/components/crd/bases/kueue.x-k8s.io_*.yaml "$kueue_files/crds/"
    cp "$dir/config/components/webhook/manifests.yaml" "$kueue_files/webhooks.yaml"
    chmod -R u+w,a+r "$kueue_files" && touch "$kueue_files/$KUEUE_VERSION"
  fi
}
kueue_ready() { built kueue "$KUEUE_VERSION" && [[ -f $kueue_files/$KUEUE_VERSION ]]; }

case $mode in
  --kueue)  # the background build: its own lock, so the other binaries' users never wait for it
    exec 8>"$cache/localstack/.kueue.lock"; flock 8
    build_kueue
    exit 0 ;;
  --wait-kueue)
    exec 8>"$cache/localstack/.kueue.lock"; flock 8  # held by a background build until it ends
    if ! kueue_ready; then
      [[ -f $kueue_log ]] && { log "the background Kueue build did not finish; its log:"; tail -n 30 "$kueue_log" >&2; }
      build_kueue
    fi
    echo "$bin"
    exit 0 ;;
  "") ;;
  *) echo "usage: build.sh [--wait-kueue | --kueue]" >&2; exit 2 ;;
esac

# Several test runs may start at once: the first builds, the others wait for it.
exec 9>"$cache/localstack/.build.lock"
flock 9

if ! kueue_ready; then
  # Detached and niced (the tests it overlaps keep the CPU), holding the Kueue lock before this script returns.
  exec 8>"$cache/localstack/.kueue.lock"
  if flock -n 8; then
    log "building kueue $KUEUE_VERSION in the background (log: $kueue_log)"
    setsid nice -n 10 bash "${BASH_SOURCE[0]}" --kueue 8>&- 9>&- >"$kueue_log" 2>&1 < /dev/null &
    # The child takes the lock itself; hand over by waiting until it holds it.
    flock -u 8
    for _ in $(seq 100); do flock -n 8 || break; flock -u 8; sleep 0.1; done
  fi
  exec 8>&-
fi

if ! built kube-apiserver "$K8S_VERSION" || ! built kube-controller-manager "$K8S_VERSION" || ! built kubectl "$K8S_VERSION"; then
  log "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION (first time: many minutes)"
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  pkgs=(k8s.io/client-go/pkg/version k8s.io/component-base/version)
  ldflags="-s -w"
  for p in "${pkgs[@]}"; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean"
    ldflags+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$here/kube" && go build -ldflags "$ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  for b in kube-apiserver kube-controller-manager kubectl; do stamp "$b" "$K8S_VERSION"; done
fi

if ! built etcd "$ETCD_VERSION"; then
  log "building etcd $ETCD_VERSION"
  (cd "$here/etcd" && go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
fi

if ! built helm "$HELM_VERSION"; then
  log "building helm $HELM_VERSION"
  GOBIN=$bin go install -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  stamp helm "$HELM_VERSION"
fi

if ! built minio "$MINIO_VERSION"; then
  log "building minio $MINIO_VERSION"
  GOBIN=$bin go install -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION"
  stamp minio "$MINIO_VERSION"
fi

if ! built training-operator "$TRAINING_OPERATOR_VERSION"; then
  log "building training-operator $TRAINING_OPERATOR_VERSION"
  # Its own go.mod (go 1.23, Kubernetes libraries v0.31) and no replace directives: built as a module of its own.
  tmp=$(mktemp -d)
  GOBIN=$tmp go install -ldflags "-s -w" \
    "github.com/kubeflow/training-operator/cmd/training-operator.v1@$TRAINING_OPERATOR_VERSION"
  mv "$tmp/training-operator.v1" "$bin/training-operator" && rmdir "$tmp"
  stamp training-operator "$TRAINING_OPERATOR_VERSION"
fi

crd=$cache/localstack/crds/kubeflow.org_pytorchjobs.yaml
if [[ ! -f $crd ]]; then
  log "fetching the PyTorchJob CRD of training-operator $TRAINING_OPERATOR_VERSION"
  dir=$(cd "$here/kube" && go mod download -json "github.com/kubeflow/training-operator@$TRAINING_OPERATOR_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$(dirname "$crd")"
  cp "$dir/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" "$crd.tmp" && chmod 644 "$crd.tmp" && mv "$crd.tmp" "$crd"
fi

echo "$bin"
