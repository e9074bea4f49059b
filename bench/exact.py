"""Exact mode at the hardware's limit (issue 19): kernels, DiT forwards with profiles, whole videos, the 14B.

Same models and inputs as bench.py (real 2B/14B architectures, random bf16 weights), stock diffusers
against ours with `perf.accelerate` defaults (FlashAttention-4 where it runs, the fused forward of
`v2w_runtime/fused.py`, compiled blocks). Each phase writes `<out>/<phase>.json` after every measurement.

    python bench/exact.py --phase kernels   --out OUT   # matmul ceiling; attention SDPA vs FA4 at the Cosmos shapes
    python bench/exact.py --phase forwards  --out OUT   # 2B DiT forward variants, MFU, kernel profiles before/after
    python bench/exact.py --phase video     --out OUT --res 720 --runs ours stock --save
    python bench/exact.py --phase video     --out OUT --res 720 --runs cache5 --load OUT_OF_THE_EXACT_CALL
    python bench/exact.py --phase video14b  --out OUT   # 14B 720p: 3 steps each, per-step time, extrapolated video

`--smoke` runs every code path on a CPU with the tiny models (seconds; numbers meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

import bench  # noqa: E402  (models, inputs, timing and comparison helpers)
from v2w_runtime import fused, perf  # noqa: E402
from v2w_runtime.tiny.inputs import scene_frames  # noqa: E402

OURS = perf.PerfOptions()  # exact mode as a run gets it by default


# ----------------------------------------------------------------------------------- helpers


def sync() -> None:
    if bench.DEV.type == "cuda":
        torch.cuda.synchronize()


def timed_calls(fn, repeats: int) -> dict:
    """First call (compile, JIT) and the median of `repeats` more, wall seconds, device synchronized."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    if bench.DEV.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if bench.DEV.type == "cuda" else 0.0
    return {"seconds": statistics.median(times), "all": [round(t, 4) for t in times], "first_call_s": round(first, 2),
            "peak_gib": round(peak, 2)}


def kernel_category(name: str) -> str:
    n = name.lower()
    if n.startswith("triton_"):  # inductor's fused kernels (their names list the ops they fuse)
        return "triton (fused elementwise/norm/rope)"
    if any(s in n for s in ("flash", "fmha", "sdpa", "attention", "attn")):
        return "attention"
    if any(s in n for s in ("gemm", "nvjet", "xmma", "cublas", "cutlass", "matmul", "splitk")):
        return "gemm"
    if any(s in n for s in ("cat", "copy", "transpose", "permute", "index", "gather")):
        return "copy/cat/index"
    if any(s in n for s in ("norm", "reduce")):
        return "norm/reduce"
    return "elementwise/other"


def profile(fn, label: str) -> dict:
    """Device time per kernel category and the top kernels of one call of `fn` (already warm)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.DEV.type == "cuda" else [])
    sync()
    t0 = time.perf_counter()
    with torch_profile(activities=activities) as prof:
        fn()
        sync()
    wall = time.perf_counter() - t0
    kernels: dict[str, list] = {}
    for e in prof.key_averages():
        if bench.DEV.type == "cuda" and e.device_type != DeviceType.CUDA:
            continue
        us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0
        if bench.DEV.type != "cuda":
            us = e.self_cpu_time_total
        if us <= 0:
            continue
        kernels.setdefault(e.key, [0.0, 0])
        kernels[e.key][0] += us / 1e6
        kernels[e.key][1] += e.count
    cats: dict[str, float] = {}
    for name, (s, _) in kernels.items():
        cats[kernel_category(name)] = cats.get(kernel_category(name), 0.0) + s
    total = sum(cats.values())
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:20]
    return {
        "label": label, "wall_s_profiled": round(wall, 3), "kernel_s": round(total, 3),
        "categories_s": {k: round(v, 3) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
        "categories_share": {k: round(v / total, 3) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])} if total else {},
        "top_kernels": [{"name": n[:160], "s": round(s, 4), "calls": c, "category": kernel_category(n)} for n, (s, c) in top],
    }


def dynamo_stats() -> dict:
    from torch._dynamo.utils import counters

    return {"stats": dict(counters["stats"]), "graph_breaks": sum(counters["graph_break"].values()),
            "recompiles": sum(counters["recompiles"].values()) if "recompiles" in counters else None}


class ForwardClock:
    """Wall time of every DiT forward of a run (hooks on the module; device synchronized at each end)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.times: list[float] = []
        self._t0 = 0.0
        self._hooks = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *_):
        sync()
        self._t0 = time.perf_counter()

    def _post(self, *_):
        sync()
        self.times.append(time.perf_counter() - self._t0)

    def close(self) -> dict:
        for h in self._hooks:
            h.remove()
        if not self.times:
            return {}
        median = statistics.median(self.times)
        return {"forwards_timed": len(self.times), "first_forward_s": round(self.times[0], 2),
                "median_forward_s": round(median, 4), "compile_overhead_s": round(self.times[0] - median, 2)}


