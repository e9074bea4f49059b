"""Cold start (issue 21): how long a pod takes from its start to its first sampling step, and where it goes.

On one GPU, with real-size random checkpoints written to local disk in upstream's release layout (the DiT as
native keys in a bf16 `.pt`, the Wan 2.1 VAE as a float32 `tokenizer.pth`, the T5 encoder of t5-11b as
float32 Hugging Face safetensors shards; the architectures' real configs, as `bench.py` builds them):

1. `write`: the tree (random values drawn on the GPU in chunks; skipped when `--tree` already holds it);
2. `load`: each component and the whole model through the production loader (`load_components`), the
   earlier path (`direct=False`: built in host memory, one after the other, then moved) against the new one
   (each tensor from the mapped file straight to the GPU, T5's bytes read beside the DiT), each in a fresh
   process, first with the tree's files dropped from the page cache (read from disk, as on a fresh node),
   then again with them cached; with each process's peak host memory (anonymous: staging copies) and GPU memory;
3. `first_step`: the production runtime as a pod starts it (`python -m v2w_runtime.launch` -> torchrun ->
   `v2w_runtime.video2world`, guardrail and refiner off, 2 steps), twice in separate processes on one
   compile cache: cold, then warm. The runtime's own cold-start figures (result.json's `coldStart`: seconds
   from the launcher's start to the end of the first step, download, load, compile) are reported.

Writes `cold_start.json` and `cold_start.md` (the GPU named) into `--out`.

    python bench/cold_start.py --size 2B --out OUT            # one H100/H200, about 6 minutes
    python bench/cold_start.py --smoke --out /tmp/smoke       # tiny models on the CPU, every step, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))
sys.path.insert(0, str(ROOT / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = "nvidia/Cosmos-Predict2-{size}-Video2World"
T5_FOLDER = "google-t5/t5-11b"
SHARD_BYTES = 5 << 30  # Hugging Face's default shard size
FAST = ["--height", "64", "--width", "96", "--num_frames", "9"]  # the smoke's video size


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------- the tree


def _random(shape, dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Random values in `shape` (drawn on `device` in float32 chunks, returned on the CPU in `dtype`)."""
    out = torch.empty(shape, dtype=dtype)
    flat = out.view(-1)
    chunk = 1 << 26
    for start in range(0, flat.numel(), chunk):
        n = min(chunk, flat.numel() - start)
        part = torch.empty(n, device=device, dtype=torch.float32).uniform_(-0.02, 0.02, generator=generator)
        flat[start:start + n].copy_(part.to(dtype))
    return out


