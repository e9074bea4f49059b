"""Loading a diffusers-format Video2World checkpoint (local, pvc:// or s3://) and a post-trained DiT.

An S3 checkpoint is downloaded once into a local cache and reused. Every component folder is checked
before any weight is read, and a `--dit_path` file must match the transformer tensor for tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import storage

COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
# The file each component folder must hold (any one of the listed names).
_REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "transformer": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("tokenizer_config.json", "tokenizer.json", "spiece.model"),
    "scheduler": ("scheduler_config.json",),
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")

DEFAULT_CHECKPOINTS = {
    "2B": "checkpoints/nvidia/Cosmos-Predict2-2B-Video2World",
    "14B": "checkpoints/nvidia/Cosmos-Predict2-14B-Video2World",
}
CACHE_ENV = "V2W_CACHE_DIR"


class CheckpointError(ValueError):
    """A checkpoint folder or DiT file cannot be used; the message names it and what is wrong."""


def cache_dir() -> Path:
    """Where S3 checkpoints and inputs are downloaded ($V2W_CACHE_DIR, else ~/.cache/v2w)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "v2w")


def default_checkpoint(model_size: str) -> str:
    if model_size not in DEFAULT_CHECKPOINTS:
        raise CheckpointError(f"model size {model_size!r}: choose one of {', '.join(DEFAULT_CHECKPOINTS)}")
    return DEFAULT_CHECKPOINTS[model_size]


def resolve_checkpoint(uri: str, cache: Path | None = None) -> Path:
    """A local folder holding the checkpoint at `uri`, checked to have every component."""
    try:
        path = storage.fetch_tree(uri, cache or cache_dir())
    except storage.StorageError as exc:
        raise CheckpointError(f"checkpoint {uri}: {exc}") from None
    check_checkpoint(path, uri)
    return path


def check_checkpoint(path: Path, name: str) -> None:
    missing = []
    for component in COMPONENTS:
        folder = path / component
        if not folder.is_dir():
            missing.append(f"{component}/ (folder missing)")
            continue
        files = {p.name for p in folder.iterdir()}
        if not any(f in files for f in _REQUIRED_FILES[component]):
            missing.append(f"{component}/{_REQUIRED_FILES[component][0]}")
        if component in ("transformer", "vae", "text_encoder") and not any(f.endswith(_WEIGHT_SUFFIXES) for f in files):
            missing.append(f"{component}/ weights (*.safetensors)")
    if missing:
        raise CheckpointError(
            f"checkpoint {name} is not a complete diffusers Video2World folder; missing: {', '.join(missing)}"
        )


@dataclass
class LoadedModel:
    """The components of a Video2World model and where they came from."""

    components: dict
    checkpoint: str
    dit_path: str | None = None
    info: dict = field(default_factory=dict)


def load_components(
    uri: str,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    dit_path: str | None = None,
    cache: Path | None = None,
) -> LoadedModel:
    """Load every component; the DiT's weights are replaced by `dit_path` when given.

    The text encoder and VAE follow `dtype` like the transformer, except that float16 keeps the T5
    encoder in float32 (T5 overflows in float16).
    """
    from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler
    from transformers import AutoTokenizer, T5EncoderModel

    cache = cache or cache_dir()
    path = resolve_checkpoint(uri, cache)
    dit_file = None
    if dit_path:  # fetched and opened before the heavy loading, so a bad file fails fast
        try:
            dit_file = storage.fetch_file(dit_path, cache)
        except storage.StorageError as exc:
            raise CheckpointError(f"--dit_path {dit_path}: {exc}") from None
    try:
        transformer = CosmosTransformer3DModel.from_pretrained(path / "transformer", dtype=dtype)
        vae = AutoencoderKLWan.from_pretrained(path / "vae", dtype=dtype)
        text_dtype = torch.float32 if dtype == torch.float16 else dtype
        text_encoder = T5EncoderModel.from_pretrained(path / "text_encoder", dtype=text_dtype)
        tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(path / "scheduler")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {uri}: cannot load ({type(exc).__name__}: {exc})") from None
    info = {"checkpoint": uri, "transformer_config": dict(transformer.config), "dtype": str(dtype).removeprefix("torch.")}
    if dit_file is not None:
        info["dit"] = apply_dit_weights(transformer, dit_file, dit_path)
    for module in (transformer, vae, text_encoder):
        module.to(device).eval().requires_grad_(False)
    components = dict(
        transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
    )
    return LoadedModel(components=components, checkpoint=uri, dit_path=dit_path, info=info)


def apply_dit_weights(transformer: torch.nn.Module, file: Path, name: str) -> dict:
    """Replace the transformer's weights with a safetensors file's; every tensor must match.

    Keys may carry a leading `net.` or `model.` (as post-training tools save them). Returns a summary
    for the run record.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"--dit_path {name}: not a readable safetensors file ({exc})") from None
    for prefix in ("net.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    expected = transformer.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        details = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if items:
                shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
                details.append(f"{len(items)} {label}: {shown}")
        raise CheckpointError(
            f"--dit_path {name} does not match the transformer architecture ({'; '.join(details)})"
        )
    transformer.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return {"path": name, "tensors": len(state)}


__all__ = [
    "COMPONENTS",
    "CheckpointError",
    "LoadedModel",
    "apply_dit_weights",
    "cache_dir",
    "check_checkpoint",
    "default_checkpoint",
    "load_components",
    "resolve_checkpoint",
]
