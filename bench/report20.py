"""Tables of issue 20's whole-video runs (bench/multi_gpu_video.py JSON files): per layout, per phase.

    python bench/report20.py DIR [--baseline single] [--steps 35]

Speed-up and efficiency (speed-up / GPUs) are against the one-GPU run named by --baseline. A run of
fewer steps than --steps is extrapolated: total + (steps - its steps) x its median step time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PHASES = ("launch_s", "import_s", "init_s", "load_s")
VIDEO_PHASES = ("text_encoder_s", "vae_encode_s", "sampling_s", "vae_decode_s", "write_s")


def load(folder: Path) -> dict[str, dict]:
    runs = {}
    for f in sorted(folder.glob("*.json")):
        data = json.loads(f.read_text())
        if "layout" in data and "ranks" in data:
            runs[data["name"]] = data
    return runs


def leader_video(run: dict) -> dict:
    return run["ranks"][0]["videos"][0]


def summary(run: dict, steps: int) -> dict:
    v = leader_video(run)
    total = run["total_s"]
    row = {"name": run["name"], "layout": run["layout"], "gpus": run["gpus"], "steps": run["steps"], "total_s": total,
           **run["leader_phases_s"], **{k: v.get(k) for k in VIDEO_PHASES},
           "compile_s": v.get("compile_overhead_s", 0.0), "median_forward_s": v.get("median_forward_s"),
           "median_step_s": v.get("median_step_s"), "peak_gib": v.get("peak_gib"), "applied": run.get("applied"),
           "cp_fused": run.get("cp_fused"), "vs_one_gpu": v.get("vs_one_gpu")}
    if run["steps"] < steps and v.get("median_step_s"):
        row["extrapolated_total_s"] = round(total + (steps - run["steps"]) * v["median_step_s"], 1)
        row["extrapolated_sampling_s"] = round(v["sampling_s"] + (steps - run["steps"]) * v["median_step_s"], 1)
    row["video_s"] = row.get("extrapolated_total_s", total)
    row["video_without_compile_s"] = round(row["video_s"] - (row["compile_s"] or 0.0), 1)
    # the same video made by a process that is already up, loaded and compiled (a batch's later videos)
    sampling = row.get("extrapolated_sampling_s", row["sampling_s"])
    row["warm_process_s"] = round(sum(row[k] or 0.0 for k in VIDEO_PHASES if k != "sampling_s") + sampling
                                  - (row["compile_s"] or 0.0), 1)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--baseline", default="single")
    p.add_argument("--steps", type=int, default=35)
    args = p.parse_args()
    runs = load(args.folder)
    rows = {name: summary(run, args.steps) for name, run in runs.items() if run["videos"] == 1}
    base = rows.get(args.baseline)
    print("| run | GPUs | video s | speed-up | efficiency | w/o first-forward overhead s | efficiency | in a warm process s | "
          "efficiency | launch+import+init | load | text enc | VAE enc | sampling | first-forward overhead | VAE dec | "
          "write | s/forward | s/step | PSNR vs 1 GPU | latents max/mean |")
    print("|" + " --- |" * 21)
    for name, r in rows.items():
        sp = eff = eff2 = eff3 = ""
        if base:
            sp_v = base["video_s"] / r["video_s"]
            sp, eff = f"{sp_v:.2f}", f"{sp_v / r['gpus']:.2f}"
            eff2 = f"{base['video_without_compile_s'] / r['video_without_compile_s'] / r['gpus']:.2f}"
            eff3 = f"{base['warm_process_s'] / r['warm_process_s'] / r['gpus']:.2f}"
        vs = r["vs_one_gpu"] or {}
        psnr = "" if not vs.get("latents") else ("identical" if vs.get("frames_equal") else f"{vs['frames_psnr_db']} dB")
        lat = f"{vs['latents']['max_abs']}/{vs['latents']['mean_abs']}" if vs.get("latents") else ""
        sampling = r.get("extrapolated_sampling_s", r["sampling_s"])
        steps = f" ({r['steps']} steps, extrapolated)" if "extrapolated_total_s" in r else ""
        front = round(r["launch_s"] + r["import_s"] + r["init_s"], 1)
        print(f"| {name}{steps} | {r['gpus']} | {r['video_s']} | {sp} | {eff} | {r['video_without_compile_s']} | {eff2} | "
              f"{r['warm_process_s']} | {eff3} | "
              f"{front} | {r['load_s']} | {r['text_encoder_s']} | {r['vae_encode_s']} | {sampling} | {r['compile_s']} | "
              f"{r['vae_decode_s']} | {r['write_s']} | {r['median_forward_s']} | {r['median_step_s']} | {psnr} | {lat} |")
    batches = {name: run for name, run in runs.items() if run["videos"] > 1}
    if batches:
        print()
        print("| batch run | GPUs | videos | total s | videos / hour | first video of a process s | later videos s (median) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, run in batches.items():
            first, later = [], []
            for rk in run["ranks"]:
                for i, v in enumerate(rk["videos"]):
                    if "end_s" in v:
                        (first if i == 0 else later).append(v["end_s"] - v["start_s"])
            med = sorted(later)[len(later) // 2] if later else float("nan")
            print(f"| {name} | {run['gpus']} | {run['videos']} | {run['total_s']} | {run['videos_per_hour']} | "
                  f"{' / '.join(f'{x:.1f}' for x in first)} | {med:.1f} |")


if __name__ == "__main__":
    main()
