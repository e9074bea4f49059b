#!/usr/bin/env bash
# Issue 20's GPU measurements on a lent 2-GPU machine (whole videos per parallel layout), in stages that each
# fit one 10-minute command on the same warm machine. As in device19.sh, FA4's CuTe DSL cu13 libraries travel
# unpacked and xz-compressed alone in the first call (.fa4/cu13), the wheels in the next calls (.bench_whl,
# .fa4/whl); /tmp of the warm machine keeps the installed packages and the one-GPU reference video.
#
#   bash bench/device20.sh unpack   # carry .fa4/cu13
#   bash bench/device20.sh a        # carry .bench_whl .fa4/whl: 1 GPU (ours), then CFG parallel 2 (fused + compiled)
#   bash bench/device20.sh b        # Ulysses 2 (fused + compiled); both layouts as before issue 20, 10 steps
#   bash bench/device20.sh c        # data parallelism: a batch of 4 videos at 480p on 1 GPU and on 2
#   bash bench/device20.sh d        # the 14B at 720p on 1 GPU, $STEPS14 steps (default 4: a 35-step 14B video
#   bash bench/device20.sh e        #   is ~13 min); then CFG parallel 2 and Ulysses 2, same steps (report20.py
#                                   #   extrapolates to 35 steps by the median step, as for "before")
# On a 4-GPU machine (nvidia-h100-x4), after unpack:
#   bash bench/device20.sh f        # 1 GPU (ours, 2B 720p), then CFG parallel x Ulysses 2 on 4 GPUs
#   bash bench/device20.sh g        # Ulysses 4 on 4 GPUs; a batch of 2 at 480p on 1 GPU (the per-video rate)
#   bash bench/device20.sh h        # data parallelism: a batch of 8 at 480p on 4 GPUs
#   bash bench/device20.sh d; bash bench/device20.sh i   # the 14B: 1 GPU, then CFG x Ulysses 2 and Ulysses 4
#
# Every process starts with a cold compile cache of its own (the first forward's compile is reported apart).
# The figures of results/2026-11-26-issue20-2x-h200.md ran this way (asked for as nvidia-h100-x2, started as 2 x H200).
set -uo pipefail
stage=$1
site=/tmp/site
work=${WORK:-/tmp/v2w20}
# NVLink multicast stays off on these machines (it can take the host's GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ "$stage" = unpack ]; then
  mkdir -p /tmp/cu13 && xz -dc .fa4/cu13/cu13.tar.xz | tar -x -C /tmp/cu13
  nvidia-smi --query-gpu=name,uuid,memory.total,driver_version --format=csv
  nvidia-smi topo -m
  python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count(), torch.cuda.get_device_capability())"
  command -v ffmpeg || echo "no ffmpeg binary"
  exit 0
fi
smoke=()  # SMOKE=1: the same stages with tiny models on CPU processes (a check of this script, no GPU)
if [ -n "${SMOKE:-}" ]; then smoke=(--smoke); fi
if [ -z "${SMOKE:-}" ] && [ ! -d "$site/flash_attn" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .bench_whl/*.whl .fa4/whl/*.whl
  if [ -d /tmp/cu13/nvidia_cutlass_dsl ]; then cp -a /tmp/cu13/. "$site/"; else echo "no cu13 CuTe DSL libraries here"; fi
fi
export PYTHONPATH="$site:$site/nvidia_cutlass_dsl/dsl_packages:$PWD/api:$PWD/runtime"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$work/videos"
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader || true
# video NAME GPUS SECONDS ARGS...: one job (killed after SECONDS), timed from its start (BENCH_T0)
video() {
  local name=$1 n=$2 limit=$3 t0 rc
  shift 3
  t0=$(date +%s.%N)
  BENCH_T0=$t0 V2W_CACHE_DIR="$work/cache-$name" timeout "$limit" \
    python3 -m torch.distributed.run --standalone --nproc_per_node "$n" bench/multi_gpu_video.py \
    --name "$name" --out "$OUT" --video_dir "$work/videos" "${smoke[@]}" "$@" >"$work/$name.log" 2>&1
  rc=$?
  echo "== $name: rc $rc, shell $(python3 -c "import time; print(round(time.time() - $t0, 1))") s"
  grep -E "^\[rank|^RESULT|applied|Error|error:" "$work/$name.log" | cut -c1-1500
  cp "$work/$name.log" "$OUT/" 2>/dev/null || true
}
case "$stage" in
  a)
    CUDA_VISIBLE_DEVICES=0 video single 1 300 --layout single --save_reference "$work/ref"
    video cfg2 2 240 --layout cfg --reference "$work/ref"
    ;;
  b)
    video u2 2 250 --layout ulysses --reference "$work/ref"
    video u2-before 2 150 --layout ulysses --no-cp_fused --steps 10
    video cfg2-before 2 150 --layout cfg --no-cp_fused --steps 10
    ;;
  c)
    CUDA_VISIBLE_DEVICES=0 video dp1-480 1 320 --layout single --res 480 --videos 4 --save_reference "$work/ref480"
    video dp2-480 2 230 --layout data --res 480 --videos 4 --reference "$work/ref480"
    ;;
  d)
    CUDA_VISIBLE_DEVICES=0 video single14 1 400 --size 14B --steps "${STEPS14:-4}" --layout single --save_reference "$work/ref14"
    ;;
  e)
    video cfg2-14 2 280 --size 14B --steps "${STEPS14:-4}" --layout cfg --reference "$work/ref14"
    video u2-14 2 280 --size 14B --steps "${STEPS14:-4}" --layout ulysses --reference "$work/ref14"
    ;;
  f)
    CUDA_VISIBLE_DEVICES=0 video single 1 300 --layout single --save_reference "$work/ref"
    video cfg4 4 220 --layout cfg --reference "$work/ref"
    ;;
  g)
    video u4 4 220 --layout ulysses --reference "$work/ref"
    CUDA_VISIBLE_DEVICES=0 video dp1-480 1 300 --layout single --res 480 --videos 2 --save_reference "$work/ref480"
    ;;
  i)
    video cfg4-14 4 280 --size 14B --steps "${STEPS14:-4}" --layout cfg --reference "$work/ref14"
    video u4-14 4 280 --size 14B --steps "${STEPS14:-4}" --layout ulysses --reference "$work/ref14"
    ;;
  h)
    video dp4-480 4 300 --layout data --res 480 --videos 8 --reference "$work/ref480"
    ;;
esac
ls -la "$OUT"
