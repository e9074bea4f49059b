"""Weight files: read them safely, and check them without reading their weights.

`.pt`, `.pth` and `.bin` files are PyTorch's zip format read with `weights_only=True` (no code runs while
loading; Transformer Engine's `_extra_state` entries, byte buffers, are allowed) and memory-mapped, so
that the shapes can be looked at before any weight is read. `.safetensors` files are read with
safetensors. A file that cannot be read is a CheckpointError naming the file and saying whether it looks
truncated.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from .common import CheckpointError

SAFETENSORS = (".safetensors",)
TORCH_FILES = (".pt", ".pth", ".bin", ".ckpt")
_MAX_HEADER = 100 * 1024 * 1024


def check_file(path: Path, name: str) -> str | None:
    """What is wrong with a weight or config file, judged from its headers only; None when nothing is."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is empty"
    suffix = path.suffix.lower()
    try:
        if suffix in SAFETENSORS:
            return _check_safetensors(path, size)
        if suffix in TORCH_FILES:
            return _check_torch(path, size)
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"is not readable ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def _check_safetensors(path: Path, size: int) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "is truncated (shorter than a safetensors header)"
        length = struct.unpack("<Q", head)[0]
        if length > min(size - 8, _MAX_HEADER):
            return "is truncated or not a safetensors file (its header runs past the end)"
        header = json.loads(fh.read(length))
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"is truncated ({size} bytes where its header says {expected})"
    return None


def _check_torch(path: Path, size: int) -> str | None:
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic[:1] == b"\x80":  # a legacy (pre-zip) torch pickle: nothing to check cheaply
            return None
        return "is truncated or not a PyTorch checkpoint (no zip directory at its end)"
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.header_offset + info.compress_size > size:
                return f"is truncated (entry {info.filename} runs past the end)"
    return None


def read_tensors(path: Path, name: str) -> Any:
    """Everything a weight file holds (for a .pt, whatever object was saved), memory-mapped where possible."""
    problem = check_file(path, name)
    if problem:
        raise CheckpointError(f"{name} {problem}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{name}: not a readable safetensors file ({exc})") from None
    try:
        with torch.serialization.safe_globals([io.BytesIO]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # a legacy-format file
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{name}: holds Python objects other than tensors, which are not loaded for safety "
                              f"({first[:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint, truncated or corrupt "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None


def tensor_shapes(path: Path, name: str) -> dict[str, tuple]:
    """Key -> shape of a safetensors file, from its header alone."""
    problem = check_file(path, name)
    if problem:
        raise CheckpointError(f"{name} {problem}")
    with open(path, "rb") as fh:
        length = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(length))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


__all__ = ["SAFETENSORS", "TORCH_FILES", "check_file", "read_tensors", "tensor_shapes"]
