"""Loading a located Video2World model into diffusers' classes, whatever layout each component is in.

Everything is found and checked first (`resolve_model(...).require()`, the DiT's size, a `--dit_path`
file fetched and opened), then the weights load: diffusers folders with `from_pretrained`, upstream's
native DiT and VAE converted in memory by the rule tables of `convert`, T5 from the t5-11b folder (its
encoder only), the scheduler built as diffusers' Cosmos2 pipeline is saved with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import storage
from ..cache import fetch_checkpoint_file
from .common import CheckpointError, cache_dir, check_model_size, describe_architecture, shown, size_of
from .convert import DIT, dit_config, dit_naming, dit_to_diffusers, unwrap_state, wan_vae_config, wan_vae_table
from .files import read_tensors
from .layouts import BUILTIN_SCHEDULER, ModelSource, resolve_model, variant_fps

log = logging.getLogger("v2w_runtime")


@dataclass
class LoadedModel:
    """The components of a Video2World model and where they came from."""

    components: dict
    checkpoint: str
    dit_path: str | None = None
    info: dict = field(default_factory=dict)


def load_components(
    source: ModelSource | str,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    dit_path: str | None = None,
    cache: Path | None = None,
    *,
    model_size: str = "2B",
    resolution: int = 720,
    fps: int = 16,
) -> LoadedModel:
    """Load every component; the DiT's weights are replaced by `dit_path` when given.

    `source` is a located model or a URI in any accepted layout (then `model_size`, `resolution` and `fps`
    choose the model and, in upstream's tree, the DiT variant). The text encoder and VAE follow `dtype`
    like the transformer, except that float16 keeps the T5 encoder in float32 (T5 overflows in float16).
    """
    cache = cache or cache_dir()
    if isinstance(source, str):
        source = resolve_model(source, model_size, resolution, fps, cache)
    source.require()
    config = source.architecture()  # refuses the other model size before any weight is read
    dit_file = None
    if dit_path:  # fetched and opened before the heavy loading, so a bad file fails fast
        try:
            dit_file = fetch_checkpoint_file(dit_path, cache)
        except storage.StorageError as exc:
            if exc.retryable:  # an unreachable or busy endpoint: retried, not bad input
                raise
            raise CheckpointError(f"--dit_path {dit_path}: {exc}") from None
    text_dtype = torch.float32 if dtype == torch.float16 else dtype
    found = source.components
    try:
        transformer = _transformer(source, config, dtype)
        vae = _vae(source, dtype)
        text_folder = _folder(found["text_encoder"])
        tokenizer_folder = _folder(found["tokenizer"])
        from diffusers import FlowMatchEulerDiscreteScheduler
        from transformers import AutoTokenizer, T5EncoderModel

        text_encoder = _t5_encoder(T5EncoderModel, text_folder, text_dtype, found["text_encoder"].uri)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
        if found["scheduler"].kind == "builtin":
            scheduler = FlowMatchEulerDiscreteScheduler(**BUILTIN_SCHEDULER)
        else:
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(_folder(found["scheduler"]))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {source.uri}: cannot load ({type(exc).__name__}: {exc})") from None
    info = {**source.record(), "transformer_config": dict(transformer.config), "dtype": str(dtype).removeprefix("torch.")}
    if source.notes:
        info["notes"] = list(source.notes)
    if source._dit is not None and source._dit["notes"]:
        info["dit_file"] = source._dit["notes"]
    source.release_dit()
    if dit_file is not None:
        info["dit"] = apply_dit_weights(transformer, dit_file, dit_path, source.model_size)
    for module in (transformer, vae, text_encoder):
        module.to(device).eval().requires_grad_(False)
    if source.variant:
        log.info("DiT: %s (the %sp %s fps model of %s)", found["transformer"].uri, source.resolution,
                 variant_fps(source.fps), source.layout)
    components = dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    return LoadedModel(components=components, checkpoint=source.uri, dit_path=dit_path, info=info)


def _folder(found) -> Path:
    """A local folder with the files of this component (from S3: downloaded, those files only)."""
    wanted = set(found.files)
    head = found.path.strip("/") + "/"
    return found.tree.local_dir(found.path, keep=lambda name: head + name in wanted)


def _t5_encoder(cls, folder: Path, dtype: torch.dtype, name: str):
    """The T5 encoder of a folder holding a T5 encoder or a whole T5 (t5-11b: its decoder and head are not
    read). A weight of the encoder that the folder lacks is an error naming it, not a random initialisation."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the decoder's head, left unread on purpose, is not worth a warning
    try:
        model, loading = cls.from_pretrained(folder, dtype=dtype, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(loading.get("missing_keys") or [])
    wrong = sorted(str(k) for k in loading.get("mismatched_keys") or [])
    if missing or wrong:
        raise CheckpointError(f"{name}: the T5 encoder's weights are incomplete ("
                              + "; ".join(p for p in (f"{len(missing)} missing: {shown(missing)}" if missing else "",
                                                      f"{len(wrong)} of the wrong shape: {shown(wrong)}" if wrong else "")
                                          if p) + ")")
    return model


def _transformer(source: ModelSource, config: dict, dtype: torch.dtype):
    from diffusers import CosmosTransformer3DModel

    found = source.components["transformer"]
    if found.kind == "diffusers":
        _check_files(found)
        return CosmosTransformer3DModel.from_pretrained(_folder(found), dtype=dtype)
    state, config = source.native_dit()
    return _build(CosmosTransformer3DModel, config, state, DIT, found.uri, dtype)


def _vae(source: ModelSource, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan

    found = source.components["vae"]
    if found.kind == "diffusers":
        _check_files(found)
        return AutoencoderKLWan.from_pretrained(_folder(found), dtype=dtype)
    name = found.uri
    unwrapped = unwrap_state(read_tensors(found.tree.local(found.path), name), name)
    config = wan_vae_config(unwrapped.state, name)
    table = wan_vae_table(config)
    state = table.to_diffusers(unwrapped.state, name)
    return _build(AutoencoderKLWan, config, state, table, name, dtype)


def _build(cls, config: dict, state: dict, table, name: str, dtype: torch.dtype):
    """A diffusers model of `config` holding `state` in `dtype` (built on the meta device: no weight is made
    twice; the modules diffusers keeps in float32 stay float32, as from_pretrained keeps them)."""
    with torch.device("meta"):
        model = cls(**config)
    table.check(state, {k: v.shape for k, v in model.state_dict().items()}, name)
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())

    def cast(key: str, value: torch.Tensor) -> torch.Tensor:
        if not value.is_floating_point():
            return value
        wanted = torch.float32 if any(part in key.split(".") for part in keep) else dtype
        return value.to(wanted)

    model.load_state_dict({k: cast(k, v) for k, v in state.items()}, strict=True, assign=True)
    return model


def _check_files(found) -> None:
    """A truncated or corrupt weight file of a diffusers folder is named before from_pretrained meets it (from
    S3: the downloaded copy, named by its S3 URI)."""
    from .files import check_file

    for rel in found.files:
        if rel.endswith((".safetensors", ".bin", ".json")):
            problem = check_file(found.tree.local(rel), found.tree.uri_of(rel))
            if problem:
                raise CheckpointError(f"{found.tree.uri_of(rel)} {problem}")


def apply_dit_weights(transformer: torch.nn.Module, file: Path, name: str, model_size: str | None = None) -> dict:
    """Replace the transformer's weights with a post-trained DiT's; every tensor must match.

    The file may be safetensors or a PyTorch checkpoint (.pt/.pth), in diffusers' key names or upstream's
    native ones (`net.blocks.N...`), with `net.`, `model.`, `module.` or EMA (`net_ema.`) prefixes and
    wrapped in a training checkpoint's `model` / `state_dict`. Returns a summary for the run record.
    """
    label = f"--dit_path {name}"
    unwrapped = unwrap_state(read_tensors(file, label), label)
    naming = dit_naming(unwrapped.state, label)
    state = dit_to_diffusers(unwrapped.state, label)
    expected = transformer.state_dict()
    _refuse_other_size(state, transformer, label, model_size)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        details = []
        for label_, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if items:
                shown_ = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
                details.append(f"{len(items)} {label_}: {shown_}")
        raise CheckpointError(f"{label} does not match the transformer architecture ({'; '.join(details)})")
    transformer.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    out = {"path": name, "tensors": len(state), "names": naming}
    if unwrapped.notes:
        out["read"] = unwrapped.notes
    return out


def _refuse_other_size(state: dict, transformer, label: str, model_size: str | None) -> None:
    """A post-trained 2B DiT given to the 14B model (or the other way) is named as such."""
    try:
        found = dit_config(state, model_size or "2B", label)
    except CheckpointError:
        return  # not even a DiT's shape: the key-by-key comparison says what is wrong
    ours = dict(transformer.config)
    keys = ("num_layers", "num_attention_heads", "attention_head_dim")
    if all(found[k] == ours[k] for k in keys):
        return
    theirs, mine = size_of(found), size_of(ours)
    if theirs or mine:
        raise CheckpointError(
            f"{label} holds {'the ' + theirs + ' DiT' if theirs else 'a DiT'} ({describe_architecture(found)}) but "
            f"the run's model is {'the ' + mine if mine else 'a DiT'} of {describe_architecture(ours)}"
            + (f" (--model_size {model_size})" if model_size else "")
        )


__all__ = ["LoadedModel", "apply_dit_weights", "check_model_size", "load_components"]
