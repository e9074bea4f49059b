"""Loading a located Video2World model into diffusers' classes, whatever layout each component is in.

Everything is found and checked first (`resolve_model(...).require()`, the DiT's size, a `--dit_path`
file fetched and opened), then every file the components read is fetched (from S3 through the node's
cache: the "download" part of a cold start), then the weights load: diffusers folders with
`from_pretrained`, upstream's native DiT and VAE converted in memory by the rule tables of `convert`, T5
from the t5-11b folder (its encoder only), the scheduler built as diffusers' Cosmos2 pipeline is saved with.

How the weights travel (`direct=True`, the default): every module is made on the meta device and each
tensor goes from the memory-mapped file straight to the target device, cast there one tensor at a time
(`from_pretrained(..., device_map={"": device})` in diffusers and transformers, which build on meta and
place tensor by tensor; our own `_build` for native files, which `torch.load(mmap=True)` maps without
reading). No whole model is ever staged in host memory, in float32 or at all. The T5 encoder (the largest
read: t5-11b is float32 on disk) loads in a thread while the DiT and the VAE load in the caller's:
safetensors, `torch.load`'s reads and host-to-device copies release the GIL. `direct=False` is the earlier
path (everything built in host memory, one after the other, then moved), kept for the cold-start benchmark.
Each component's seconds are logged and kept in `LoadedModel.info["load_seconds"]`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
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
    direct: bool = True,
    concurrent: bool | None = None,
) -> LoadedModel:
    """Load every component; the DiT's weights are replaced by `dit_path` when given.

    `source` is a located model or a URI in any accepted layout (then `model_size`, `resolution` and `fps`
    choose the model and, in upstream's tree, the DiT variant). The text encoder and VAE follow `dtype`
    like the transformer, except that float16 keeps the T5 encoder in float32 (T5 overflows in float16).
    `direct` loads each tensor straight onto `device` (see the module's docstring); `concurrent` (default:
    as `direct`) loads the T5 encoder in a thread beside the DiT and the VAE.
    """
    started = time.perf_counter()
    concurrent = direct if concurrent is None else concurrent
    target = torch.device(device) if direct else None
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
    seconds: dict[str, float] = {}
    try:
        # Every file first (S3: through the node's cache), so that the loads below only read local files
        clock = time.perf_counter()
        text_folder, tokenizer_folder = fetch_components(found)
        seconds["fetch"] = time.perf_counter() - clock
        from diffusers import FlowMatchEulerDiscreteScheduler
        from transformers import AutoTokenizer, T5EncoderModel

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2w-load-t5") as pool:
            # the T5 encoder's bytes are read from disk while the DiT and the VAE load; see `_read_ahead`
            reading = pool.submit(_timed, seconds, "text_encoder_read", _read_ahead, found["text_encoder"]) \
                if concurrent else None
            transformer = _timed(seconds, "transformer", _transformer, source, config, dtype, target)
            vae = _timed(seconds, "vae", _vae, source, dtype, target)
            if reading is not None:
                reading.result()
        text_encoder = _timed(seconds, "text_encoder", _t5_encoder, T5EncoderModel, text_folder, text_dtype,
                              found["text_encoder"].uri, target)
        tokenizer = _timed(seconds, "tokenizer", AutoTokenizer.from_pretrained, tokenizer_folder)
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
    clock = time.perf_counter()
    for module in (transformer, vae, text_encoder):
        module.to(device).eval().requires_grad_(False)
    _synchronize(device)  # the direct path's copies may still be in flight: they count as loading
    seconds["to_device"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started
    info["load_seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    log.info("loaded %s in %.1f s (%s; %s)", source.uri, seconds["total"],
             ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total"),
             "direct to " + str(device) + (", T5 beside the DiT" if concurrent else "") if direct
             else "built in host memory, then moved")
    if source.variant:
        log.info("DiT: %s (the %sp %s fps model of %s)", found["transformer"].uri, source.resolution,
                 variant_fps(source.fps), source.layout)
    components = dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    return LoadedModel(components=components, checkpoint=source.uri, dit_path=dit_path, info=info)


def _timed(seconds: dict[str, float], name: str, load, *args):
    """`load(*args)`, its wall seconds kept under `name`."""
    clock = time.perf_counter()
    try:
        return load(*args)
    finally:
        seconds[name] = time.perf_counter() - clock


def _synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def _fetch(found) -> None:
    """The files of a component on local disk (S3: downloaded into the cache now; local trees: nothing to do)."""
    if found.kind == "diffusers":
        _folder(found)
    elif found.tree is not None:
        found.tree.local(found.path)


def fetch_components(found: dict) -> tuple[Path, Path]:
    """Every file the load reads, on local disk (S3: downloaded through the node's cache now); returns the
    T5 encoder's and the tokenizer's folders."""
    text_folder = _folder(found["text_encoder"])
    tokenizer_folder = _folder(found["tokenizer"])
    for name in ("transformer", "vae"):
        _fetch(found[name])
    return text_folder, tokenizer_folder


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_ranges(found, encoder_only: bool = False) -> list[tuple[Path, int, int]]:
    """The byte ranges (file, start, end) of a fetched component's weight files that its load reads: whole files,
    or with `encoder_only` of a safetensors file only the T5 encoder's tensors (t5-11b keeps its decoder too)."""
    from .files import SAFETENSORS

    ranges: list[tuple[Path, int, int]] = []
    for rel in found.files:
        if not rel.endswith(WEIGHT_SUFFIXES):
            continue
        path = found.tree.local(rel)
        if encoder_only and path.suffix.lower() in SAFETENSORS:
            ranges += [(path, start, end) for start, end in _encoder_ranges(path)]
        else:
            ranges.append((path, 0, path.stat().st_size))
    return ranges


def read_ranges(ranges: list[tuple[Path, int, int]], chunk: int = 64 << 20) -> int:
    """Read these byte ranges once, into the page cache (the bytes themselves are dropped); returns the bytes read."""
    view = memoryview(bytearray(chunk))
    total = 0
    for path, start, end in ranges:
        with open(path, "rb", buffering=0) as fh:
            fh.seek(start)
            while start < end:
                got = fh.readinto(view[:min(chunk, end - start)])
                if not got:
                    break
                start += got
                total += got
    return total


def _read_ahead(found) -> int:
    """Read the T5 encoder's weights from disk into the page cache (returns the bytes read).

    This is how the T5 loads "beside" the DiT: the part of its load that is waiting for the disk runs in a
    thread (reads release the GIL), and `from_pretrained` then finds its bytes in memory. Its
    `from_pretrained` itself cannot run in a thread beside another model's: diffusers' and transformers'
    loaders change process-wide state while they build a model (`torch.set_default_dtype`, accelerate's
    patched `register_parameter` in `init_empty_weights`), so two at once build each other's modules wrongly
    (a parameter left on the meta device, a buffer in the other model's dtype). Of a safetensors file only the
    encoder's tensors are read; a PyTorch file (t5-11b's `pytorch_model.bin`) is read whole.
    """
    return read_ranges(weight_ranges(found, encoder_only=True))


def _encoder_ranges(path: Path) -> list[tuple[int, int]]:
    """The byte ranges of a safetensors file that hold the T5 encoder's tensors (not a decoder's or a head's)."""
    import json
    import struct

    with open(path, "rb") as fh:
        length = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(length))
    base = 8 + length
    spans = sorted((base + v["data_offsets"][0], base + v["data_offsets"][1]) for k, v in header.items()
                   if k != "__metadata__" and not k.startswith(("decoder.", "lm_head.")))
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _placement(target: torch.device | None) -> dict:
    """from_pretrained's arguments that put each tensor on `target` as it is read (none: the earlier path)."""
    return {} if target is None else {"device_map": {"": target}}


def _folder(found) -> Path:
    """A local folder with the files of this component (from S3: downloaded, those files only)."""
    wanted = set(found.files)
    head = found.path.strip("/") + "/"
    return found.tree.local_dir(found.path, keep=lambda name: head + name in wanted)


def _t5_encoder(cls, folder: Path, dtype: torch.dtype, name: str, target: torch.device | None = None):
    """The T5 encoder of a folder holding a T5 encoder or a whole T5 (t5-11b: its decoder and head are not
    read). A weight of the encoder that the folder lacks is an error naming it, not a random initialisation."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the decoder's head, left unread on purpose, is not worth a warning
    try:
        model, loading = cls.from_pretrained(folder, dtype=dtype, output_loading_info=True, **_placement(target))
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


def _transformer(source: ModelSource, config: dict, dtype: torch.dtype, target: torch.device | None = None):
    from diffusers import CosmosTransformer3DModel

    found = source.components["transformer"]
    if found.kind == "diffusers":
        _check_files(found)
        return CosmosTransformer3DModel.from_pretrained(_folder(found), dtype=dtype, **_placement(target))
    state, config = source.native_dit()
    return _build(CosmosTransformer3DModel, config, state, DIT, found.uri, dtype, target)


def _vae(source: ModelSource, dtype: torch.dtype, target: torch.device | None = None):
    from diffusers import AutoencoderKLWan

    found = source.components["vae"]
    if found.kind == "diffusers":
        _check_files(found)
        return AutoencoderKLWan.from_pretrained(_folder(found), dtype=dtype, **_placement(target))
    name = found.uri
    unwrapped = unwrap_state(read_tensors(found.tree.local(found.path), name), name)
    config = wan_vae_config(unwrapped.state, name)
    table = wan_vae_table(config)
    state = table.to_diffusers(unwrapped.state, name)
    return _build(AutoencoderKLWan, config, state, table, name, dtype, target)


def _build(cls, config: dict, state: dict, table, name: str, dtype: torch.dtype, target: torch.device | None = None):
    """A diffusers model of `config` holding `state` in `dtype` (built on the meta device: no weight is made
    twice; the modules diffusers keeps in float32 stay float32, as from_pretrained keeps them).

    Each tensor is cast and placed on `target` on its own as it is taken from `state` (memory-mapped), so at
    most one converted tensor is in flight: never a float32 copy of the whole model. A tensor already in the
    wanted dtype and place is used as it is (on the CPU: the mapped file itself)."""
    with torch.device("meta"):
        model = cls(**config)
    table.check(state, {k: v.shape for k, v in model.state_dict().items()}, name)
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())

    def cast(key: str, value: torch.Tensor) -> torch.Tensor:
        if not value.is_floating_point():
            return value if target is None else value.to(target)
        wanted = torch.float32 if any(part in key.split(".") for part in keep) else dtype
        return value.to(wanted) if target is None else value.to(device=target, dtype=wanted)

    placed = {key: cast(key, value) for key, value in state.items()}  # one tensor at a time, in file order
    model.load_state_dict(placed, strict=True, assign=True)
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
