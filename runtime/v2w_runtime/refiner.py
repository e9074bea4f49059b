"""The prompt refiner: Cosmos-Reason1 (Qwen2.5-VL) turns a short prompt into a detailed one.

It sees the conditioning frames and the user's prompt and writes one paragraph in English (greedy
decoding, bounded new tokens). The answer is cleaned of reasoning tags, labels and quotes; when
nothing usable is left, the original prompt stays and a warning says why.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from .interfaces import PromptRefiner, RefinedPrompt
from .qwen import QwenVL, Sampling

log = logging.getLogger(__name__)

SYSTEM = (
    "You write prompts for a video generation model that continues a video from its first frames. "
    "You are shown those first frames and a short idea from the user."
)

INSTRUCTION = (
    "Short idea from the user:\n{prompt}\n\n"
    "Write one detailed paragraph in English that describes the whole video to generate, starting "
    "from the frames shown. Keep what the user asked for and stay faithful to what is visible: the "
    "setting, the main subjects and their appearance, how they move over time, the camera's motion, "
    "the lighting and the mood. Prefer physically plausible, continuous motion. Reply with the "
    "paragraph only: no title, no list, no quotes, no explanation."
)

_MIN_WORDS = 3
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"</?\s*(think|answer|prompt|caption|description)\s*>", re.IGNORECASE)
_SPECIAL = re.compile(r"<\|[^|>]*\|>")
_LABEL = re.compile(
    r"^\s*(?:\*\*)?\s*(?:here is (?:the |a )?|here's (?:the |a )?)?"
    r"(?:refined|detailed|enhanced|improved|final|video)?\s*(?:prompt|description|caption|paragraph)\s*(?:\*\*)?\s*:\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’«»`"


def clean_refined_text(text: str) -> str:
    """The prompt inside the model's answer, or "" when none is there.

    Drops special tokens and <think>…</think> reasoning (an unclosed <think> means the answer never
    came), keeps the content of <answer>, strips a leading label such as "Refined prompt:", surrounding
    quotes or markdown emphasis, and joins the lines into one paragraph.
    """
    text = _SPECIAL.sub("", text)
    text = _THINK.sub("", text)
    if re.search(r"<think>", text, re.IGNORECASE):
        return ""
    answer = re.search(r"<answer>(.*?)(?:</answer>|$)", text, re.DOTALL | re.IGNORECASE)
    if answer:
        text = answer.group(1)
    text = _TAG.sub(" ", text)
    text = " ".join(text.split())
    for _ in range(3):
        before = text
        text = _LABEL.sub("", text).strip()
        text = text.strip("*_ ").strip()
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
            text = text[1:-1].strip()
        if text == before:
            break
    return text


def usable(text: str) -> str | None:
    """Why `text` cannot serve as a prompt, or None when it can."""
    if not text:
        return "the refiner returned no text"
    words = re.findall(r"[^\W\d_]{2,}", text)
    if len(words) < _MIN_WORDS:
        return f"the refiner's answer has fewer than {_MIN_WORDS} words"
    if "\ufffd" in text:
        return "the refiner's answer is not valid text"
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.5 * len(text.replace(" ", "")):
        return "the refiner's answer is mostly not words"
    return None


class CosmosReasonRefiner:
    """`PromptRefiner` backed by a Qwen2.5-VL model."""

    def __init__(self, qwen: QwenVL, *, offload_to_cpu: bool = True, max_new_tokens: int = 512,
                 max_pixels: int | None = None) -> None:
        self.qwen = qwen
        self.offload_to_cpu = offload_to_cpu
        self.sampling = Sampling(max_new_tokens=max_new_tokens)
        self.max_pixels = max_pixels
        self._home_device = qwen.device

    def refine(self, prompt: str, frames: np.ndarray) -> RefinedPrompt:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        if self.qwen.device != self._home_device:
            self.qwen.to(self._home_device)
        try:
            raw = self.qwen.ask(
                INSTRUCTION.format(prompt=prompt.strip() or "(no idea given: describe a natural continuation)"),
                frames,
                system=SYSTEM,
                sampling=self.sampling,
                max_pixels=self.max_pixels,
            )
        finally:
            if self.offload_to_cpu:
                self.offload()
        refined = clean_refined_text(raw)
        problem = usable(refined)
        if problem:
            warning = f"prompt refiner: {problem}; the original prompt is used"
            log.warning(warning)
            return RefinedPrompt(original=prompt, refined=prompt, warnings=[warning])
        return RefinedPrompt(original=prompt, refined=refined)

    def offload(self) -> None:
        self.qwen.offload()


def load_refiner(
    checkpoint_dir_or_uri: str | os.PathLike,
    device: str | None = None,
    offload_to_cpu: bool = True,
    max_new_tokens: int = 512,
    max_pixels: int | None = None,
) -> PromptRefiner:
    """A prompt refiner from a Cosmos-Reason1 checkpoint (folder, `pvc://` path or `s3://` prefix).

    device: where it runs (default: CUDA when available). offload_to_cpu: move the weights to CPU after
    each `refine` so the DiT has the GPU. max_new_tokens: bound on the answer's length.
    max_pixels: per-frame pixel bound for the vision input (default: the checkpoint processor's).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    qwen = QwenVL.load(checkpoint_dir_or_uri, device=device)
    return CosmosReasonRefiner(qwen, offload_to_cpu=offload_to_cpu, max_new_tokens=max_new_tokens,
                               max_pixels=max_pixels)


class CachedRefiner:
    """Refines each distinct (prompt, frames) once: best-of-N asks N times for the same input, and
    greedy decoding would answer the same every time."""

    def __init__(self, refiner: PromptRefiner) -> None:
        self.refiner = refiner
        self._answers: dict[tuple[str, str], RefinedPrompt] = {}

    def refine(self, prompt: str, frames: np.ndarray) -> RefinedPrompt:
        import hashlib

        array = np.ascontiguousarray(frames)
        key = (prompt, hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest())
        if key not in self._answers:
            self._answers[key] = self.refiner.refine(prompt, frames)
        cached = self._answers[key]
        return RefinedPrompt(cached.original, cached.refined, list(cached.warnings))

    def offload(self) -> None:
        self.refiner.offload()
