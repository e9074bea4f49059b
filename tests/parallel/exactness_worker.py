"""Run under torchrun (gloo, CPU): every layout that fits the world against the single-process output.

`torchrun --standalone --nproc_per_node N tests/parallel/exactness_worker.py OUT_DIR [-- PROGRAM ARGS]` writes
OUT_DIR/rank<r>.json: for each layout and case, the max abs difference between the parallel output on
this rank and the stock model's output computed by this same process; for each layout and video, whether
the sampler's frames equal the unsplit sampler's; and checks of the collectives the program uses
(share, gather_to_leader). The pytest side asserts on those files. With `-- ARGS`, it then runs the
video2world program with ARGS in the same process group and exits with its code.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.parallel.models import CASES, HEADS, VIDEOS, tiny_pipeline, tiny_transformer  # noqa: E402
from v2w_runtime import fused  # noqa: E402
from v2w_runtime.parallel.layout import Layout  # noqa: E402
from v2w_runtime.parallel import init_parallel, make_context, parallelize, parallelize_pipeline  # noqa: E402


def layouts(world: int, rank: int) -> list[Layout]:
    options = [(world, False), (world // 2, True), (1, True), (world // 2, False)]
    seen, out = set(), []
    for cp, cfg in options:
        if cp >= 1 and (cp, cfg) not in seen and world % (cp * (2 if cfg else 1)) == 0:
            seen.add((cp, cfg))
            out.append(Layout(world, rank, cp, cfg))
    return out


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    # The launch path of the program: world from the torchrun environment, gloo on CPU.
    first = init_parallel(int(__import__("os").environ["WORLD_SIZE"]), num_heads=HEADS, device="cpu",
                          context_parallel_size=2, cfg_parallel=False)
    layout0 = first.layout
    world, rank = layout0.world_size, layout0.rank
    report: dict = {"rank": rank, "world": world, "layouts": []}

    # Collectives: the group leader's tensors and objects reach its group; rank 0 gathers everyone's.
    payload = {"prompt": f"from {rank}", "embeds": (torch.full((2, 3), float(rank)), torch.arange(4))}
    shared = first.share(payload if layout0.is_group_leader else None)
    leader = layout0.group_index * layout0.group_size
    report["share_ok"] = bool(
        shared["prompt"] == f"from {leader}"
        and torch.equal(shared["embeds"][0], torch.full((2, 3), float(leader)))
        and torch.equal(shared["embeds"][1], torch.arange(4))
    )
    gathered = first.gather_to_leader({"rank": rank})
    report["gather_ok"] = gathered == [{"rank": r} for r in range(world)] if rank == 0 else gathered is None

    for case in CASES:
        model = tiny_transformer(learnable_pos=case.learnable_pos)
        inputs = case.inputs()
        with torch.no_grad():
            reference = model(**inputs, return_dict=False)[0]
        for layout in layouts(world, rank):
            ctx = make_context(layout, torch.device("cpu"), "gloo")
            parallel = parallelize(copy.deepcopy(model), ctx)
            with torch.no_grad():
                out = parallel(**inputs, return_dict=False)[0]
                out2 = parallel(**inputs).sample  # a second step through the cached rotary embedding
            fused_diff = None
            if fused.supports(model) is None:  # the GPU path's fused blocks on this rank's slice (eager, SDPA)
                parallel.use_fused("sdpa")
                with torch.no_grad():
                    fused_out = parallel(**inputs, return_dict=False)[0]
                parallel.use_fused(None)
                fused_diff = (fused_out - reference).abs().max().item()
            report["layouts"].append({
                "fused_max_abs_diff": fused_diff,
                "case": case.name,
                "cp": layout.cp_size,
                "cfg": layout.cfg_parallel,
                "groups": layout.num_groups,
                "shape_ok": out.shape == reference.shape,
                "max_abs_diff": max((out - reference).abs().max().item(), (out2 - reference).abs().max().item()),
                "bitwise": bool(torch.equal(out, reference) and torch.equal(out2, reference)),
            })
    report["videos"] = check_videos(world, rank)
    first.barrier()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(report, indent=1))


def check_videos(world: int, rank: int) -> list[dict]:
    """The whole sampler (text encoder, VAE, DiT, scheduler) per layout against the same sampler unsplit."""
    results = []
    for video in VIDEOS:
        base = tiny_pipeline()
        with torch.no_grad():
            expected = base(video.frames(), **video.kwargs())
        for layout in layouts(world, rank):
            if layout.cfg_parallel and video.guidance <= 1.0:
                continue  # the CLI refuses --cfg_parallel without guidance
            pipe = tiny_pipeline()
            calls = []
            pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
            parallelize_pipeline(pipe, make_context(layout, torch.device("cpu"), "gloo"))
            with torch.no_grad():
                got = pipe(video.frames(), **video.kwargs())
            results.append({
                "video": video.name,
                "cp": layout.cp_size,
                "cfg": layout.cfg_parallel,
                "groups": layout.num_groups,
                "leader": layout.is_group_leader,
                "text_encoder_calls": len(calls),
                "frames_equal": bool((got.frames == expected.frames).all()),
                "frames_max_diff": int(abs(got.frames.astype(int) - expected.frames.astype(int)).max()),
            })
    return results


if __name__ == "__main__":
    main(sys.argv[1])
    if "--" in sys.argv:
        from v2w_runtime.video2world import main as program

        sys.exit(program(sys.argv[sys.argv.index("--") + 1 :]))  # reuses the process group, closes it
    torch.distributed.destroy_process_group()
