#!/usr/bin/env bash
# The demo command of the README: installs what it needs, then runs the main job end to end locally.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash hack/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 hack/demo.py "$@"
