#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh machine, and nothing twice:
# Debian's Chromium (browser tests of the HTML reports), the Python project with its extras, and the
# local stack's binaries (kube-apiserver, etcd, kube-controller-manager, kubectl, helm, MinIO, the Kubeflow
# training-operator; Kueue, JobSet and Kubeflow Trainer v2 in the background) built from the Go module proxy into a
# cache outside the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "[setup] $*" >&2; }

if ! command -v chromium >/dev/null 2>&1; then
  log "installing Debian's chromium (headless browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi

if ! python3 -c "import v2w_operator, v2w_runtime, kopf, torch, diffusers, pytest" 2>/dev/null \
   || [[ pyproject.toml -nt "${V2W_CACHE_DIR:-$HOME/.cache/video2world}/pip-stamp" ]] \
   || [[ constraints.txt -nt "${V2W_CACHE_DIR:-$HOME/.cache/video2world}/pip-stamp" ]]; then
  log "installing the project and its extras (torch is large the first time; pip's cache keeps it)"
  # The same pinned versions as the images (constraints.txt, written by hack/constraints.py).
  python3 -m pip install -q --disable-pip-version-check --constraint constraints.txt -e ".[operator,runtime,dev]"
  mkdir -p "${V2W_CACHE_DIR:-$HOME/.cache/video2world}" && touch "${V2W_CACHE_DIR:-$HOME/.cache/video2world}/pip-stamp"
fi

log "building (or reusing) the local stack's binaries"
bash hack/localstack/build.sh >/dev/null
