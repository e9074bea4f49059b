"""One-GPU benchmark: our Video2World sampler against diffusers' stock Cosmos2VideoToWorldPipeline.

Builds the real 2B / 14B architectures (full configs, random bf16 weights: the timing does not depend
on the values) and measures both in the same process. Each phase writes `<out>/<phase>.json` after
every measurement, so a run cut short keeps what it measured. `bench/report.py` merges the JSON files
into the results table.

    python bench/bench.py --phase forwards --out OUT      # matmul ceiling, DiT forwards, T5, VAE, 14B
    python bench/bench.py --phase video720 --out OUT      # full 2B 720p videos, stock vs ours
    python bench/bench.py --phase video480 --out OUT      # full 2B 480p videos + fast mode
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from diffusers import AutoencoderKLWan, Cosmos2VideoToWorldPipeline, CosmosTransformer3DModel  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import T5Config, T5EncoderModel  # noqa: E402

from v2w_runtime import perf  # noqa: E402
from v2w_runtime.guardrail import DiffusersSafetyChecker  # noqa: E402
from v2w_runtime.pipeline import Video2WorldPipeline  # noqa: E402
from v2w_runtime.tiny.video2world import build_tokenizer  # noqa: E402
from v2w_runtime.tiny.inputs import scene_frames  # noqa: E402

# The released checkpoints' transformer configs (diffusers format).
DIT_CONFIGS = {
    "2B": dict(num_attention_heads=16, num_layers=28),
    "14B": dict(num_attention_heads=40, num_layers=36),
}
DIT_COMMON = dict(
    in_channels=17, out_channels=16, attention_head_dim=128, mlp_ratio=4.0, text_embed_dim=1024, adaln_lora_dim=256,
    max_size=(128, 240, 240), patch_size=(1, 2, 2), rope_scale=(1.0, 3.0, 3.0), concat_padding_mask=True,
    extra_pos_embed_type=None,
)
# The T5 v1.1 XXL encoder Cosmos-Predict2 uses.
T5_XXL = dict(vocab_size=32128, d_model=1024, d_kv=128, d_ff=65536, num_layers=24, num_heads=128,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="relu",
              dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)
RESOLUTIONS = {"480": (480, 832), "720": (704, 1280)}
FRAMES, STEPS, GUIDANCE, TEXT_LEN = 93, 35, 7.0, 512
PROMPT = "a red bus drives slowly down a city street at night, lights moving on the wet road"
NEGATIVE = "blurry, low quality, static, jitter"
DEV = torch.device("cuda")
DTYPE = torch.bfloat16
TEXT_DIM = 1024  # T5-XXL's width
WARM = (256, 448)  # warm-up size of the video phases


# ----------------------------------------------------------------------------------------- records


class Recorder:
    def __init__(self, out: Path, phase: str) -> None:
        self.path = out / f"{phase}.json"
        self.data: dict = {"phase": phase, "env": env_info(), "results": {}}
        self.save()

    def put(self, key: str, value) -> None:
        self.data["results"][key] = value
        self.save()
        print(f"[{time.strftime('%H:%M:%S')}] {key}: {json.dumps(value)}", flush=True)

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")


def env_info() -> dict:
    import diffusers
    import transformers

    if DEV.type != "cuda":
        return {"gpu": "cpu (smoke run)", "torch": torch.__version__, "cuda": None, "cudnn": None,
                "diffusers": diffusers.__version__, "transformers": transformers.__version__,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    props = torch.cuda.get_device_properties(DEV)
    return {
        "gpu": torch.cuda.get_device_name(DEV), "sm_count": props.multi_processor_count,
        "gpu_uuid": str(getattr(props, "uuid", "")),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "diffusers": diffusers.__version__,
        "transformers": transformers.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def sync_time(fn, repeats: int = 1, warmup: int = 1) -> dict:
    """Median wall seconds of `fn()` (device synchronized), and the peak GPU memory during it."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"seconds": float(np.median(times)), "all": [round(t, 4) for t in times],
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def free() -> None:
    gc.collect()
    if DEV.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ----------------------------------------------------------------------------------------- models


