"""Time the parallel DiT forward at the real model sizes (random bf16 weights), for the GPU scaling run.

    torchrun --nproc_per_node=8 bench/parallel_forward.py --model 2B --layouts 2,4,8,cfgx1,cfgx2,cfgx4
    python bench/parallel_forward.py --simulate --layouts 2,4,8,cfgx4     # one GPU, see below

A layout is `N` (Ulysses over N ranks) or `cfgxN` (CFG pair x Ulysses N); every layout whose group
size divides the world runs, with the rest of the world as data-parallel groups doing the same.
Each rank also runs the stock forward once and reports the largest difference from it. Rank 0 prints
one JSON line per layout: seconds per forward (batch 2 by default: cond + uncond, as the sampler calls it) and
the speed-up over the stock forward on one GPU.

`--simulate` (one process): the collectives are replaced by local copies of the same sizes, so the
time is one rank's compute and memory traffic without the wire; an upper bound for the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from v2w_runtime.parallel.launch import ParallelContext, init_parallel, make_context
from v2w_runtime.parallel.layout import Layout
from v2w_runtime.parallel.transformer import ParallelCosmosTransformer

MODELS = {
    "2B": dict(num_attention_heads=16, num_layers=28, rope_scale=(1.0, 3.0, 3.0), text_embed_dim=1024),
    "14B": dict(num_attention_heads=40, num_layers=36, rope_scale=(20 / 24, 2.0, 2.0), text_embed_dim=1024),
}
LATENTS = {"720": (88, 160), "480": (60, 104)}  # 1280x704 and 832x480 at 16:9, / 8


def build_model(size: str, device: torch.device):
    from diffusers import CosmosTransformer3DModel

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 on the GPU: the 14B fits without an fp32 copy
    with device:
        torch.manual_seed(0)
        model = CosmosTransformer3DModel(
            in_channels=17, out_channels=16, attention_head_dim=128, mlp_ratio=4.0, adaln_lora_dim=256,
            max_size=(128, 240, 240), patch_size=(1, 2, 2), concat_padding_mask=True, extra_pos_embed_type=None,
            **MODELS[size],
        )
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.02)
    torch.set_default_dtype(default)
    return model.eval()


def make_inputs(resolution: str, frames: int, device: torch.device, batch: int = 2) -> dict:
    h, w = LATENTS[resolution]
    t = (frames - 1) // 4 + 1
    bf = torch.bfloat16
    g = torch.Generator(device=device).manual_seed(1)
    timestep = torch.full((batch, 1, t, 1, 1), 0.5, device=device, dtype=bf)
    timestep[:, :, :1] = 0.0001
    cond = torch.zeros(batch, 1, t, h, w, device=device, dtype=bf)
    cond[:, :, :1] = 1
    return dict(
        hidden_states=torch.randn(batch, 16, t, h, w, device=device, generator=g).to(bf),
        timestep=timestep,
        encoder_hidden_states=torch.randn(batch, 512, 1024, device=device, generator=g).to(bf),
        fps=16, condition_mask=cond, padding_mask=torch.zeros(1, 1, h * 8, w * 8, device=device, dtype=bf),
        return_dict=False,
    )


def parse_layout(text: str) -> tuple[int, bool]:
    cfg = text.startswith("cfgx")
    return int(text[4:] if cfg else text), cfg


def seconds_per_call(fn, warmup: int, iters: int, barrier) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        for _ in range(warmup):
            out = fn()
        torch.cuda.synchronize()
        barrier()
        start = time.perf_counter()
        for _ in range(iters):
            out = fn()
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters, out


def _simulated_collectives() -> None:
    def all_to_all_single(out, inp, output_split_sizes=None, input_split_sizes=None, group=None):
        out.view(-1).copy_(inp.reshape(-1)[: out.numel()])

    def all_gather_into_tensor(out, inp, group=None):
        out.copy_(inp.repeat(out.shape[0] // inp.shape[0], *([1] * (inp.ndim - 1))))

    dist.all_to_all_single = all_to_all_single
    dist.all_gather_into_tensor = all_gather_into_tensor


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench/parallel_forward.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="2B")
    p.add_argument("--resolution", choices=sorted(LATENTS), default="720")
    p.add_argument("--num_frames", type=int, default=93)
    p.add_argument("--layouts", default="2,4,8,cfgx1,cfgx2,cfgx4", help="comma-separated: N or cfgxN")
    p.add_argument("--batch", type=int, choices=[1, 2], default=2,
                   help="2: cond + uncond in one forward, as the sampler runs with guidance (CFG layouts need it)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--simulate", action="store_true", help="one process, collectives replaced by local copies")
    args = p.parse_args(argv)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    heads = MODELS[args.model]["num_attention_heads"]
    base = init_parallel(world, num_heads=heads, guidance=True, num_videos=world, device="cuda")
    device, rank = base.device, base.layout.rank
    barrier = base.barrier
    if args.simulate:
        if world != 1:
            raise SystemExit("--simulate runs as one process")
        _simulated_collectives()

    model = build_model(args.model, device)
    inputs = make_inputs(args.resolution, args.num_frames, device, args.batch)
    stock_s, reference = seconds_per_call(lambda: model(**inputs)[0], args.warmup, args.iters, barrier)
    info = dict(model=args.model, resolution=args.resolution, frames=args.num_frames, batch=args.batch, world=world,
                simulated=args.simulate, device=torch.cuda.get_device_name(device))
    if rank == 0:
        print(json.dumps({**info, "layout": "stock, one GPU", "s_per_forward": round(stock_s, 4)}), flush=True)

    stock_processors = [block.attn1.processor for block in model.transformer_blocks]
    for text in args.layouts.split(","):
        cp, cfg = parse_layout(text.strip())
        group = cp * (2 if cfg else 1)
        size = group if args.simulate else world
        if size % group or heads % cp:
            if rank == 0:
                print(json.dumps({"layout": text, "skipped": f"group {group} vs world {size}, {heads} heads"}))
            continue
        layout = Layout(size, 0 if args.simulate else rank, cp, cfg)
        ctx = ParallelContext(layout, device) if args.simulate else make_context(layout, device, base.backend)
        wrapped = ParallelCosmosTransformer(model, ctx)
        seconds, out = seconds_per_call(lambda: wrapped(**inputs)[0], args.warmup, args.iters, barrier)
        for block, proc in zip(model.transformer_blocks, stock_processors):
            block.attn1.set_processor(proc)
        diff = torch.tensor([(out.float() - reference.float()).abs().max().item()], device=device)
        if base.distributed:
            dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        if rank == 0:
            print(json.dumps({
                **info, "layout": text, "groups": layout.num_groups, "s_per_forward": round(seconds, 4),
                "speedup_vs_one_gpu": round(stock_s / seconds, 3),
                "max_abs_diff_vs_stock": None if args.simulate else diff.item(),
            }), flush=True)
    base.close()


if __name__ == "__main__":
    main()
