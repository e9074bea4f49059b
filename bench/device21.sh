#!/usr/bin/env bash
# Issue 21's GPU measurements (cold start) on one lent H100/H200, in one call of at most 9 minutes:
#
#   bash bench/device21.sh            # carry .bench_whl (and .fa4/whl, as device20.sh): write the 2B tree, loads
#                                     # (earlier vs direct, page cache dropped and kept), the runtime twice
#                                     # (cold, then warm compile cache); results in $OUT/cold_start
#   STAGE=write|load|first_step bash bench/device21.sh   # one phase at a time on the same warm machine
#                                     # (the tree stays in /tmp/v2w21 between them)
#   SMOKE=1 bash bench/device21.sh    # the same on the CPU with tiny models (a check of this script)
#
# Wheels: as device19/20.sh, the runtime's wheels travel in .bench_whl (FA4's in .fa4/whl, its cu13 CuTe DSL
# libraries unpacked by `bash bench/device20.sh unpack` in an earlier call); without FA4 the runtime's `auto`
# attention is SDPA, which the report names (speed_applied).
#   bash bench/device21.sh unpack     # carry .dev21 (ffmpeg.xz: imageio-ffmpeg's static ffmpeg, xz-compressed, and
#                                     # imageio_ffmpeg/ without its binary): the runtime writes its MP4 through it
set -uo pipefail
site=/tmp/site
if [ "${1:-}" = unpack ]; then
  mkdir -p /tmp/ffmpeg && xz -dc .dev21/ffmpeg.xz > /tmp/ffmpeg/ffmpeg && chmod +x /tmp/ffmpeg/ffmpeg
  cp -r .dev21/py /tmp/ffmpeg/py && /tmp/ffmpeg/ffmpeg -hide_banner -version | head -1
  python3 -c "import boto3" 2>&1 | tail -1; python3 -c "import PIL, numpy, safetensors; print('PIL numpy safetensors ok')" 2>&1 | tail -1
  exit 0
fi
if [ -x /tmp/ffmpeg/ffmpeg ]; then export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg/ffmpeg PYTHONPATH="/tmp/ffmpeg/py${PYTHONPATH:+:$PYTHONPATH}"; fi
OUT=${OUT:-bench/out}
if [ -z "${SMOKE:-}" ] && [ -d .bench_whl ] && [ ! -d "$site/diffusers" ]; then
  extra=(); if [ -d .fa4/whl ]; then extra=(.fa4/whl/*.whl); fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .bench_whl/*.whl "${extra[@]}"
  if [ -d /tmp/cu13/nvidia_cutlass_dsl ]; then cp -a /tmp/cu13/. "$site/"; fi
fi
export PYTHONPATH="$site:$site/nvidia_cutlass_dsl/dsl_packages:$PWD/api:$PWD/runtime${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,uuid,memory.total --format=csv,noheader 2>/dev/null || true
df -h /tmp | tail -1; free -g | head -2
args=(--size "${SIZE:-2B}" --out "$OUT/cold_start${SIZE:+-$SIZE}" --work /tmp/v2w21)
if [ -n "${SMOKE:-}" ]; then args=(--smoke --out "$OUT/cold_start-smoke" --work /tmp/v2w21-smoke); fi
case "${STAGE:-all}" in
  all) ;;
  write) args+=(--phases write --keep_tree) ;;
  load) args+=(--phases load --keep_tree) ;;
  first_step) args+=(--phases first_step) ;;
esac
timeout 540 python3 bench/cold_start.py "${args[@]}"
rc=$?
echo "== cold_start.py: rc $rc"
ls -la "$OUT"/cold_start* 2>/dev/null
exit $rc
