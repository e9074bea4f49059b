"""Whole videos on one or more GPUs per parallel layout (issue 20): process start to MP4 written, per phase.

One process per GPU under torchrun, as a job runs: the real 2B (or 14B) architecture with random bf16
weights (bench.py's models), one 93-frame video (or a batch) at 35 steps, guidance 7, one seed.

    export BENCH_T0=$(date +%s.%N)   # the shell's clock when the job starts: "launch" is measured from it
    torchrun --standalone --nproc_per_node 1 bench/multi_gpu_video.py --layout single  --name single --save_reference REF
    torchrun --standalone --nproc_per_node 2 bench/multi_gpu_video.py --layout ulysses --name u2  --reference REF
    torchrun --standalone --nproc_per_node 2 bench/multi_gpu_video.py --layout cfg     --name cfg2 --reference REF
    torchrun --standalone --nproc_per_node 2 bench/multi_gpu_video.py --layout data --videos 4 --res 480 --name dp2

Layouts: `single` (one process, our exact-mode defaults: FA4, fused forward, compiled blocks, batch split),
`ulysses` (context parallel over every rank), `cfg` (CFG parallel, Ulysses over what is left), `data`
(every rank makes whole videos of the batch). `--no-cp_fused` runs the parallel transformer as it was
before issue 20 (stock blocks, FA4 through the attention processors, not compiled).

Phases, on the group leader (the rank that decodes and writes): launch (shell clock to this file's first
line: torchrun and the interpreter), import, init (process groups), load (models built on the GPU with
random weights, wrapped: a real run reads a checkpoint instead), then per video text_encoder (T5 and the
share with the group), vae_encode, sampling (the 35 steps; the first DiT forward's compile inside it,
also reported apart), vae_decode, write (MP4). `total_s` is the shell clock to the last MP4 written.
With `--reference DIR` the leader compares its latents and frames with the one-GPU video of the same
seed that `--save_reference DIR` left there. `--smoke`: tiny models on CPU processes (gloo), every path.
"""

from __future__ import annotations

import time

T_FILE = time.time()  # before any heavy import

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

import bench  # noqa: E402  (models, inputs, comparisons)
from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: E402

from v2w_runtime import perf  # noqa: E402
from v2w_runtime.parallel import init_parallel, parallelize_pipeline  # noqa: E402
from v2w_runtime.pipeline import Video2WorldPipeline  # noqa: E402
from v2w_runtime.tiny.inputs import scene_frames  # noqa: E402
from v2w_runtime.tiny.video2world import build_tokenizer  # noqa: E402

T_IMPORTED = time.time()
LAYOUTS = {"single": (None, None), "ulysses": (None, False), "cfg": (None, True), "data": (None, None)}


def sync() -> None:
    if bench.DEV.type == "cuda":
        torch.cuda.synchronize(bench.DEV)


class Clock:
    """Named durations (device synchronized at both ends) and step/forward stamps of one video."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.forwards: list[float] = []
        self.steps: list[float] = []
        self._t0 = 0.0

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            sync()
            t0 = time.time()
            out = fn(*args, **kwargs)
            sync()
            self.phases[name] = self.phases.get(name, 0.0) + time.time() - t0
            self.phases[f"{name}_end"] = time.time()
            return out

        return timed

    def hook(self, module: torch.nn.Module):
        def pre(*_):
            sync()
            self._t0 = time.time()

        def post(*_):
            sync()
            self.forwards.append(time.time() - self._t0)

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def step(self, i: int, total: int) -> None:
        sync()
        self.steps.append(time.time())


def write_video(frames: np.ndarray, path: Path, fps: int = 16) -> str:
    """The runtime's MP4 writer (H.264 through imageio-ffmpeg) where it imports, else OpenCV's MPEG-4 writer."""
    try:
        from v2w_runtime.outputs import write_mp4

        write_mp4(frames, path, fps)
        return "imageio-ffmpeg libx264 (the runtime's writer)"
    except ImportError:
        import cv2

        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
        writer.release()
        return "opencv mp4v (imageio-ffmpeg is not installed here)"


def build(args, ctx):
    """The pipeline on this rank's device, split over its group, with the speed switches of the layout."""
    t5, vae, dit = bench.build_t5(), bench.build_vae(), bench.build_dit(args.size)
    if bench.DEV.type == "cpu":  # the smoke's tiny models are built on the CPU already
        t5, vae, dit = (m.to(bench.DEV) for m in (t5, vae, dit))
    scheduler = FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True, shift=1.0)
    pipe = Video2WorldPipeline(t5, build_tokenizer(), dit, vae, scheduler)
    parallelize_pipeline(pipe, ctx)
    if ctx.layout.group_size > 1:
        options = perf.PerfOptions(split_batch=False, fused=args.cp_fused, compile=args.cp_fused)
    else:
        options = perf.PerfOptions()  # exact mode as a run gets it by default
    wrapper = perf.accelerate(pipe, options)
    return pipe, wrapper


