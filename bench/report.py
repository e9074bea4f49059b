"""Merge the bench phases' JSON files into bench/results/<date>-<gpu>.json and .md.

    python bench/report.py DIR_WITH_PHASE_JSONS [...more dirs]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Stock numbers measured here earlier (FACTS.md), shown only where this run has none.


def load(dirs: list[Path]) -> tuple[dict, dict]:
    env, results = {}, {}
    for d in dirs:
        for f in sorted(d.glob("*.json")):
            data = json.loads(f.read_text())
            if "results" not in data:
                continue
            env.setdefault("runs", []).append({"phase": data["phase"], **data["env"]})
            for k, v in data["results"].items():
                results[k] = v
    return env, results


def fmt(x, nd=2):
    return "—" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(env: dict, r: dict) -> str:
    runs = env.get("runs", [])
    first = runs[0] if runs else {}
    out = [f"# Video2World one-GPU benchmark: {first.get('gpu', '?')}, {first.get('date', '?')[:10]}", ""]
    out.append(table([[x["phase"], x["gpu"], x["torch"], x["cuda"], x.get("cudnn"), x["diffusers"], x["transformers"], x["date"]]
                      for x in runs], ["phase", "GPU", "torch", "CUDA", "cuDNN", "diffusers", "transformers", "date (UTC)"]))
    out.append("")
    out.append("Real 2B/14B architectures with random bf16 weights (timing does not depend on the values). "
               "Each phase ran in one process on one GPU; stock = diffusers `Cosmos2VideoToWorldPipeline`, "
               "ours = `v2w_runtime.pipeline.Video2WorldPipeline` with `v2w_runtime.perf`.")
    ceiling = r.get("matmul_ceiling", {}).get("tflops")
    out += ["", "## Summary against the issue's targets", ""] + summary(r) + [""]
    out += ["", f"bf16 matmul ceiling (8192³, random data): **{fmt(ceiling, 1)} TFLOP/s** (MFU below is against it).", ""]

    rows = []
    for k, v in r.items():
        if not k.startswith("forward/") or "error" in v:
            continue
        _, size, res, name = k.split("/", 3)
        per_step = v["seconds"] * (2 if v.get("batch") == 1 else 1)
        rows.append([size, res + "p", name, v.get("tokens"), v.get("batch"), v.get("attention"), round(v["seconds"], 3),
                     round(per_step, 3), v.get("tflops"), v.get("mfu"), v.get("peak_gib"), v.get("compile_first_call_s")])
    out += ["## Transformer, one forward", "",
            "A step runs both guidance passes: stock as two batch-1 forwards; ours (exact mode) also as two batch-1 "
            "forwards (`split_batch`, measured no slower than one batch-2 forward and half the activations). "
            "`default` attention = PyTorch's own SDPA choice.", "",
            table(rows, ["model", "res", "variant", "tokens", "batch", "attention", "s / forward", "s / step (CFG)",
                         "TFLOP/s", "MFU", "peak GiB", "compile (first call) s"]), ""]
    errors = {k: v["error"] for k, v in r.items() if isinstance(v, dict) and "error" in v}

    rows = [[k.removeprefix("vae/").removeprefix("text_encoder/"), v["seconds"], v["peak_gib"]]
            for k, v in r.items() if k.startswith(("vae/", "text_encoder/"))]
    out += ["## Text encoder and VAE", "", table(rows, ["component", "seconds", "peak GiB"]), ""]

    rows = []
    for k, v in r.items():
        if not k.startswith(("video/", "pipeline/")) or "correctness" in k or "/loaded/" in k or "/quality_" in k:
            continue
        head, name = k.rsplit("/", 1)
        q = r.get(f"{head}/quality_{name}", {})
        stock = r.get(f"{head}/stock")
        ratio = round(v["seconds"] / stock["seconds"], 3) if stock and v.get("seconds") else None
        rows.append([k, v.get("seconds"), ratio, v.get("steps"), v.get("forwards"), v.get("peak_gib"),
                     q.get("psnr_vs_exact_db"), q.get("psnr_vs_stock_db")])
    out += ["## Whole pipeline (93 frames, guidance 7; prompt encoding, VAE encode and decode included)", "",
            "`stock` = diffusers pipeline, `ours` = exact mode, `cacheN` = fast mode `--fast_mode step_cache "
            "--step_cache_interval N`. DiT forwards count batch-1 forwards (cond + uncond).", "",
            table(rows, ["run", "seconds", "/ stock", "steps", "DiT forwards", "peak GiB", "PSNR vs ours exact (dB)",
                         "PSNR vs stock (dB)"]), ""]

    rows = [[k, json.dumps(v["latents"]), json.dumps(v["frames_0_255"]), v.get("frames_psnr_db")]
            for k, v in r.items() if "correctness" in k]
    if rows:
        out += ["## Correctness: ours exact vs stock, same seed", "",
                table(rows, ["run", "latents abs diff", "frames abs diff (0-255)", "PSNR dB"]), ""]
    if errors:
        out += ["## Failed measurements", ""] + [f"- `{k}`: {v}" for k, v in errors.items()] + [""]
    return "\n".join(out)


def summary(r: dict) -> list[str]:
    lines = []
    f = r.get("forward/2B/720/stock_b1", {})
    if "mfu" in f:
        lines.append(f"- DiT MFU, 2B 720p: stock {f['mfu']:.3f}; ours exact runs the same batch-1 forward with the same "
                     f"(fastest measured) attention kernel, so {f['mfu']:.3f}. Target 0.80: missed.")
    for res in ("720", "480"):
        stock, ours = r.get(f"video/2B/{res}/stock"), r.get(f"video/2B/{res}/ours")
        if stock and ours:
            lines.append(f"- 2B {res}p video, exact: ours {ours['seconds']:.1f} s / stock {stock['seconds']:.1f} s = "
                         f"{ours['seconds'] / stock['seconds']:.3f}" + (" (target 0.75: missed)" if res == "720" else ""))
        for k, v in r.items():
            if stock and k.startswith(f"video/2B/{res}/cache"):
                q = r.get(f"video/2B/{res}/quality_{k.rsplit('/', 1)[1]}", {})
                lines.append(f"- 2B {res}p video, fast mode {k.rsplit('/', 1)[1]}: {v['seconds']:.1f} s = "
                             f"{v['seconds'] / stock['seconds']:.3f} x stock, PSNR vs exact {fmt(q.get('psnr_vs_exact_db'))} dB"
                             + (" (target 0.40: met)" if res == "720" and v["seconds"] / stock["seconds"] <= 0.40 else ""))
    p14 = r.get("pipeline/14B/720/ours")
    if p14:
        lines.append(f"- 14B 720p whole pipeline (T5-XXL + Wan VAE + DiT, {p14['steps']} steps, decode included): "
                     f"peak {p14['peak_gib']} GiB allocated on one 80 GB GPU: fits.")
    return lines


def main() -> None:
    dirs = [Path(a) for a in sys.argv[1:]]
    if not dirs:
        sys.exit(__doc__)
    env, results = load(dirs)
    if not env:
        sys.exit(f"no phase JSON files in {', '.join(map(str, dirs))}")
    first = env["runs"][0]
    slug = re.sub(r"[^a-z0-9]+", "-", first["gpu"].lower()).strip("-")
    stem = RESULTS / f"{first['date'][:10]}-{slug}"
    RESULTS.mkdir(exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"env": env, "results": results}, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(env, results))
    print(stem.with_suffix(".md"))


if __name__ == "__main__":
    main()