def attention_tflops(seconds: float, tokens: int, heads: int, dim: int = 128, kv_tokens: int | None = None) -> float:
    return 4 * tokens * (kv_tokens or tokens) * heads * dim / seconds / 1e12


# ------------------------------------------------------------------------------------ phases


def phase_kernels(rec: bench.Recorder, args) -> None:
    """The matmul ceiling, and attention at the Cosmos shapes: PyTorch SDPA (cuDNN) against FA4."""
    bench.matmul_ceiling(rec)
    rec.put("fa4/available", {"problem": perf.fa4_problem(bench.DEV, bench.DTYPE)})
    shapes = {"2B_720p": (84480, 16), "2B_480p": (37440, 16), "14B_720p": (84480, 40)}
    if args.smoke:
        shapes = {"tiny": (96, 2)}
    kernels = ["sdpa"] + (["fa4"] if perf.fa4_problem(bench.DEV, bench.DTYPE) is None else [])
    for shape, (tokens, heads) in shapes.items():
        g = torch.Generator(bench.DEV).manual_seed(5)
        q, k, v = (torch.randn(1, tokens, heads, 128, generator=g, device=bench.DEV, dtype=bench.DTYPE) for _ in range(3))
        outs = {}
        for kernel in kernels:
            try:
                fn = perf.attention_fn(kernel)
                with torch.no_grad():
                    r = timed_calls(lambda: outs.__setitem__(kernel, fn(q, k, v)), repeats=3)
                r["tflops"] = round(attention_tflops(r["seconds"], tokens, heads), 1)
                rec.put(f"attention/{shape}/{kernel}", r)
            except Exception as exc:
                rec.put(f"attention/{shape}/{kernel}", {"error": f"{type(exc).__name__}: {exc}"[:600]})
                traceback.print_exc()
        if "fa4" in outs and "sdpa" in outs:
            d = (outs["fa4"].float() - outs["sdpa"].float()).abs()
            rec.put(f"attention/{shape}/fa4_vs_sdpa", {"max_abs": float(d.max()), "mean_abs": float(d.mean())})
        del q, k, v, outs
        bench.free()