def build_dit(size: str) -> CosmosTransformer3DModel:
    torch.manual_seed(0)
    with torch.device(DEV):  # initialised on the GPU in float32 (fast), then cast like a bf16 checkpoint
        model = CosmosTransformer3DModel(**DIT_COMMON, **DIT_CONFIGS[size])
    return model.to(torch.bfloat16).eval().requires_grad_(False)


def build_t5() -> T5EncoderModel:
    torch.manual_seed(1)
    with torch.device(DEV):
        model = T5EncoderModel(T5Config(**T5_XXL))
    return model.to(torch.bfloat16).eval().requires_grad_(False)


def build_vae() -> AutoencoderKLWan:
    torch.manual_seed(2)
    with torch.device(DEV):
        model = AutoencoderKLWan()  # the defaults are the Wan 2.1 VAE Cosmos-Predict2 ships
    return model.to(torch.bfloat16).eval().requires_grad_(False)


def build_pipelines(dit: CosmosTransformer3DModel) -> tuple[Video2WorldPipeline, Cosmos2VideoToWorldPipeline]:
    t5, vae, tok = build_t5(), build_vae(), build_tokenizer()
    scheduler = FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True, shift=1.0)
    stock = Cosmos2VideoToWorldPipeline(text_encoder=t5, tokenizer=tok, transformer=dit, vae=vae, scheduler=scheduler,
                                        safety_checker=DiffusersSafetyChecker.allow_all())
    ours = Video2WorldPipeline(t5, tok, dit, vae, scheduler)
    return ours, stock


def dit_flops(n_tokens: int, dim: int, layers: int, batch: int, text_len: int = TEXT_LEN, text_dim: int = 1024) -> float:
    """Matmul FLOPs of one forward: QKV/out + cross q/out + MLP (28 N d^2), self attention 4 N^2 d, cross 4 N L d."""
    per_layer = 28 * n_tokens * dim**2 + 4 * n_tokens**2 * dim + 4 * n_tokens * text_len * dim + 4 * text_len * text_dim * dim
    return float(batch * layers * per_layer)


