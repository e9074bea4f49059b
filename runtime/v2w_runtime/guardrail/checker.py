"""The Guardrail: text and video checks and face pixelation, loaded from one checkpoint folder.

Guardrail checkpoint layout (a local folder, `pvc://<claim>/<path>` or an `s3://` prefix):

    llm_guard/          a transformers causal LM and its tokenizer answering "safe" / "unsafe\\nS1,.."
                        (Llama Guard format; see llm_guard.py)
    video_classifier/   encoder/ (SigLIP), head.safetensors, head.json (see video_classifier.py)

Both parts are required: a missing part, weights that do not load, or a model that raises while checking
all raise GuardrailError (fail closed). The built-in keyword blocklist (plus the user's terms) runs before
any model: a blocklisted prompt is blocked without loading one. Weights load on first use, or all at once
with `preload()`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from v2w_runtime.interfaces import GuardrailError, Verdict

from .blocklist import Blocklist, load_blocklist
from .faces import FacePixelator
from .llm_guard import LLMGuard
from .video_classifier import ENCODER, HEAD_CONFIG, HEAD_WEIGHTS, VideoClassifier

LLM_GUARD = "llm_guard"
VIDEO_CLASSIFIER = "video_classifier"


class Guardrail:
    """Implements v2w_runtime.interfaces.Guardrail. Models are given, or loaded lazily by `loaders`."""

    def __init__(self, blocklist: Blocklist, llm_guard: LLMGuard | None = None,
                 video_classifier: VideoClassifier | None = None, pixelator: FacePixelator | None = None,
                 *, llm_guard_loader=None, video_classifier_loader=None) -> None:
        if llm_guard is None and llm_guard_loader is None:
            raise ValueError("Guardrail needs an LLM guard or a loader for one")
        if video_classifier is None and video_classifier_loader is None:
            raise ValueError("Guardrail needs a video classifier or a loader for one")
        self.blocklist = blocklist
        self._llm_guard = llm_guard
        self._video_classifier = video_classifier
        self._llm_guard_loader = llm_guard_loader
        self._video_classifier_loader = video_classifier_loader
        self.pixelator = pixelator

    # -- models, loaded on first use ----------------------------------------------------------------
    @property
    def llm_guard(self) -> LLMGuard:
        if self._llm_guard is None:
            self._llm_guard = self._llm_guard_loader()
        return self._llm_guard

    @property
    def video_classifier(self) -> VideoClassifier:
        if self._video_classifier is None:
            self._video_classifier = self._video_classifier_loader()
        return self._video_classifier

    @property
    def loaded(self) -> dict[str, bool]:
        return {LLM_GUARD: self._llm_guard is not None, VIDEO_CLASSIFIER: self._video_classifier is not None}

    def preload(self) -> "Guardrail":
        """Load every model now (raises GuardrailError), e.g. before spending GPU time on generation."""
        self.llm_guard, self.video_classifier  # noqa: B018 - the properties load
        return self

    def to(self, device: str | torch.device) -> "Guardrail":
        """Move the loaded models (the diffusers pipeline moves its safety checker around the DiT)."""
        if self._llm_guard is not None:
            self._llm_guard.to(device)
        if self._video_classifier is not None:
            self._video_classifier.to(device)
        return self

    # -- the protocol -------------------------------------------------------------------------------
    def check_text(self, text: str) -> Verdict:
        if not isinstance(text, str):
            raise TypeError(f"check_text expects the prompt as str, got {type(text).__name__}")
        verdict = self.blocklist.check(text)
        if not verdict.allowed:
            return verdict
        return self.llm_guard.check(text)

    def check_video(self, frames: np.ndarray) -> Verdict:
        _check_frames(frames, "check_video")
        return self.video_classifier.check(frames)

    def postprocess(self, frames: np.ndarray) -> np.ndarray:
        _check_frames(frames, "postprocess")
        if self.pixelator is None:
            return frames.copy()
        try:
            return self.pixelator(frames)
        except Exception as exc:  # an unpixelated video must not be written
            raise GuardrailError(f"face pixelation failed: {type(exc).__name__}: {exc}") from exc


def _check_frames(frames: np.ndarray, where: str) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"{where} expects frames as a uint8 array (T, H, W, 3), got {dtype} with shape {shape}")
    if frames.shape[0] == 0:
        raise ValueError(f"{where} got a video with no frames")


def resolve_checkpoint(uri: str | os.PathLike) -> Path:
    """A local folder for a local path, a `pvc://` URI or an `s3://` prefix (downloaded once into
    $V2W_CACHE_DIR, default the system temp folder)."""
    from v2w_runtime import storage

    try:
        cache = Path(os.environ.get("V2W_CACHE_DIR") or tempfile.gettempdir()) / "v2w-checkpoints"
        return storage.fetch_tree(str(uri), cache)
    except storage.StorageError as exc:
        raise GuardrailError(f"cannot read the guardrail checkpoint: {exc}") from exc


def check_layout(folder: Path) -> None:
    """Fail fast on a folder that is not a guardrail checkpoint, before any weights load."""
    wanted = [
        folder / LLM_GUARD / "config.json",
        folder / VIDEO_CLASSIFIER / ENCODER / "config.json",
        folder / VIDEO_CLASSIFIER / HEAD_WEIGHTS,
        folder / VIDEO_CLASSIFIER / HEAD_CONFIG,
    ]
    missing = [str(p.relative_to(folder)) for p in wanted if not p.is_file()]
    if missing:
        raise GuardrailError(f"{folder} is not a guardrail checkpoint: missing {', '.join(missing)}")


def load_guardrail(checkpoint: str | os.PathLike, extra_blocklist: Iterable[str] = (), pixelate_faces: bool = True,
                   device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Guardrail:
    """The guardrail from a checkpoint folder or URI; raises GuardrailError when it cannot be used.

    `extra_blocklist` adds the user's terms (spec `guardrail.blocklist`); `pixelate_faces=False` writes
    faces as generated (spec `guardrail.pixelateFaces`). Models load on first use on `device` (float32 on
    CPU, bfloat16 elsewhere unless `dtype` says otherwise).
    """
    try:
        blocklist = load_blocklist(extra_blocklist)
    except ValueError as exc:
        raise GuardrailError(f"bad guardrail blocklist: {exc}") from exc
    folder = resolve_checkpoint(checkpoint)
    check_layout(folder)
    if dtype is None:
        dtype = torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
    pixelator = None
    if pixelate_faces:
        try:
            pixelator = FacePixelator()
        except Exception as exc:
            raise GuardrailError(f"cannot start the face detector: {type(exc).__name__}: {exc}") from exc
    return Guardrail(
        blocklist,
        pixelator=pixelator,
        llm_guard_loader=lambda: LLMGuard.from_pretrained(folder / LLM_GUARD, device=device, dtype=dtype),
        video_classifier_loader=lambda: VideoClassifier.from_pretrained(folder / VIDEO_CLASSIFIER, device=device, dtype=dtype),
    )
