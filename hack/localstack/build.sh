#!/usr/bin/env bash
# Builds the local stack's binaries from the Go module proxy into a cache outside the repository:
# kube-apiserver, kube-controller-manager, kubectl (Kubernetes $K8S_VERSION), etcd, helm, MinIO and the Kubeflow
# training-operator (the PyTorchJob controller, with its CRD).
# A binary that is already in the cache is not built again. Prints the binary folder on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4          # the etcd that Kubernetes 1.34 pins
HELM_VERSION=v3.19.5         # built against client-go v0.34
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
TRAINING_OPERATOR_VERSION=v1.9.3  # the PyTorchJob controller and its published CRD

cache=${V2W_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/video2world}
bin=$cache/localstack/bin
stamps=$cache/localstack/stamps
mkdir -p "$bin" "$stamps"
# Several test runs may start at once: the first builds, the others wait for it.
exec 9>"$cache/localstack/.build.lock"
flock 9
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
export CGO_ENABLED=0

log() { echo "[localstack/build] $*" >&2; }

# built NAME VERSION: true when NAME at VERSION is already in the cache.
built() { [[ -x $bin/$1 && -f $stamps/$1 && $(cat "$stamps/$1") == "$2" ]]; }
stamp() { echo "$2" > "$stamps/$1"; }

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
