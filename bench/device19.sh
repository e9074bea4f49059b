#!/usr/bin/env bash
# Issue 19's GPU measurements on a lent device machine, in stages that each fit one 10-minute command.
# The machine has torch but not diffusers, transformers, pydantic or FlashAttention-4: their wheels travel
# with the call (folders .bench_whl and .fa4/whl; the 92 MB CuTe DSL cu13 wheel unpacked and xz-compressed
# in .fa4/cu13, alone in the first call because of the size limit). Stages after `unpack` need the same
# machine still warm (its /tmp): the unpacked libraries, the compile caches and the saved latents live there.
#
#   bash bench/device19.sh unpack    # carry .fa4/cu13
#   bash bench/device19.sh a         # carry .bench_whl .fa4/whl: kernels, 2B forwards + profiles, 480p videos
#   bash bench/device19.sh b         # 720p videos, stock and ours (exact), same process
#   bash bench/device19.sh c         # 720p fast mode against b's latents; 14B 720p per-step, extrapolated
# After the cross-attention went back to SDPA (another machine, so stock is measured again alongside):
#   bash bench/device19.sh d1        # 720p videos, stock and ours, same process
#   bash bench/device19.sh d2        # profiles: 2B 720p ours; 14B 720p stock and ours (forward, MFU)
set -euo pipefail
stage=$1
site=/tmp/site
if [ "$stage" = unpack ]; then
  mkdir -p /tmp/cu13 && xz -dc .fa4/cu13/cu13.tar.xz | tar -x -C /tmp/cu13
  nvidia-smi --query-gpu=name,uuid,memory.total --format=csv
  python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_capability())"
  exit 0
fi
if [ ! -d "$site/flash_attn" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .bench_whl/*.whl .fa4/whl/*.whl
  if [ -d /tmp/cu13/nvidia_cutlass_dsl ]; then cp -a /tmp/cu13/. "$site/"; else echo "no cu13 CuTe DSL libraries here"; fi
fi
# --target installs skip .pth files: add the CuTe DSL's package folder by hand
export PYTHONPATH="$site:$site/nvidia_cutlass_dsl/dsl_packages:$PWD/api:$PWD/runtime"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 V2W_CACHE_DIR=/tmp/v2w-cache
nvidia-smi --query-gpu=name,uuid --format=csv,noheader
run() { python3 bench/exact.py --out "$OUT" "$@" 2>&1 | grep -v "it/s]" | grep -v "Warning" || true; }
case "$stage" in
  a)
    run --phase kernels
    run --phase forwards
    run --phase video --res 480 --runs ours stock cache3
    ;;
  b)
    run --phase video --res 720 --runs ours stock --save
    mkdir -p /tmp/v2w-lat && cp "$OUT"/latents-720-*.pt /tmp/v2w-lat/
    ;;
  c)
    lat=/tmp/v2w-lat; [ -d "$lat" ] || lat=.bench_lat
    run --phase video --res 720 --runs cache5 cache6 --load "$lat" --tag fast
    run --phase video14b --runs stock ours
    ;;
  d1)
    run --phase video --res 720 --runs ours stock --tag cross
    ;;
  d2)
    run --phase forwards --res_list 720 --variants ours --repeats 1 --tag cross
    run --phase forwards --size 14B --res_list 720 --variants stock ours --repeats 1
    ;;
esac
ls -la "$OUT"