def dit_inputs(batch: int, res: str, dtype=torch.bfloat16) -> dict:
    h, w = RESOLUTIONS[res]
    t = (FRAMES - 1) // 4 + 1
    g = torch.Generator(DEV).manual_seed(3)
    return dict(
        hidden_states=torch.randn(batch, 16, t, h // 8, w // 8, generator=g, device=DEV, dtype=dtype),
        timestep=torch.rand(batch, 1, t, 1, 1, generator=g, device=DEV, dtype=dtype),
        encoder_hidden_states=torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g, device=DEV, dtype=dtype),
        fps=16, condition_mask=torch.zeros(batch, 1, t, h // 8, w // 8, device=DEV, dtype=dtype),
        padding_mask=torch.zeros(1, 1, h, w, device=DEV, dtype=dtype), return_dict=False,
    )


# ------------------------------------------------------------------------------------------ phases


def matmul_ceiling(rec: Recorder) -> float:
    n = 8192
    a = torch.randn(n, n, device=DEV, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEV, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(10):
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    tflops = 2 * n**3 / float(np.median(times)) / 1e12
    rec.put("matmul_ceiling", {"tflops": round(tflops, 1), "shape": [n, n, n]})
    return tflops


def forward_variants(rec: Recorder, size: str, dit, ceiling: float, variants: list[tuple[str, int, str, int]]) -> None:
    """variants: (name, batch, attention choice, repeats)."""
    cfg = dit.config
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    for res in ("480", "720"):
        for name, batch, attention, repeats in variants:
            if res == "480" and size == "14B":
                continue
            key = f"forward/{size}/{res}/{name}"
            try:
                inputs = dit_inputs(batch, res)
                h, w = RESOLUTIONS[res]
                tokens = ((FRAMES - 1) // 4 + 1) * (h // 16) * (w // 16)
                backend = perf.resolve_attention(attention, DEV)
                with torch.no_grad(), perf.attention_context(backend):
                    r = sync_time(lambda: dit(**inputs), repeats=repeats)
                flops = dit_flops(tokens, dim, cfg.num_layers, batch)
                r.update(tokens=tokens, batch=batch, attention=backend or "default", tflop=round(flops / 1e12, 1),
                         tflops=round(flops / r["seconds"] / 1e12, 1), mfu=round(flops / r["seconds"] / 1e12 / ceiling, 3))
                rec.put(key, r)
            except Exception as exc:  # one failed variant must not lose the rest
                rec.put(key, {"error": f"{type(exc).__name__}: {exc}"[:500]})
                traceback.print_exc()
            free()


def compiled_forward(rec: Recorder, dit, ceiling: float, res_list=("720", "480")) -> None:
    cfg = dit.config
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    try:
        perf.compile_blocks(dit)
        backend = perf.resolve_attention("auto", DEV)
        for res in res_list:
            inputs = dit_inputs(1, res)
            h, w = RESOLUTIONS[res]
            tokens = ((FRAMES - 1) // 4 + 1) * (h // 16) * (w // 16)
            with torch.no_grad(), perf.attention_context(backend):
                t0 = time.perf_counter()
                dit(**inputs)
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                r = sync_time(lambda: dit(**inputs), repeats=2, warmup=0)
            flops = dit_flops(tokens, dim, cfg.num_layers, 1)
            r.update(tokens=tokens, batch=1, attention=backend or "default", compile_first_call_s=round(first, 1),
                     tflops=round(flops / r["seconds"] / 1e12, 1), mfu=round(flops / r["seconds"] / 1e12 / ceiling, 3))
            rec.put(f"forward/2B/{res}/compiled_b1", r)
            free()
    except Exception as exc:
        rec.put("forward/2B/compiled_error", {"error": f"{type(exc).__name__}: {exc}"[:800]})
        traceback.print_exc()


def components(rec: Recorder, ours: Video2WorldPipeline) -> None:
    with torch.no_grad():
        rec.put("text_encoder/t5_xxl_2_prompts", sync_time(lambda: ours.encode_prompt([PROMPT, NEGATIVE]), repeats=3))
        for res in ("480", "720"):
            h, w = RESOLUTIONS[res]
            one = torch.randn(1, 3, 1, h, w, device=DEV, dtype=torch.bfloat16).clamp(-1, 1)
            full = torch.randn(1, 3, FRAMES, h, w, device=DEV, dtype=torch.bfloat16).clamp(-1, 1)
            lat = torch.randn(1, 16, (FRAMES - 1) // 4 + 1, h // 8, w // 8, device=DEV, dtype=torch.bfloat16)
            rec.put(f"vae/{res}/encode_1_frame", sync_time(lambda: ours.vae.encode(one), repeats=2))
            rec.put(f"vae/{res}/encode_93_frames", sync_time(lambda: ours.vae.encode(full), repeats=1))
            rec.put(f"vae/{res}/decode_93_frames", sync_time(lambda: ours.vae.decode(lat), repeats=1))
            if res == "720":
                torch.backends.cudnn.benchmark = True
                rec.put(f"vae/{res}/decode_93_frames_cudnn_benchmark", sync_time(lambda: ours.vae.decode(lat), repeats=1))
                torch.backends.cudnn.benchmark = False
            del one, full, lat
            free()


def phase_forwards(rec: Recorder, args) -> None:
    ceiling = matmul_ceiling(rec)
    dit = build_dit("2B")
    variants = [("stock_b1", 1, "default", 2), ("default_b2", 2, "default", 2), ("cudnn_b2", 2, "cudnn", 2),
                ("flash_b2", 2, "flash", 2), ("cudnn_b1", 1, "cudnn", 2)]
    forward_variants(rec, "2B", dit, ceiling, variants)
    ours, _ = build_pipelines(dit)
    components(rec, ours)
    del ours, _, dit
    free()
    dit = build_dit("14B")
    forward_variants(rec, "14B", dit, ceiling, [("stock_b1", 1, "default", 1), ("cudnn_b2", 2, "cudnn", 1)])
    del dit
    free()
    if not args.skip_compile:  # last: its compile time is the least predictable part
        compiled_forward(rec, build_dit("2B"), ceiling)


def run_stock(stock, frames, h, w, steps, seed):
    captured = {}

    def keep(pipe, i, t, kw):
        captured["latents"] = kw["latents"]
        return {}

    out = stock(image=Image.fromarray(frames[0]), prompt=PROMPT, negative_prompt=NEGATIVE, height=h, width=w,
                num_frames=FRAMES, num_inference_steps=steps, guidance_scale=GUIDANCE, fps=16,
                generator=torch.Generator().manual_seed(seed), output_type="np",
                callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"])
    return captured["latents"].float(), np.asarray(out.frames[0], dtype=np.float32) * 255.0


def run_ours(ours, frames, h, w, steps, seed):
    latents = ours(frames, PROMPT, NEGATIVE, h, w, FRAMES, steps, GUIDANCE, 16, torch.Generator().manual_seed(seed),
                   decode=False)
    video = ours.decode(latents)
    return latents.float(), video.astype(np.float32)


def timed(fn):
    gpu = DEV.type == "cuda"
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = fn()
    if gpu:
        torch.cuda.synchronize()
    return result, {"seconds": round(time.perf_counter() - t0, 2),
                    "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else 0.0}


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else 10 * math.log10(255.0**2 / mse)  # None: identical


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def diff(a, b) -> dict:
    a = a.cpu().numpy() if torch.is_tensor(a) else a
    b = b.cpu().numpy() if torch.is_tensor(b) else b
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"max_abs": round(float(d.max()), 4), "mean_abs": round(float(d.mean()), 5)}


def save_latents(out: Path, name: str, latents: torch.Tensor) -> None:
    # float16: a 720p video's latents in 11 MB (the device returns files of up to 16 MB)
    torch.save(latents.to(torch.float16).cpu(), out / f"latents-{name}.pt")


def phase_video(rec: Recorder, args, res: str) -> None:
    """Full 2B videos (93 frames, 35 steps, guidance 7) on the same seed.

    runs: "stock", "ours" (exact), "cacheN" (ours with the step cache, interval N). Final latents are
    saved with --save; --load DIR brings saved latents of an earlier run of the same GPU kind in
    (decoded here), so a comparison can span two device calls when one call cannot hold every video.
    """
    h, w = RESOLUTIONS[res]
    steps = args.steps
    dit = build_dit("2B")
    ours, stock = build_pipelines(dit)
    frames = scene_frames(1, h, w, seed=4)
    with torch.no_grad():  # warm-up: CUDA/cuDNN handles and kernels, one step at a small size
        if "stock" in args.runs:
            run_stock(stock, scene_frames(1, *WARM), *WARM, 1, 0)
        perf.accelerate(ours, perf.PerfOptions())
        run_ours(ours, scene_frames(1, *WARM), *WARM, 1, 0)
    free()
    key = f"video/2B/{res}"
    got: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    for name in args.runs:
        if name == "stock":
            (lat, vid), r = timed(lambda: run_stock(stock, frames, h, w, steps, args.seed))
            r.update(steps=steps, forwards=2 * steps)
        else:
            cache = perf.StepCacheSettings(interval=int(name[5:])) if name.startswith("cache") else None
            wrapper = perf.accelerate(ours, perf.PerfOptions(compile=args.compile, step_cache=cache))
            (lat, vid), r = timed(lambda: run_ours(ours, frames, h, w, steps, args.seed))
            r.update(steps=steps, forwards=wrapper.calls * (2 if wrapper.split_batch else 1), split_batch=wrapper.split_batch,
                     attention=wrapper.backend or "default", compile=args.compile)
            if cache is not None:
                r["step_cache"] = cache.model_dump()
        got[name] = (lat, vid)
        if args.save:
            save_latents(rec.path.parent, f"{res}-{name}", lat)
        rec.put(f"{key}/{name}", r)
        compare(rec, key, got)  # after every run, so a call cut short keeps its comparisons
        free()
    if args.load:
        for f in sorted(Path(args.load).glob(f"latents-{res}-*.pt")):
            name = f.stem.removeprefix(f"latents-{res}-")
            if name in got:
                continue
            lat = torch.load(f).to(DEV).float()
            with torch.no_grad():
                got[name] = (lat, ours.decode(lat).astype(np.float32))
            rec.put(f"{key}/loaded/{name}", {"from": f.name, "note": "final latents of an earlier call (float16), decoded here"})
    compare(rec, key, got)


def compare(rec: Recorder, key: str, got: dict) -> None:
    if "ours" in got and "stock" in got:
        (o_lat, o_vid), (s_lat, s_vid) = got["ours"], got["stock"]
        rec.put(f"{key}/correctness_ours_vs_stock", {
            "latents": diff(o_lat, s_lat), "frames_0_255": diff(o_vid, s_vid), "frames_psnr_db": _round(psnr(o_vid, s_vid)),
            "latent_scale_mean_abs": round(float(s_lat.abs().mean()), 4),
        })
    for name, (lat, vid) in got.items():
        if not name.startswith("cache"):
            continue
        r = {}
        if "ours" in got:
            r.update(psnr_vs_exact_db=_round(psnr(vid, got["ours"][1])), latents_vs_exact=diff(lat, got["ours"][0]))
        if "stock" in got:
            r.update(psnr_vs_stock_db=_round(psnr(vid, got["stock"][1])))
        rec.put(f"{key}/quality_{name}", r)


def phase_pipeline14b(rec: Recorder, args) -> None:
    """The whole 14B pipeline (T5-XXL, Wan VAE, DiT) at 720p for a few steps, ours: does it fit one GPU?"""
    dit = build_dit("14B")
    ours, _ = build_pipelines(dit)
    wrapper = perf.accelerate(ours, perf.PerfOptions())
    free()
    h, w = RESOLUTIONS["720"]
    frames = scene_frames(1, h, w, seed=4)
    t0 = time.perf_counter()
    with torch.no_grad():
        video = ours(frames, PROMPT, NEGATIVE, h, w, FRAMES, args.steps, GUIDANCE, 16, torch.Generator().manual_seed(0))
    torch.cuda.synchronize()
    rec.put("pipeline/14B/720/ours", {
        "seconds": round(time.perf_counter() - t0, 2), "steps": args.steps, "forwards": 2 * wrapper.calls,
        "frames": list(video.frames.shape), "split_batch": wrapper.split_batch,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "reserved_peak_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
    })


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=["forwards", "video720", "video480", "pipeline14b"], required=True)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/out")))
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", nargs="*", default=["stock", "ours"], help="stock, ours, cacheN (step cache interval N)")
    p.add_argument("--save", action="store_true", help="write each run's final latents (float16) next to the JSON")
    p.add_argument("--load", default=None, help="folder of latents saved by an earlier call, compared here")
    p.add_argument("--compile", action="store_true", help="compile ours in the video phases")
    p.add_argument("--tag", default="", help="suffix of the JSON file name")
    p.add_argument("--skip_compile", action="store_true", help="skip the compiled forwards in the forwards phase")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench.py needs a CUDA GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.runs:
        if name not in ("stock", "ours") and not (name.startswith("cache") and name[5:].isdigit() and int(name[5:]) >= 1):
            p.error(f"--runs: unknown run {name!r} (stock, ours, cacheN)")
    rec = Recorder(args.out, args.phase + (f"-{args.tag}" if args.tag else ""))
    if args.phase == "forwards":
        phase_forwards(rec, args)
    elif args.phase == "pipeline14b":
        phase_pipeline14b(rec, args)
    else:
        phase_video(rec, args, args.phase.removeprefix("video"))
    print("done", flush=True)


if __name__ == "__main__":
    main()
