"""What every part of the checkpoint package shares: the error, the download cache, the model sizes."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "V2W_CACHE_DIR"

# Where the seed's download script puts each model (relative to the working directory).
DEFAULT_CHECKPOINTS = {
    "2B": "checkpoints/nvidia/Cosmos-Predict2-2B-Video2World",
    "14B": "checkpoints/nvidia/Cosmos-Predict2-14B-Video2World",
}

# The Video2World DiTs by model size (diffusers' CosmosTransformer3DModel config keys). The layer and head
# counts tell a 2B checkpoint from a 14B one; rope_scale is not in the weights, so it comes from here for a
# native checkpoint. Source: diffusers' conversion script (TRANSFORMER_CONFIGS, "Cosmos-2.0-Diffusion-*-
# Video2World") and upstream's config_video2world.py (rope_*_extrapolation_ratio).
ARCHITECTURES: dict[str, dict] = {
    "2B": {"num_layers": 28, "num_attention_heads": 16, "attention_head_dim": 128, "rope_scale": (1.0, 3.0, 3.0)},
    "14B": {"num_layers": 36, "num_attention_heads": 40, "attention_head_dim": 128, "rope_scale": (20 / 24, 2.0, 2.0)},
}
# What every Video2World DiT shares and its weights do not say.
DIT_FIXED = {"max_size": (128, 240, 240), "patch_size": (1, 2, 2), "concat_padding_mask": True,
             "extra_pos_embed_type": None}


class CheckpointError(ValueError):
    """A checkpoint folder, tree or DiT file cannot be used; the message names it and what is wrong."""


def cache_dir() -> Path:
    """Where S3 checkpoints and inputs are downloaded ($V2W_CACHE_DIR, else ~/.cache/v2w)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "v2w")


def default_checkpoint(model_size: str) -> str:
    if model_size not in DEFAULT_CHECKPOINTS:
        raise CheckpointError(f"model size {model_size!r}: choose one of {', '.join(DEFAULT_CHECKPOINTS)}")
    return DEFAULT_CHECKPOINTS[model_size]


def human_size(num_bytes: int) -> str:
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def shown(items: list[str], limit: int = 5) -> str:
    """A list for a message: the first few, then how many more."""
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def size_of(architecture: dict) -> str | None:
    """The model size whose DiT has these layers and heads, or None (a smaller test model, say)."""
    for size, known in ARCHITECTURES.items():
        if all(architecture.get(k) == known[k] for k in ("num_layers", "num_attention_heads", "attention_head_dim")):
            return size
    return None


def describe_architecture(architecture: dict) -> str:
    return (f"{architecture['num_layers']} layers, {architecture['num_attention_heads']} heads x "
            f"{architecture['attention_head_dim']}")


def check_model_size(architecture: dict, model_size: str, where: str) -> None:
    """A 2B DiT run as the 14B (or the other way round) is refused naming both, before any weight is read."""
    found = size_of(architecture)
    if found is not None and found != model_size:
        raise CheckpointError(
            f"{where} holds the {found} DiT ({describe_architecture(architecture)}) but the run's model size is "
            f"{model_size} (--model_size / spec.model.size): run it as {found}, or point the checkpoint at the "
            f"{model_size} model"
        )


__all__ = [
    "ARCHITECTURES",
    "CACHE_ENV",
    "DEFAULT_CHECKPOINTS",
    "DIT_FIXED",
    "CheckpointError",
    "cache_dir",
    "check_model_size",
    "default_checkpoint",
    "describe_architecture",
    "human_size",
    "shown",
    "size_of",
]
