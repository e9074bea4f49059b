#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs every test layer
# (API models, CRDs on a real kube-apiserver, runtime on tiny models, parallelism under torchrun,
# guardrail, refiner and critic, best-of-N with headless Chromium, operator end to end, Helm chart).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash hack/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 -m pytest "$@"