def compare(latents: torch.Tensor, frames: np.ndarray, ref: Path, seed: int) -> dict:
    lat_f, frames_f = ref / f"latents-seed{seed}.pt", ref / f"frames-seed{seed}.npy"
    if not lat_f.exists():
        return {"note": f"no one-GPU reference for seed {seed}"}
    ref_lat = torch.load(lat_f).float()
    ref_frames = np.load(frames_f)
    return {"latents": bench.diff(latents.float().cpu(), ref_lat), "latent_scale_mean_abs": round(float(ref_lat.abs().mean()), 4),
            "frames_0_255": bench.diff(frames, ref_frames), "frames_psnr_db": bench._round(bench.psnr(frames, ref_frames)),
            "frames_equal": bool(np.array_equal(frames, ref_frames))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=sorted(LAYOUTS), required=True)
    p.add_argument("--name", required=True, help="names the JSON and the MP4 files")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/out")))
    p.add_argument("--size", default="2B", choices=["2B", "14B"])
    p.add_argument("--res", default="720", choices=["480", "720"])
    p.add_argument("--steps", type=int, default=bench.STEPS)
    p.add_argument("--videos", type=int, default=1, help="a batch: videos seed, seed+1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cp_fused", action=argparse.BooleanOptionalAction, default=True,
                   help="parallel layouts: fused blocks + compile (issue 20); --no-cp_fused: the path before it")
    p.add_argument("--reference", type=Path, default=None, help="folder of a one-GPU run's --save_reference")
    p.add_argument("--save_reference", type=Path, default=None, help="keep latents (float32) and frames here")
    p.add_argument("--video_dir", type=Path, default=None, help="where the MP4 files go (default: --out)")
    p.add_argument("--smoke", action="store_true", help="tiny models on CPU processes (gloo)")
    args = p.parse_args()

    t0 = float(os.environ.get("BENCH_T0", T_FILE))
    if args.smoke:
        import exact  # its smoke switches: tiny models, "GPU" paths on the CPU, a stand-in FA4

        exact.smoke_setup()
        args.steps = min(args.steps, bench.STEPS)
    elif not torch.cuda.is_available():
        sys.exit("multi_gpu_video.py needs CUDA GPUs (or --smoke)")
    perf.use_compile_caches()
    torch._dynamo.config.recompile_limit = 64

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cp, cfg = LAYOUTS[args.layout]
    if args.layout == "ulysses":
        cp = world
    if args.layout == "single" and world != 1:
        sys.exit("--layout single runs one process")
    heads = bench.DIT_CONFIGS[args.size]["num_attention_heads"] if not args.smoke else 2
    ctx = init_parallel(world, num_heads=heads, guidance=True, num_videos=args.videos, context_parallel_size=cp,
                        cfg_parallel=cfg, device="cpu" if args.smoke else "cuda")
    layout = ctx.layout
    if args.layout == "data" and layout.group_size != 1 or args.layout in ("ulysses", "cfg") and layout.group_size != world:
        sys.exit(f"--layout {args.layout} with {world} processes and {args.videos} videos gave {layout}")
    bench.DEV = ctx.device
    t_init = time.time()

    leader = layout.is_group_leader
    args.out.mkdir(parents=True, exist_ok=True)
    video_dir = args.video_dir or args.out
    video_dir.mkdir(parents=True, exist_ok=True)
    pipe, wrapper = build(args, ctx)
    sync()
    t_load = time.time()
    print(f"[rank {layout.rank}] {layout}, applied {wrapper.applied}, split_batch {wrapper.split_batch}, "
          f"load {t_load - t_init:.1f} s", flush=True)
    h, w = bench.RESOLUTIONS[args.res]
    frames_in = scene_frames(1, h, w, seed=4)

    videos = []
    for index in layout.shard(list(range(args.videos))):
        seed = args.seed + index
        clock = Clock()
        encode_prompt, encode_cond = pipe.encode_prompt, pipe.encode_conditioning
        pipe.encode_prompt = clock.wrap("text_encoder", encode_prompt)
        pipe.encode_conditioning = clock.wrap("vae_encode", encode_cond)
        hooks = clock.hook(wrapper.inner)
        sync()
        start = time.time()
        with torch.no_grad():
            latents = pipe(frames_in, bench.PROMPT, bench.NEGATIVE, h, w, bench.FRAMES, args.steps, bench.GUIDANCE, 16,
                           torch.Generator("cpu").manual_seed(seed), callback=clock.step, decode=False)
        sync()
        sampled = time.time()
        for hook in hooks:
            hook.remove()
        pipe.encode_prompt, pipe.encode_conditioning = encode_prompt, encode_cond
        ph = clock.phases
        record = {"seed": seed, "rank": layout.rank, "start_s": round(start - t0, 2),
                  "text_encoder_s": round(ph.get("text_encoder", 0.0), 3), "vae_encode_s": round(ph.get("vae_encode", 0.0), 3),
                  "sampling_s": round(sampled - ph["vae_encode_end"], 2),
                  "before_text_encoder_s": round(ph["text_encoder_end"] - ph["text_encoder"] - start, 3)}
        fw = clock.forwards
        if fw:
            median = statistics.median(fw)
            record.update(forwards=len(fw), first_forward_s=round(fw[0], 2), median_forward_s=round(median, 4),
                          compile_overhead_s=round(max(fw[0] - median, 0.0), 2))
        if len(clock.steps) > 1:
            record["median_step_s"] = round(statistics.median(np.diff(clock.steps).tolist()), 4)
        if leader:
            t = time.time()
            with torch.no_grad():
                frames = pipe.decode(latents)
            sync()
            record["vae_decode_s"] = round(time.time() - t, 2)
            t = time.time()
            path = video_dir / f"{args.name}-seed{seed}.mp4"
            record["writer"] = write_video(frames, path)
            record["write_s"] = round(time.time() - t, 2)
            record["mp4_bytes"] = path.stat().st_size
            record["end_s"] = round(time.time() - t0, 2)  # MP4 written, from the shell's start
            if args.save_reference:
                args.save_reference.mkdir(parents=True, exist_ok=True)
                torch.save(latents.float().cpu(), args.save_reference / f"latents-seed{seed}.pt")
                np.save(args.save_reference / f"frames-seed{seed}.npy", frames)
            if args.reference:
                record["vs_one_gpu"] = compare(latents, frames, args.reference, seed)
        if bench.DEV.type == "cuda":
            record["peak_gib"] = round(torch.cuda.max_memory_allocated(bench.DEV) / 2**30, 2)
            torch.cuda.reset_peak_memory_stats(bench.DEV)
        videos.append(record)
        print(f"[rank {layout.rank}] {json.dumps(record)}", flush=True)

    ctx.barrier()
    t_end = time.time()
    rank_info = {"rank": layout.rank, "launch_s": round(T_FILE - t0, 2), "import_s": round(T_IMPORTED - T_FILE, 2),
                 "init_s": round(t_init - T_IMPORTED, 2), "load_s": round(t_load - t_init, 2), "videos": videos}
    everyone = ctx.gather_to_leader(rank_info)
    if layout.is_global_leader:
        ends = [v["end_s"] for r in everyone for v in r["videos"] if "end_s" in v]
        total = max(ends) if ends else round(t_end - t0, 2)
        me = everyone[0]
        n = sum(1 for r in everyone for v in r["videos"] if "end_s" in v)
        result = {
            "name": args.name, "layout": args.layout, "env": bench.env_info() if not args.smoke else {"gpu": "cpu (smoke)"},
            "gpus": world, "groups": layout.num_groups, "group_size": layout.group_size, "cp_size": layout.cp_size,
            "cfg_parallel": layout.cfg_parallel, "cp_fused": args.cp_fused if layout.group_size > 1 else None,
            "applied": wrapper.applied, "split_batch": wrapper.split_batch, "size": args.size, "res": args.res,
            "frames": bench.FRAMES, "steps": args.steps, "guidance": bench.GUIDANCE, "videos": args.videos,
            "total_s": total, "videos_per_hour": round(n / total * 3600, 2) if total else None,
            "leader_phases_s": {k: me[k] for k in ("launch_s", "import_s", "init_s", "load_s")},
            "ranks": everyone, "date": time.strftime("%Y-%m-%d"),
        }
        (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"RESULT {args.name}: total {total} s, {json.dumps(result['leader_phases_s'])}", flush=True)
    ctx.close()


if __name__ == "__main__":
    main()