def _materialize(state: dict, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    generator = torch.Generator(device=device).manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            out[key] = _random(tuple(value.shape), dtype, device, generator)
        elif value.device.type == "meta":
            out[key] = torch.zeros(tuple(value.shape), dtype=value.dtype)
        else:
            out[key] = value.clone()
    return out


def models(size: str, smoke: bool):
    """The DiT, the VAE, the T5 encoder (on the meta device at full size) and a tokenizer."""
    from v2w_runtime.tiny import video2world as tiny

    tokenizer = tiny.build_tokenizer()
    if smoke:
        return (tiny.build_transformer(1), tiny.build_vae(2), tiny.build_text_encoder(3, len(tokenizer)), tokenizer)
    import bench
    from diffusers import AutoencoderKLWan, CosmosTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        dit = CosmosTransformer3DModel(**bench.DIT_COMMON, **bench.DIT_CONFIGS[size])
        vae = AutoencoderKLWan()  # the defaults are the Wan 2.1 VAE Cosmos-Predict2 ships
        t5 = T5EncoderModel(T5Config(**bench.T5_XXL))
    return dit, vae, t5, tokenizer


def write_tree(root: Path, size: str, smoke: bool, device: torch.device, t5_dtype: torch.dtype) -> dict:
    """Upstream's checkpoints/ tree for `size` (the 720p 16 fps DiT), random values; returns bytes per file."""
    from safetensors.torch import save_file
    from transformers import T5Config

    from v2w_runtime.checkpoints.layouts import UPSTREAM_VAE
    from v2w_runtime.tiny.upstream import native_dit_state, native_vae_state

    dit, vae, t5, tokenizer = models(size, smoke)
    folder = root / MODEL.format(size=size)
    (folder / UPSTREAM_VAE).parent.mkdir(parents=True, exist_ok=True)
    written = {}

    clock = time.perf_counter()
    state = _materialize(native_dit_state(dit), torch.bfloat16, device, 1)  # the release's DiT is bf16
    path = folder / "model-720p-16fps.pt"
    torch.save(state, path)
    written[str(path.relative_to(root))] = path.stat().st_size
    del state
    log(f"DiT written: {written[str(path.relative_to(root))] / 2**30:.2f} GiB in {time.perf_counter() - clock:.1f} s")

    clock = time.perf_counter()
    path = folder / UPSTREAM_VAE
    torch.save(_materialize(native_vae_state(vae), torch.float32, device, 2), path)  # tokenizer.pth is float32
    written[str(path.relative_to(root))] = path.stat().st_size
    log(f"VAE written in {time.perf_counter() - clock:.1f} s")

    clock = time.perf_counter()
    t5_dir = root / T5_FOLDER
    t5_dir.mkdir(parents=True, exist_ok=True)
    encoder = {k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}  # tied to shared
    shards, current, size_now = [], {}, 0
    for key in sorted(encoder):
        nbytes = encoder[key].numel() * t5_dtype.itemsize
        if current and size_now + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size_now = {}, 0
        current[key] = encoder[key]
        size_now += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = _materialize(shard, t5_dtype, device, 3 + i)
        save_file(tensors, str(t5_dir / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({k: name for k in tensors})
        written[f"{T5_FOLDER}/{name}"] = (t5_dir / name).stat().st_size
        del tensors
    (t5_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    config = T5Config(**{k: v for k, v in t5.config.to_dict().items()
                         if k not in ("architectures", "is_encoder_decoder", "use_cache", "transformers_version")},
                      is_encoder_decoder=True, architectures=["T5ForConditionalGeneration"])
    config.save_pretrained(t5_dir)
    with tempfile.TemporaryDirectory() as tmp:  # the Hub folder has tokenizer.json
        tokenizer.save_pretrained(tmp)
        shutil.copy(Path(tmp) / "tokenizer.json", t5_dir / "tokenizer.json")
    log(f"T5 encoder written: {len(shards)} shard(s), {total / 2**30:.2f} GiB in {time.perf_counter() - clock:.1f} s")
    (root / "WRITTEN.json").write_text(json.dumps(written, indent=1) + "\n")
    return written


def drop_page_cache(root: Path) -> None:
    """Take the tree's files out of the page cache (as on a node that never read them): fsync, then
    POSIX_FADV_DONTNEED, which needs no privileges for files this process may open."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# ------------------------------------------------------------------------------- one load, in a process


class HostMemory:
    """The peak of this process's anonymous resident memory (staging copies; mapped files are not in it)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @staticmethod
    def anon_bytes() -> int:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.anon_bytes())
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.anon_bytes())


def measure_load(tree: Path, size: str, direct: bool, device: str) -> dict:
    started = time.perf_counter()
    from diffusers import AutoencoderKLWan, CosmosTransformer3DModel  # noqa: F401  (imports are not loading)
    from transformers import T5EncoderModel  # noqa: F401

    from v2w_runtime.checkpoints import load_components

    imported = time.perf_counter() - started
    base = HostMemory.anon_bytes()
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.init()
        torch.empty(1, device=dev)  # the CUDA context, outside the load's time
    memory = HostMemory()
    clock = time.perf_counter()
    loaded = load_components(str(tree), dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32, device=dev,
                             model_size=size, direct=direct)
    seconds = time.perf_counter() - clock
    peak = memory.stop()
    out = {"direct": direct, "seconds": round(seconds, 3), "components": loaded.info["load_seconds"],
           "imports_s": round(imported, 2), "host_anon_peak_gib": round((peak - base) / 2**30, 2),
           "host_max_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    if dev.type == "cuda":
        out["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
        out["gpu_allocated_gib"] = round(torch.cuda.memory_allocated(dev) / 2**30, 2)
    out["parameters"] = {name: sum(p.numel() for p in loaded.components[name].parameters())
                         for name in ("transformer", "vae", "text_encoder")}
    return out


def run_load(args, direct: bool, page_cache: str) -> dict:
    if page_cache == "dropped":
        drop_page_cache(args.tree)
    cmd = [sys.executable, __file__, "--measure_load", "direct" if direct else "earlier", "--tree", str(args.tree),
           "--size", args.size, "--device", args.device]
    clock = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.step_timeout)
    wall = time.perf_counter() - clock
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"}
    result = json.loads(line[len("RESULT "):])
    result.update(page_cache=page_cache, process_wall_s=round(wall, 2))
    return result


# -------------------------------------------------------------------------- the runtime, as a pod runs it


def run_runtime(args, name: str, compile_cache: Path, image: Path, prefetch: bool = True) -> dict:
    """The production runtime through the pods' launcher; its cold-start figures from result.json."""
    drop_page_cache(args.tree)
    out = args.work / name
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "V2W_START_TIME", "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR")}
    env.update(V2W_PREFETCH="1" if prefetch else "0", V2W_CACHE_DIR=str(compile_cache), PYTHONPATH=os.pathsep.join(
        [str(ROOT / "runtime"), str(ROOT / "api"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    cmd = [sys.executable, "-m", "v2w_runtime.launch", "--standalone", "--nproc_per_node", "1", "-m",
           "v2w_runtime.video2world", "--checkpoint_dir", str(args.tree), "--model_size", args.size,
           "--input_path", str(image), "--prompt", "A tram crosses a bridge at dusk.", "--save_path",
           str(out / "video.mp4"), "--num_steps", str(args.steps), "--disable_guardrail", "--disable_prompt_refiner",
           *(FAST if args.smoke else [])]
    clock = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.step_timeout, env=env)
    wall = time.perf_counter() - clock
    (args.out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    result_file = out / "video.result.json"
    if proc.returncode or not result_file.exists():
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}", "process_wall_s": round(wall, 1)}
    result = json.loads(result_file.read_text())
    record = json.loads((out / "video.json").read_text()) if (out / "video.json").exists() else {}
    return {"cold_start": result.get("coldStart"), "process_wall_s": round(wall, 1),
            "load_seconds": (record.get("model") or {}).get("load_seconds"),
            "timings_s": record.get("timings_s"), "speed_applied": ((record.get("model") or {}).get("speed") or {}).get("applied")}


# ------------------------------------------------------------------------------------------- report


def env_info(device: str) -> dict:
    import diffusers
    import transformers

    info = {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    else:
        info["gpu"] = "none (CPU smoke run)"
    try:
        with open("/proc/meminfo") as fh:
            info["host_memory_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def markdown(data: dict) -> str:
    env = data["env"]
    lines = [f"# Cold start, {data['size']} ({'smoke: tiny models on the CPU' if data['smoke'] else 'real-size random checkpoints'})",
             "", f"GPU: **{env['gpu']}**; torch {env['torch']}, diffusers {env['diffusers']}, transformers "
             f"{env['transformers']}; {env.get('cpus')} CPUs, {env.get('host_memory_gib')} GiB host memory; {env['date']}.",
             ""]
    if data.get("tree"):
        total = sum(data["tree"].values())
        lines += [f"Tree (upstream's layout, local disk): {total / 2**30:.2f} GiB in {len(data['tree'])} files"
                  + (f", written in {data['write_s']:.0f} s" if data.get("write_s") else "") + ".", ""]
    loads = data.get("loads") or {}
    if loads:
        parts = ("fetch", "transformer", "vae", "text_encoder_read", "text_encoder", "tokenizer", "to_device")
        lines += ["## Loading the model (`load_components`, one fresh process each)", "",
                  "| path | page cache | total s | " + " | ".join(parts) + " | host anon peak GiB | GPU peak GiB |",
                  "| --- | --- | ---: | " + " | ".join("---:" for _ in parts) + " | ---: | ---: |"]
        for key, r in loads.items():
            if "error" in r:
                lines.append(f"| {key} | | error: {r['error'][:200]!r} |")
                continue
            comp = r["components"]
            lines.append(f"| {'direct (new)' if r['direct'] else 'earlier'} | {r['page_cache']} | {r['seconds']:.2f} | "
                         + " | ".join(f"{comp[p]:.2f}" if p in comp else "-" for p in parts)
                         + f" | {r['host_anon_peak_gib']:.2f} | {r.get('gpu_peak_gib', '-')} |")
        lines += ["", "`text_encoder_read`: the T5's bytes read in a thread while the DiT and VAE load (its "
                  "`text_encoder` time is then building and placing); `to_device`: the earlier path's move to "
                  "the GPU. Host anon peak: anonymous memory the load added (staging copies; mapped files not counted).", ""]
    runs = data.get("runs") or {}
    if runs:
        lines += ["## The runtime as a pod starts it (launcher -> torchrun -> video2world), tree read from disk", "",
                  "| compile cache | cold start s | download | load | compile + first step | other | process s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for key, r in runs.items():
            cold = r.get("cold_start")
            if not cold:
                lines.append(f"| {key} | error: {r.get('error', 'no coldStart')[:200]!r} |")
                continue
            lines.append(f"| {key} | {cold['seconds']:.1f} | {cold['download']:.1f} | {cold['load']:.1f} | "
                         f"{cold['compile']:.1f} | {cold['other']:.1f} | {r['process_wall_s']:.1f} |")
        lines += ["", "Cold start: from the launcher's process start to the end of the first sampling step "
                  "(result.json's `coldStart`); `compile + first step` is sampling up to the end of step 1 "
                  "(prompt and conditioning encoding, the first step's forwards with their compile).", ""]
    return "\n".join(lines) + "\n"


def save(args, data: dict) -> None:
    (args.out / "cold_start.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "cold_start.md").write_text(markdown(data))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["2B", "14B"], default="2B")
    p.add_argument("--out", type=Path, help="results folder (cold_start.json, cold_start.md, logs)")
    p.add_argument("--tree", type=Path, help="where the checkpoints tree is written (default: under --work)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "v2w21")
    p.add_argument("--device", default=None, help="cuda (default when there is one) or cpu")
    p.add_argument("--t5_dtype", choices=["float32", "bfloat16"], default="float32",
                   help="the T5 shards' dtype (t5-11b is released in float32)")
    p.add_argument("--steps", type=int, default=2, help="sampling steps of the runtime runs")
    p.add_argument("--phases", nargs="+", default=["write", "load", "first_step"])
    p.add_argument("--step_timeout", type=int, default=240, help="seconds each subprocess may run")
    p.add_argument("--keep_tree", action="store_true", help="leave the written tree on disk")
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU: every step in under a minute")
    p.add_argument("--measure_load", choices=["direct", "earlier"], help=argparse.SUPPRESS)
    args = p.parse_args()
    args.device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.measure_load:
        print("RESULT " + json.dumps(measure_load(args.tree, args.size, args.measure_load == "direct", args.device)),
              flush=True)
        return
    if args.out is None:
        p.error("--out is required")
    if args.device == "cpu" and not args.smoke:
        sys.exit("cold_start.py needs a CUDA GPU (or --smoke)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: save what was measured, remove the tree
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    args.tree = args.tree or args.work / ("checkpoints-smoke" if args.smoke else f"checkpoints-{args.size}")
    data = {"size": args.size, "smoke": args.smoke, "env": env_info(args.device), "loads": {}, "runs": {}}
    save(args, data)
    started = time.perf_counter()
    try:
        if "write" in args.phases or not (args.tree / "WRITTEN.json").exists():
            if (args.tree / "WRITTEN.json").exists():
                log(f"tree already at {args.tree}")
            else:
                shutil.rmtree(args.tree, ignore_errors=True)
                clock = time.perf_counter()
                write_tree(args.tree, args.size, args.smoke, torch.device(args.device), getattr(torch, args.t5_dtype))
                data["write_s"] = round(time.perf_counter() - clock, 1)
        data["tree"] = json.loads((args.tree / "WRITTEN.json").read_text())
        save(args, data)
        if "load" in args.phases:
            for page_cache in ("dropped",) if args.smoke else ("dropped", "cached"):
                for direct in (False, True):
                    key = f"{'direct' if direct else 'earlier'}-{page_cache}"
                    log(f"load: {key}")
                    data["loads"][key] = result = run_load(args, direct, page_cache)
                    log(json.dumps(result)[:600])
                    save(args, data)
        if "first_step" in args.phases:
            from v2w_runtime.tiny.inputs import write_image

            height, width = (64, 96) if args.smoke else (704, 1280)
            image = write_image(args.work / "input.png", height=height, width=width, seed=1)
            compile_cache = args.work / "v2w-cache"
            shutil.rmtree(compile_cache, ignore_errors=True)
            # the launcher's read-ahead (prefetch.py) on, as pods run; last, the warm cache without it
            for name, ahead in (("cold compile cache", True), ("warm compile cache", True),
                                ("warm compile cache, no prefetch", False)):
                log(f"runtime: {name}")
                data["runs"][name] = result = run_runtime(
                    args, name.split()[0] + "-compile-cache" + ("" if ahead else "-no-prefetch"), compile_cache, image,
                    prefetch=ahead)
                log(json.dumps(result)[:600])
                save(args, data)
    finally:
        data["bench_s"] = round(time.perf_counter() - started, 1)
        save(args, data)
        if not args.keep_tree:
            shutil.rmtree(args.tree, ignore_errors=True)
    print(markdown(data))


if __name__ == "__main__":
    main()