def phase_forwards(rec: bench.Recorder, args) -> None:
    """2B DiT forward, batch 1 (one guidance pass): stock, then each lever alone and together; profiles."""
    ceiling = rec.data["results"].get("matmul_ceiling", {}).get("tflops") or bench.matmul_ceiling(rec)
    torch._dynamo.config.recompile_limit = 64
    dit = bench.build_dit(args.size)
    cfg = dit.config
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    fa4 = "fa4" if perf.fa4_problem(bench.DEV, bench.DTYPE) is None else None
    for res in args.res_list:
        inputs = bench.dit_inputs(1, res, bench.DTYPE)
        h, w = bench.RESOLUTIONS[res]
        tokens = ((bench.FRAMES - 1) // 4 + 1) * (h // 16) * (w // 16)
        flops = bench.dit_flops(tokens, dim, cfg.num_layers, 1)
        reference = {}

        def stock():
            with perf.attention_context("sdpa"):
                reference.setdefault("out", dit(**inputs)[0])
                return reference["out"]

        variants = [("stock", stock)]
        if res == "720" or args.smoke:
            variants += [("stock_compiled", "compile-stock"), ("fused_sdpa", ("sdpa", False)),
                         ("fused_sdpa_compiled", ("sdpa", True))]
            if fa4:
                variants += [("fused_fa4", ("fa4", False))]
        if fa4:
            variants += [("ours", ("fa4", True))]
        else:
            variants += [("ours", ("sdpa", True))]
        if args.variants:
            variants = [v for v in variants if v[0] in args.variants]
        for name, how in variants:
            key = f"forward/{args.size}/{res}/{name}"
            try:
                if how == "compile-stock":
                    perf.compile_blocks(dit)

                    def fn():
                        with perf.attention_context("sdpa"):
                            return dit(**inputs)[0]
                elif callable(how):
                    fn = how
                else:
                    kernel, compiled = how
                    model = fused.FusedCosmosTransformer(dit, perf.attention_fn(kernel),
                                                         perf.attention_fn(perf.cross_kernel(kernel)))
                    if compiled:
                        perf.compile_blocks(model)
                    fn = (lambda m: lambda: m(**inputs)[0])(model)
                with torch.no_grad():
                    r = timed_calls(fn, repeats=args.repeats)
                    out = fn()
                    if name != "stock" and "out" in reference:
                        d = (out.float() - reference["out"].float()).abs()
                        r["vs_stock"] = {"max_abs": round(float(d.max()), 4), "mean_abs": round(float(d.mean()), 5),
                                         "rel_l2": round(float((out.float() - reference["out"].float()).norm()
                                                                / reference["out"].float().norm()), 5)}
                    if name in ("stock", "ours") and res == "720" or args.smoke and name in ("stock", "ours"):
                        r["profile"] = profile(fn, f"{args.size} {res}p {name}")
                r.update(tokens=tokens, tflop=round(flops / 1e12, 1), tflops=round(flops / r["seconds"] / 1e12, 1),
                         mfu=round(flops / r["seconds"] / 1e12 / ceiling, 3), dynamo=dynamo_stats())
                rec.put(key, r)
            except Exception as exc:
                rec.put(key, {"error": f"{type(exc).__name__}: {exc}"[:800]})
                traceback.print_exc()
            bench.free()
        if dit.transformer_blocks[0]._compiled_call_impl is not None:  # the next resolution starts from eager stock
            for block in dit.transformer_blocks:
                block._compiled_call_impl = None
    rec.put("compile_caches", perf.use_compile_caches())


def run_ours_timed(ours, frames, h, w, steps, seed) -> tuple[tuple, dict]:
    clock = ForwardClock(ours.transformer.inner)
    (lat, vid), r = bench.timed(lambda: bench.run_ours(ours, frames, h, w, steps, seed))
    r.update(clock.close())
    if "compile_overhead_s" in r:
        r["seconds_without_compile"] = round(r["seconds"] - max(r["compile_overhead_s"], 0.0), 2)
    return (lat, vid), r


def phase_video(rec: bench.Recorder, args) -> None:
    """Whole 2B videos (93 frames, 35 steps, guidance 7), same seed: stock, ours (exact), cacheN (fast mode)."""
    torch._dynamo.config.recompile_limit = 64
    res = args.res
    h, w = bench.RESOLUTIONS[res]
    steps = args.steps
    dit = bench.build_dit("2B")
    ours, stock = bench.build_pipelines(dit)
    frames = scene_frames(1, h, w, seed=4)
    if "stock" in args.runs:  # warm-up: CUDA/cuDNN handles and kernels, one step at a small size
        with torch.no_grad():
            bench.run_stock(stock, scene_frames(1, *bench.WARM), *bench.WARM, 1, 0)
    bench.free()
    key = f"video/2B/{res}"
    got: dict = {}
    for name in args.runs:
        if name == "stock":
            (lat, vid), r = bench.timed(lambda: bench.run_stock(stock, frames, h, w, steps, args.seed))
            r.update(steps=steps, forwards=2 * steps)
        else:
            cache = perf.StepCacheSettings(interval=int(name[5:])) if name.startswith("cache") else None
            wrapper = perf.accelerate(ours, OURS.model_copy(update={"step_cache": cache}))
            (lat, vid), r = run_ours_timed(ours, frames, h, w, steps, args.seed)
            r.update(steps=steps, forwards=wrapper.calls * (2 if wrapper.split_batch else 1), applied=wrapper.applied,
                     dynamo=dynamo_stats())
            if cache is not None:
                r["step_cache"] = cache.model_dump()
        got[name] = (lat, vid)
        if args.save:
            bench.save_latents(rec.path.parent, f"{res}-{name}", lat)
        rec.put(f"{key}/{name}", r)
        bench.compare(rec, key, got)
        bench.free()
    if args.load:
        for f in sorted(Path(args.load).glob(f"latents-{res}-*.pt")):
            name = f.stem.removeprefix(f"latents-{res}-")
            if name in got:
                continue
            lat = torch.load(f).to(bench.DEV).float()
            with torch.no_grad():
                got[name] = (lat, ours.decode(lat).astype(np.float32))
            rec.put(f"{key}/loaded/{name}", {"from": f.name, "note": "final latents of an earlier call (float16), decoded here"})
    bench.compare(rec, key, got)


def phase_video14b(rec: bench.Recorder, args) -> None:
    """14B 720p: stock and ours for a few steps each, step-end times, the 35-step video extrapolated.

    per step = median of the steps after the first; fixed = everything else but the compile (prompt, VAE
    encode, decode); video = fixed + 35 x per step.
    """
    torch._dynamo.config.recompile_limit = 64
    res = "720"
    h, w = bench.RESOLUTIONS[res]
    steps = args.steps14b
    dit = bench.build_dit("14B")
    ours, stock = bench.build_pipelines(dit)
    frames = scene_frames(1, h, w, seed=4)
    with torch.no_grad():  # warm-up of the stock path at a small size
        bench.run_stock(stock, scene_frames(1, *bench.WARM), *bench.WARM, 1, 0)
    bench.free()
    got = {}
    for name in args.runs:
        stamps: list[float] = []
        if name == "stock":
            from PIL import Image

            def keep(pipe, i, t, kw):
                sync()
                stamps.append(time.perf_counter())
                got["stock_latents"] = kw["latents"]
                return {}

            def run():
                out = stock(image=Image.fromarray(frames[0]), prompt=bench.PROMPT, negative_prompt=bench.NEGATIVE,
                            height=h, width=w, num_frames=bench.FRAMES, num_inference_steps=steps,
                            guidance_scale=bench.GUIDANCE, fps=16, generator=torch.Generator().manual_seed(args.seed),
                            output_type="np", callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"])
                return np.asarray(out.frames[0], dtype=np.float32) * 255.0
        else:
            wrapper = perf.accelerate(ours, OURS)
            clock = ForwardClock(wrapper.inner)

            def run():
                def step(i, total):
                    sync()
                    stamps.append(time.perf_counter())

                latents = ours(frames, bench.PROMPT, bench.NEGATIVE, h, w, bench.FRAMES, steps, bench.GUIDANCE, 16,
                               torch.Generator().manual_seed(args.seed), callback=step, decode=False)
                got["ours_latents"] = latents
                return ours.decode(latents).astype(np.float32)
        sync()
        torch.cuda.reset_peak_memory_stats() if bench.DEV.type == "cuda" else None
        t0 = time.perf_counter()
        with torch.no_grad():
            video = run()
        sync()
        total = time.perf_counter() - t0
        got[name] = video
        per_step = statistics.median(np.diff(stamps).tolist()) if len(stamps) > 1 else float("nan")
        r = {"steps": steps, "seconds": round(total, 2), "step_end_s": [round(s - t0, 2) for s in stamps],
             "per_step_s": round(per_step, 3), "decode_and_after_s": round(t0 + total - stamps[-1], 2),
             "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if bench.DEV.type == "cuda" else 0.0}
        first_step = stamps[0] - t0
        if name == "ours":
            r.update(clock.close(), applied=wrapper.applied, dynamo=dynamo_stats())
            compile_s = max(r.get("compile_overhead_s", 0.0), 0.0)
        else:
            compile_s = 0.0
        fixed = (first_step - per_step - compile_s) + (t0 + total - stamps[-1])
        r.update(fixed_s=round(fixed, 2), compile_s=round(compile_s, 2),
                 video_35_steps_extrapolated_s=round(fixed + bench.STEPS * per_step, 1))
        rec.put(f"video/14B/720/{name}", r)
        bench.free()
    if "stock" in got and "ours" in got:
        rec.put("video/14B/720/correctness_ours_vs_stock", {
            "steps": steps, "frames_0_255": bench.diff(got["ours"], got["stock"]),
            "frames_psnr_db": bench._round(bench.psnr(got["ours"], got["stock"])),
            "latents": bench.diff(got["ours_latents"].float(), got["stock_latents"].float())})


# ---------------------------------------------------------------------------------- smoke mode


def smoke_setup() -> None:
    """Tiny models on a CPU, the GPU-only switches forced on: every code path in seconds."""
    from v2w_runtime.tiny import video2world as tiny

    bench.DEV = torch.device("cpu")
    bench.DTYPE = torch.float32
    bench.RESOLUTIONS.update({"480": (64, 96), "720": (64, 128)})
    bench.FRAMES, bench.STEPS = 9, 3
    bench.WARM = (32, 48)
    bench.build_dit = lambda size: tiny.build_transformer(1)
    bench.build_t5 = lambda: tiny.build_text_encoder(3, len(tiny.build_tokenizer()))
    bench.build_vae = lambda: tiny.build_vae(2)
    bench.TEXT_DIM = 32
    perf._on_gpu = lambda device: True
    # "FA4" on a pretend SM90: the custom-op path with SDPA standing in for the kernel
    torch.cuda.get_device_capability = lambda device=None: (9, 0)
    perf.FA4_DTYPES = (torch.float32,)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    perf.register_kernel("fa4", lambda q, k, v: sdpa(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2))
    perf._fa4_import_error = lambda: None
    bench.matmul_ceiling = lambda rec: rec.put("matmul_ceiling", {"tflops": 1.0}) or 1.0


def main() -> None:
    perf.use_compile_caches()  # before any compile: inductor pins its cache folder at first use
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=["kernels", "forwards", "video", "video14b"], required=True)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/out")))
    p.add_argument("--res", default="720", choices=["480", "720"])
    p.add_argument("--res_list", nargs="*", default=["720", "480"])
    p.add_argument("--size", default="2B", choices=["2B", "14B"], help="the DiT of the forwards phase")
    p.add_argument("--variants", nargs="*", default=None, help="forwards phase: only these (stock, ours, ...)")
    p.add_argument("--repeats", type=int, default=2, help="forwards phase: timed calls after the first")
    p.add_argument("--steps", type=int, default=bench.STEPS)
    p.add_argument("--steps14b", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", nargs="*", default=["ours", "stock"], help="stock, ours, cacheN (step cache interval N)")
    p.add_argument("--save", action="store_true")
    p.add_argument("--load", default=None)
    p.add_argument("--tag", default="")
    p.add_argument("--smoke", action="store_true", help="tiny models on a CPU: check the code paths only")
    args = p.parse_args()
    if args.smoke:
        smoke_setup()
        args.steps = min(args.steps, bench.STEPS)
    elif not torch.cuda.is_available():
        sys.exit("exact.py needs a CUDA GPU (or --smoke)")
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.phase + (f"{args.res}" if args.phase == "video" else "") + ("14B" if args.size == "14B" else "") + (f"-{args.tag}" if args.tag else "")
    rec = bench.Recorder(args.out, name)
    {"kernels": phase_kernels, "forwards": phase_forwards, "video": phase_video, "video14b": phase_video14b}[args.phase](rec, args)
    print("done", flush=True)


if __name__ == "__main__":
    main()
