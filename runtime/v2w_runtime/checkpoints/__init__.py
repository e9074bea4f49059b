"""Checkpoints as users have them: find, check and load a Video2World model (local, pvc:// or s3://).

Three layouts are accepted (see `layouts`): a diffusers folder, the diffusers Hub snapshot in a Hugging
Face cache, and upstream's `checkpoints/` tree as its download script writes it (native DiT and Wan VAE
converted in memory, see `convert`). `python -m v2w_runtime.checkpoints verify DIR` checks a tree before
any GPU time is spent (`verify`).

    source = resolve_model("s3://models/checkpoints", "2B", resolution=720, fps=16).require()
    loaded = load_components(source, dtype=torch.bfloat16, device="cuda")
"""

from .common import (
    ARCHITECTURES,
    CACHE_ENV,
    DEFAULT_CHECKPOINTS,
    CheckpointError,
    cache_dir,
    check_model_size,
    default_checkpoint,
)
from .layouts import (
    COMPONENTS,
    LAYOUT_DIFFUSERS,
    LAYOUT_HUB,
    LAYOUT_UPSTREAM,
    Component,
    ModelSource,
    resolve_model,
    variant_file,
)
from .load import LoadedModel, apply_dit_weights, load_components

__all__ = [
    "ARCHITECTURES",
    "CACHE_ENV",
    "COMPONENTS",
    "DEFAULT_CHECKPOINTS",
    "LAYOUT_DIFFUSERS",
    "LAYOUT_HUB",
    "LAYOUT_UPSTREAM",
    "CheckpointError",
    "Component",
    "LoadedModel",
    "ModelSource",
    "apply_dit_weights",
    "cache_dir",
    "check_model_size",
    "default_checkpoint",
    "load_components",
    "resolve_model",
    "variant_file",
]
