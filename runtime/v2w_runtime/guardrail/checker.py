"""The Guardrail: text and video checks and face pixelation from NVIDIA's guardrail release, as upstream's
presets run them (cosmos_predict2/auxiliary/guardrail/common/presets.py):

    text   the release's keyword blocklist, then Llama Guard 3           (components "blocklist", "llama_guard")
    video  the video content safety filter on every frame              ("video_safety_filter")
    then   RetinaFace face pixelation of every frame that is written   ("face_blur")

The checkpoint (a local folder, `pvc://` or `s3://`) is the Cosmos-Guardrail1 folder or upstream's checkpoint
tree root; `release.py` finds Llama Guard 3 next to it and checks every file before any weight loads. Our
own keyword list (built in, plus the job's `guardrail.blocklist` terms) runs with the release's blocklist,
under the same component name.

Fail closed: a missing file, weights that do not load, or a model that raises while checking all raise
GuardrailError. The keyword lists run before any model loads, so a blocklisted prompt is blocked without
loading one; models load on first use, or all at once with `preload()`. Each verdict names the checks that
ran to reach it (`Verdict.ran`), so the run record can say which components checked each video.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from v2w_runtime.interfaces import GuardrailError, Verdict

from .blocklist import Blocklist, load_blocklist
from .faces import FacePixelator
from .llama_guard import LlamaGuard
from .release import RETINAFACE, GuardrailRelease, locate
from .release_blocklist import ReleaseBlocklist
from .retinaface import RetinaFaceDetector, RetinaFaceLoadError
from .safety_filter import VideoContentSafetyFilter

BLOCKLIST, LLAMA_GUARD, VIDEO_SAFETY_FILTER, FACE_BLUR = "blocklist", "llama_guard", "video_safety_filter", "face_blur"
COMPONENTS = (BLOCKLIST, LLAMA_GUARD, VIDEO_SAFETY_FILTER, FACE_BLUR)


class _Lazy:
    """A model loaded on first use by `loader` (which raises GuardrailError), or given."""

    def __init__(self, value=None, loader: Callable[[], object] | None = None) -> None:
        self.value, self.loader = value, loader

    def get(self):
        if self.value is None:
            if self.loader is None:
                raise GuardrailError("the guardrail has neither this model nor a way to load it")
            self.value = self.loader()
        return self.value

    @property
    def loaded(self) -> bool:
        return self.value is not None


class Guardrail:
    """Implements v2w_runtime.interfaces.Guardrail. Models are given, or loaded lazily by loaders.

    `keywords` are checked first (the release's blocklist and our own list); `pixelator` is None when faces
    are written as generated."""

    def __init__(self, keywords: list, llama_guard: LlamaGuard | None = None,
                 safety_filter: VideoContentSafetyFilter | None = None, pixelator: FacePixelator | None = None, *,
                 llama_guard_loader=None, safety_filter_loader=None, pixelator_loader=None,
                 release: GuardrailRelease | None = None) -> None:
        if llama_guard is None and llama_guard_loader is None:
            raise ValueError("Guardrail needs Llama Guard or a loader for it")
        if safety_filter is None and safety_filter_loader is None:
            raise ValueError("Guardrail needs a video safety filter or a loader for one")
        self.keywords = list(keywords)
        self._llama_guard = _Lazy(llama_guard, llama_guard_loader)
        self._safety_filter = _Lazy(safety_filter, safety_filter_loader)
        self._pixelator = _Lazy(pixelator, pixelator_loader) if (pixelator or pixelator_loader) else None
        self.release = release

    # -- models, loaded on first use ----------------------------------------------------------------
    @property
    def llama_guard(self) -> LlamaGuard:
        return self._llama_guard.get()

    @property
    def safety_filter(self) -> VideoContentSafetyFilter:
        return self._safety_filter.get()

    @property
    def pixelator(self) -> FacePixelator | None:
        return self._pixelator.get() if self._pixelator is not None else None

    @pixelator.setter
    def pixelator(self, value: FacePixelator | None) -> None:
        self._pixelator = _Lazy(value) if value is not None else None

    @property
    def components(self) -> tuple[str, ...]:
        """The components this guardrail runs, in order."""
        return COMPONENTS if self._pixelator is not None else COMPONENTS[:-1]

    @property
    def postprocessors(self) -> tuple[str, ...]:
        """What `postprocess` runs on the frames: face_blur, or nothing."""
        return (FACE_BLUR,) if self._pixelator is not None else ()

    @property
    def loaded(self) -> dict[str, bool]:
        out = {LLAMA_GUARD: self._llama_guard.loaded, VIDEO_SAFETY_FILTER: self._safety_filter.loaded}
        if self._pixelator is not None:
            out[FACE_BLUR] = self._pixelator.loaded
        return out

    def preload(self) -> "Guardrail":
        """Load every model now (raises GuardrailError), e.g. before spending GPU time on generation."""
        self.llama_guard, self.safety_filter, self.pixelator  # noqa: B018 - the properties load
        return self

    def to(self, device: str | torch.device) -> "Guardrail":
        """Move the loaded models (the diffusers pipeline moves its safety checker around the DiT)."""
        for lazy in (self._llama_guard, self._safety_filter, self._pixelator):
            if lazy is not None and lazy.loaded:
                lazy.value.to(device)
        return self

    # -- the protocol -------------------------------------------------------------------------------
    def check_text(self, text: str) -> Verdict:
        if not isinstance(text, str):
            raise TypeError(f"check_text expects the prompt as str, got {type(text).__name__}")
        for keywords in self.keywords:
            verdict = keywords.check(text)
            if not verdict.allowed:
                return dataclasses.replace(verdict, ran=(BLOCKLIST,))
        verdict = self.llama_guard.check(text)
        return dataclasses.replace(verdict, ran=(BLOCKLIST, LLAMA_GUARD))

    def check_video(self, frames: np.ndarray) -> Verdict:
        _check_frames(frames, "check_video")
        return dataclasses.replace(self.safety_filter.check(frames), ran=(VIDEO_SAFETY_FILTER,))

    def postprocess(self, frames: np.ndarray) -> np.ndarray:
        _check_frames(frames, "postprocess")
        if self._pixelator is None:
            return frames.copy()
        pixelator = self.pixelator
        try:
            return pixelator(frames)
        except Exception as exc:  # an unpixelated video must not be written
            raise GuardrailError(f"face pixelation failed: {type(exc).__name__}: {exc}") from exc


def _check_frames(frames: np.ndarray, where: str) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"{where} expects frames as a uint8 array (T, H, W, 3), got {dtype} with shape {shape}")
    if frames.shape[0] == 0:
        raise ValueError(f"{where} got a video with no frames")


def load_face_detector(guardrail_dir: Path, device: str | torch.device = "cpu") -> RetinaFaceDetector:
    path = Path(guardrail_dir) / RETINAFACE
    try:
        return RetinaFaceDetector.from_file(path, device=device)
    except RetinaFaceLoadError as exc:
        raise GuardrailError(f"cannot load the face detector: {exc}") from exc
    except Exception as exc:
        raise GuardrailError(f"cannot load the face detector from {path}: {type(exc).__name__}: {exc}") from exc


def load_guardrail(checkpoint: str | os.PathLike, extra_blocklist: Iterable[str] = (), pixelate_faces: bool = True,
                   device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Guardrail:
    """The guardrail of a Cosmos-Guardrail1 folder or checkpoint tree root (local, pvc:// or s3://); raises
    GuardrailError when it cannot be used.

    `extra_blocklist` adds the user's terms (spec `guardrail.blocklist`); `pixelate_faces=False` writes
    faces as generated (spec `guardrail.pixelateFaces`). Models load on first use on `device`: Llama Guard
    in float32 on CPU and bfloat16 elsewhere (as upstream) unless `dtype` says otherwise; the video safety
    filter and RetinaFace in float32 (as upstream).
    """
    try:
        ours = load_blocklist(extra_blocklist)
    except ValueError as exc:
        raise GuardrailError(f"bad guardrail blocklist: {exc}") from exc
    release = locate(checkpoint)
    keywords: list = [ReleaseBlocklist.from_release(release.guardrail_dir), ours]
    if dtype is None:
        dtype = torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
    return Guardrail(
        keywords,
        release=release,
        llama_guard_loader=lambda: LlamaGuard.from_pretrained(release.llama_guard_dir, device=device, dtype=dtype),
        safety_filter_loader=lambda: VideoContentSafetyFilter.from_release(release.guardrail_dir, device=device),
        pixelator_loader=(lambda: FacePixelator(load_face_detector(release.guardrail_dir, device))) if pixelate_faces else None,
    )


__all__ = ["BLOCKLIST", "COMPONENTS", "FACE_BLUR", "Guardrail", "LLAMA_GUARD", "VIDEO_SAFETY_FILTER", "Blocklist",
           "load_guardrail"]
