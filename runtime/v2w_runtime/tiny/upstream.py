"""Tiny checkpoints in the layouts users download: upstream's `checkpoints/` tree and the Hugging Face cache.

The weights are those of `tiny.video2world.write_checkpoint(seed)` (the diffusers-format twin), written in
each release's own files, names and formats, only smaller:

    write_upstream_tree(out)   out/nvidia/Cosmos-Predict2-2B-Video2World/model-720p-16fps.pt  (native DiT keys,
                                                                                             `net.` prefix, .pt)
                               out/nvidia/Cosmos-Predict2-2B-Video2World/tokenizer/tokenizer.pth  (native Wan 2.1 VAE)
                               out/google-t5/t5-11b/{config.json, pytorch_model.bin, tokenizer.json}  (a full T5;
                                                                                             its encoder is the twin's)
                               out/nvidia/Cosmos-Reason1-7B/model-0000{1..4}-of-00004.safetensors (+ index, config,
                                                                                             processor; tiny Qwen2.5-VL)
                               + whatever `guardrail(out)` writes (nvidia/Cosmos-Guardrail1, meta-llama/Llama-Guard-3-8B)
    write_hub_cache(out)       out/models--nvidia--Cosmos-Predict2-2B-Video2World/{refs/main, blobs/, snapshots/<rev>/}

So a model loaded from any of them makes the very video of its diffusers twin. Other DiT variants
(`model-480p-16fps.pt`, ...) get weights of their own seed, so a test can tell which file a run used.
`python -m v2w_runtime.tiny.upstream --out checkpoints` writes the tree at the seed guide's path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..checkpoints.convert import DIT, wan_vae_table
from ..checkpoints.layouts import UPSTREAM_REASON1, UPSTREAM_T5, UPSTREAM_VAE, model_folder, model_repo
from .video2world import build_text_encoder, build_tokenizer, build_transformer, build_vae, write_checkpoint

DEFAULT_VARIANT = (720, 16)
# Seeds per component as write_checkpoint draws them, so the default variant is the twin's DiT.
_DIT, _VAE, _TEXT = 1, 2, 3


def native_dit_state(transformer) -> dict[str, torch.Tensor]:
    """A diffusers CosmosTransformer3DModel's weights as upstream saves its DiT: native names under `net.`,
    with the RoPE buffers and training counters upstream's checkpoints carry (and loaders drop)."""
    config = transformer.config
    state = {f"net.{k}": v.detach().clone() for k, v in DIT.to_native(transformer.state_dict()).items()}
    head_dim = config.attention_head_dim
    dim_h = head_dim // 6 * 2
    dim_t = head_dim - 2 * dim_h
    t, h, w = config.max_size
    patch_t, patch_h, patch_w = config.patch_size
    state["net.pos_embedder.seq"] = torch.arange(max(h // patch_h, w // patch_w, t // patch_t), dtype=torch.float)
    state["net.pos_embedder.dim_spatial_range"] = torch.arange(0, dim_h, 2)[: dim_h // 2].float() / dim_h
    state["net.pos_embedder.dim_temporal_range"] = torch.arange(0, dim_t, 2)[: dim_t // 2].float() / dim_t
    for counter in ("accum_video_sample_counter", "accum_image_sample_counter", "accum_iteration"):
        state[f"net.{counter}"] = torch.tensor(0, dtype=torch.int64)
    state["net.accum_train_in_hours"] = torch.tensor(0.0)
    return state


def native_vae_state(vae) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKLWan's weights as Wan 2.1's `tokenizer.pth` holds them (a flat state dict)."""
    table = wan_vae_table(dict(vae.config))
    return {k: v.detach().clone() for k, v in table.to_native(vae.state_dict()).items()}


def write_t5_11b(folder: str | Path, text_encoder, tokenizer, seed: int = 0) -> Path:
    """google-t5/t5-11b as the Hub has it: a whole T5 (encoder and decoder) in `pytorch_model.bin`, its
    config and tokenizer. The encoder is `text_encoder`'s; the decoder (which Video2World never runs) is random."""
    from transformers import T5Config, T5ForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder_config = text_encoder.config.to_dict()
    for key in ("architectures", "is_encoder_decoder", "num_decoder_layers", "use_cache", "transformers_version"):
        encoder_config.pop(key, None)
    config = T5Config(**encoder_config, num_decoder_layers=1, is_encoder_decoder=True, use_cache=True,
                      architectures=["T5ForConditionalGeneration"])
    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's generator left as it was
        torch.manual_seed(seed)
        full = T5ForConditionalGeneration(config).eval()
    missing, unexpected = full.load_state_dict(text_encoder.state_dict(), strict=False)
    if unexpected or any(k.startswith("encoder.") for k in missing):
        raise RuntimeError(f"the T5 encoder does not fit a whole T5: {unexpected or missing}")
    torch.save({k: v.contiguous() for k, v in full.state_dict().items()}, folder / "pytorch_model.bin")
    config.save_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:  # the Hub folder has tokenizer.json, not tokenizer_config.json
        tokenizer.save_pretrained(tmp)
        shutil.copy(Path(tmp) / "tokenizer.json", folder / "tokenizer.json")
    return folder


def shard_safetensors(folder: str | Path, shards: int = 4) -> list[Path]:
    """Split `model.safetensors` into `model-0000i-of-0000n.safetensors` plus the index, as the Hub's 7B
    and 8B checkpoints are stored."""
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    state = load_file(str(folder / "model.safetensors"))
    keys = sorted(state)
    size = -(-len(keys) // shards)
    written, weight_map = [], {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i * size:(i + 1) * size]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
        written.append(folder / name)
    total = sum(t.numel() * t.element_size() for t in state.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    (folder / "model.safetensors").unlink()
    return written


def write_upstream_tree(
    out: str | Path,
    seed: int = 0,
    *,
    sizes: Iterable[str] = ("2B",),
    variants: Iterable[tuple[int, int]] = (DEFAULT_VARIANT,),
    reason1: Callable[[Path], object] | None | bool = True,
    guardrail: Callable[[Path], object] | None = None,
) -> Path:
    """Write a tiny `checkpoints/` tree in upstream's layout; return its root.

    `variants` are the (resolution, fps) DiT files of each model folder; `reason1` writes
    nvidia/Cosmos-Reason1-7B (True: a tiny random Qwen2.5-VL in the release's four shards; a callable: that
    writer, given the folder; None/False: none). `guardrail`, when given, is called with the root to write
    the guardrail's release folders (nvidia/Cosmos-Guardrail1, meta-llama/Llama-Guard-3-8B).
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    base = seed * 10
    vae = build_vae(base + _VAE)
    for size in sizes:
        folder = root / model_folder(size)
        folder.mkdir(parents=True, exist_ok=True)
        for number, (resolution, fps) in enumerate(dict.fromkeys(variants)):
            # The default variant is the twin's DiT; every other one has weights of its own.
            dit_seed = base + _DIT if (resolution, fps) == DEFAULT_VARIANT else 1000 + base + 10 * number
            torch.save(native_dit_state(build_transformer(dit_seed)), folder / f"model-{resolution}p-{fps}fps.pt")
        (folder / UPSTREAM_VAE).parent.mkdir(parents=True, exist_ok=True)
        torch.save(native_vae_state(vae), folder / UPSTREAM_VAE)
    write_t5_11b(root / UPSTREAM_T5, build_text_encoder(base + _TEXT, vocab_size=len(tokenizer)), tokenizer, seed)
    if reason1:
        target = root / UPSTREAM_REASON1
        if reason1 is True:
            from .qwen import write_tiny_qwen

            write_tiny_qwen(target, seed)
            shard_safetensors(target, 4)
        else:
            reason1(target)
    if guardrail is not None:
        guardrail(root)
    (root / "TINY.md").write_text(
        f"Random tiny weights (seed {seed}) in the layout of upstream's checkpoints/ tree (nvidia/, google-t5/), "
        "for tests and demos only. The videos they make are noise.\n"
    )
    return root


def write_hub_cache(out: str | Path, seed: int = 0, size: str = "2B", revision: str | None = None) -> Path:
    """The diffusers twin as the Hub repository of `size` in a Hugging Face cache: blobs named by their
    hash, `snapshots/<rev>/` of relative links to them, `refs/main` naming the revision. Returns the repo folder."""
    repo = Path(out) / f"models--nvidia--{model_repo(size)}"
    revision = revision or hashlib.sha1(f"tiny-video2world-{seed}".encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    with tempfile.TemporaryDirectory() as tmp:
        twin = write_checkpoint(Path(tmp) / "twin", seed=seed)
        for path in sorted(p for p in twin.rglob("*") if p.is_file()):
            rel = path.relative_to(twin)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            blob = repo / "blobs" / digest
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                shutil.copyfile(path, blob)
            link = snapshot / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo


__all__ = [
    "native_dit_state",
    "native_vae_state",
    "shard_safetensors",
    "write_hub_cache",
    "write_t5_11b",
    "write_upstream_tree",
]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m v2w_runtime.tiny.upstream",
        description="Write tiny random checkpoints in upstream's checkpoints/ tree layout (or a Hugging Face cache).",
    )
    parser.add_argument("--out", required=True, help="Folder to write (the tree's root, e.g. checkpoints).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", action="append", choices=("2B", "14B"), help="Model folders to write (default 2B).")
    parser.add_argument("--variant", action="append", metavar="RESxFPS",
                        help="DiT files to write, e.g. 720x16 (default) or 480x10; repeatable.")
    parser.add_argument("--no_reason1", action="store_true", help="Leave out nvidia/Cosmos-Reason1-7B.")
    parser.add_argument("--hub_cache", action="store_true",
                        help="Write the Hugging Face cache layout (models--nvidia--...) instead of the tree.")
    args = parser.parse_args(argv)
    if args.hub_cache:
        for size in args.size or ["2B"]:
            print(f"tiny Hub cache written to {write_hub_cache(args.out, args.seed, size)}")
        return 0
    variants = [tuple(int(x) for x in v.lower().split("x")) for v in args.variant or ["720x16"]]
    root = write_upstream_tree(args.out, args.seed, sizes=args.size or ["2B"], variants=variants,
                               reason1=not args.no_reason1)
    print(f"tiny upstream checkpoints/ tree written to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
