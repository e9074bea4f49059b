#!/usr/bin/env bash
# Builds the local stack's binaries from the Go module proxy into a cache outside the repository:
# kube-apiserver, kube-controller-manager, kubectl (Kubernetes $K8S_VERSION), etcd, helm, MinIO and the Kubeflow
# training-operator (the PyTorchJob controller, with its CRD), Kueue (with its CRDs and webhook manifests) and
# Kubeflow Trainer v2 with JobSet (the TrainJob controller and the JobSet controller, with their CRDs and webhook
# manifests). A binary that is already in the cache is not built again. Prints the binary folder on stdout.
#
# Kueue, JobSet and Trainer are built in the background, one after the other: their cold builds take many
# minutes each and only their own tests need them, so they overlap the tests that run first. Each has its lock,
# released as soon as it is built, so the Kueue tests never wait for Trainer. Modes:
#   build.sh                 everything else in the foreground; the background build started when one is missing
#   build.sh --wait-kueue    waits for Kueue's background build (or builds Kueue now); fails when it failed
#   build.sh --wait-trainer  the same for JobSet and Trainer
#   build.sh --background    the background build itself (Kueue, then JobSet and Trainer)
set -euo pipefail
mode=${1:-}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4          # the etcd that Kubernetes 1.34 pins
HELM_VERSION=v3.19.5         # built against client-go v0.34
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
TRAINING_OPERATOR_VERSION=v1.9.3  # the PyTorchJob controller and its published CRD
KUEUE_VERSION=v0.17.0        # no replace directives; go 1.25, Kubernetes libraries v0.35
TRAINER_VERSION=v2.2.0       # Kubeflow Trainer v2 (TrainJob); go 1.25, Kubernetes libraries v0.35, no replace directives
JOBSET_VERSION=v0.11.1       # the JobSet that Trainer $TRAINER_VERSION requires (its go.mod)

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

trainer_files=$cache/localstack/trainer
trainer_log=$cache/localstack/trainer-build.log
# module_dir MODULE VERSION: the module's folder in the Go module cache (downloaded when missing).
module_dir() { (cd "$here/kube" && go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'); }
# build_trainer: JobSet's manager (the module's root package) and Trainer's (cmd/trainer-controller-manager), the
# CRDs of both and their webhook manifests, from the modules. Under the Trainer lock.
build_trainer() {
  if ! built jobset "$JOBSET_VERSION"; then
    log "building jobset $JOBSET_VERSION"
    # Built in its module folder: `go install sigs.k8s.io/jobset@...` also asks the proxy for the module's
    # version list (for deprecation notices), which the proxy may refuse.
    local dir; dir=$(module_dir sigs.k8s.io/jobset "$JOBSET_VERSION")
    (cd "$dir" && go build -ldflags "-s -w -X sigs.k8s.io/jobset/pkg/version.GitVersion=$JOBSET_VERSION" \
        -o "$bin/jobset.tmp" .)
    mv "$bin/jobset.tmp" "$bin/jobset"
    stamp jobset "$JOBSET_VERSION"
  fi
  if ! built trainer "$TRAINER_VERSION"; then
    log "building trainer $TRAINER_VERSION"
    local tmp; tmp=$(mktemp -d)
    GOBIN=$tmp go install -ldflags "-s -w" \
      "github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager@$TRAINER_VERSION"
    mv "$tmp/trainer-controller-manager" "$bin/trainer" && rmdir "$tmp"
    stamp trainer "$TRAINER_VERSION"
  fi
  fetch_trainer_manifests
}
# fetch_trainer_manifests: the CRDs and webhook manifests of both (downloads only, seconds): done in the foreground,
# so that tests that only install the CRDs never wait for the background build.
fetch_trainer_manifests() {
  if [[ ! -f $trainer_files/$TRAINER_VERSION-$JOBSET_VERSION ]]; then
    log "fetching the CRDs and webhook manifests of trainer $TRAINER_VERSION and jobset $JOBSET_VERSION"
    local tdir jdir; tdir=$(module_dir github.com/kubeflow/trainer/v2 "$TRAINER_VERSION")
    jdir=$(module_dir sigs.k8s.io/jobset "$JOBSET_VERSION")
    rm -rf "$trainer_files" && mkdir -p "$trainer_files/crds"
    cp "$tdir"/manifests/base/crds/trainer.kubeflow.org_*.yaml "$jdir"/config/components/crd/bases/jobset.x-k8s.io_*.yaml \
      "$trainer_files/crds/"
    cp "$tdir/manifests/base/webhook/manifests.yaml" "$trainer_files/trainer-webhooks.yaml"
    cp "$jdir/config/components/webhook/manifests.yaml" "$trainer_files/jobset-webhooks.yaml"
    chmod -R u+w,a+r "$trainer_files" && touch "$trainer_files/$TRAINER_VERSION-$JOBSET_VERSION"
  fi
}
trainer_ready() {
  built jobset "$JOBSET_VERSION" && built trainer "$TRAINER_VERSION" && [[ -f $trainer_files/$TRAINER_VERSION-$JOBSET_VERSION ]]
}

# wait_for NAME LOCKFILE LOGFILE BUILD READY: holds the lock (a background build holds it until it is done), then
# builds in the foreground what is still missing (the background build failed or never ran).
wait_for() {
  exec 8>"$2"; flock 8
  if ! $5; then
    [[ -f $3 ]] && { log "the background $1 build did not finish; its log:"; tail -n 30 "$3" >&2; }
    $4
  fi
  echo "$bin"
  exit 0
}

case $mode in
  --background)  # its own locks, so the other binaries' users never wait for it; each released when built
    exec 8>"$cache/localstack/.kueue.lock" 7>"$cache/localstack/.trainer.lock"
    flock 8; flock 7
    # Kueue's output also goes to its own log: the one a Kueue waiter shows when this build failed.
    if ! kueue_ready; then
      (build_kueue) 2>&1 | tee "$kueue_log" >&2 || log "the kueue build failed (see $kueue_log)"
    fi
    flock -u 8; exec 8>&-
    build_trainer
    exit 0 ;;
  --wait-kueue) wait_for Kueue "$cache/localstack/.kueue.lock" "$kueue_log" build_kueue kueue_ready ;;
  --wait-trainer) wait_for Trainer "$cache/localstack/.trainer.lock" "$trainer_log" build_trainer trainer_ready ;;
  "") ;;
  *) echo "usage: build.sh [--wait-kueue | --wait-trainer | --background]" >&2; exit 2 ;;
esac

# Several test runs may start at once: the first builds, the others wait for it.
exec 9>"$cache/localstack/.build.lock"
flock 9

fetch_trainer_manifests

if ! kueue_ready || ! trainer_ready; then
  # Detached and niced (the tests it overlaps keep the CPU), holding both locks before this script returns.
  # Skipped when another build holds either lock: a waiter builds what is missing itself.
  exec 8>"$cache/localstack/.kueue.lock" 7>"$cache/localstack/.trainer.lock"
  if flock -n 8 && flock -n 7; then
    log "building kueue, jobset and trainer in the background (logs: $kueue_log, $trainer_log)"
    setsid nice -n 10 bash "${BASH_SOURCE[0]}" --background 7>&- 8>&- 9>&- >"$trainer_log" 2>&1 < /dev/null &
    # The child takes the locks itself (Kueue's first): hand over by waiting until it holds the second.
    flock -u 8; flock -u 7
    for _ in $(seq 100); do flock -n 7 || break; flock -u 7; sleep 0.1; done
  fi
  exec 8>&- 7>&-
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
