"""Loading and prompting a Qwen2.5-VL model (Cosmos-Reason1) on an image or a video.

Shared by the prompt refiner and the best-of-N critic: both load the same checkpoint format
(transformers `Qwen2_5_VLForConditionalGeneration` + `AutoProcessor`) from a folder or an `s3://`
prefix and ask one question about some frames.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_REQUIRED_FILES = ("config.json",)


@dataclass(frozen=True)
class Sampling:
    """How the model picks tokens. `do_sample=False` is greedy decoding."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be positive when sampling, got {self.temperature}")

    def generate_kwargs(self) -> dict:
        if not self.do_sample:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
        }


GREEDY = Sampling()


def local_checkpoint(source: str | os.PathLike) -> Path:
    """A local folder holding the Qwen2.5-VL checkpoint at `source` (a folder, `pvc://` or `s3://`).

    An S3 prefix goes through the node's checkpoint cache: downloaded once, shared by every rank and job.
    """
    from . import storage
    from .checkpoints import CheckpointError
    from .checkpoints.tree import Tree

    text = str(source)
    try:
        folder = Tree.open(text).local_dir("")
    except (storage.StorageError, CheckpointError) as exc:
        raise FileNotFoundError(f"Qwen2.5-VL checkpoint {text}: {exc}") from None
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Qwen2.5-VL checkpoint {text} lacks {', '.join(missing)}")
    return folder


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class QwenVL:
    """A loaded Qwen2.5-VL model and its processor, asked one question at a time."""

    def __init__(self, model, processor, device: str) -> None:
        self.model = model
        self.processor = processor
        self.device = device

    @classmethod
    def load(cls, source: str | os.PathLike, device: str | None = None, dtype=None) -> "QwenVL":
        """Load from a folder, `pvc://` path or `s3://` prefix; bfloat16 on GPU, float32 on CPU."""
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        folder = local_checkpoint(source)
        device = device or default_device()
        if dtype is None:
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        log.info("loading Qwen2.5-VL from %s on %s", source, device)
        processor = AutoProcessor.from_pretrained(folder)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=dtype)
        model.to(device).eval()
        return cls(model, processor, device)

    def to(self, device: str) -> None:
        self.model.to(device)
        self.device = device

    def offload(self) -> None:
        """Move the weights to CPU and release the accelerator's cached memory."""
        import torch

        if self.device != "cpu":
            self.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def ask(
        self,
        question: str,
        frames: np.ndarray,
        *,
        system: str | None = None,
        sampling: Sampling = GREEDY,
        fps: float | None = None,
        max_pixels: int | None = None,
        seed: int | None = None,
    ) -> str:
        """The model's answer to `question` about `frames` (T, H, W, 3) uint8.

        One frame goes in as an image, several as a video played at `fps`. `max_pixels` bounds the
        pixels per frame (and so the number of vision tokens); unset, the processor's own bound holds.
        """
        import torch

        inputs = self.prompt_inputs(question, frames, system=system, fps=fps, max_pixels=max_pixels)
        if seed is not None:
            torch.manual_seed(seed)
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(seed)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **sampling.generate_kwargs())
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]

    def prompt_inputs(self, question: str, frames: np.ndarray, *, system: str | None = None, fps: float | None = None,
                      max_pixels: int | None = None):
        """The model's inputs for `question` about `frames`, up to the assistant's turn (what `ask` generates from)."""
        frames = check_frames(frames)
        is_video = frames.shape[0] > 1
        content = [{"type": "video" if is_video else "image"}, {"type": "text", "text": question}]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

        kwargs: dict = {"text": [text], "return_tensors": "pt"}
        if is_video:
            kwargs["videos"] = [frames]
            kwargs["do_sample_frames"] = False
            kwargs["video_metadata"] = [
                {"total_num_frames": len(frames), "fps": float(fps or 16.0), "frames_indices": list(range(len(frames)))}
            ]
        else:
            kwargs["images"] = [frames[0]]
        if max_pixels:
            processor = self.processor.video_processor if is_video else self.processor.image_processor
            min_pixels = min(processor.size.get("shortest_edge", 56 * 56), max_pixels)
            size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
            kwargs["videos_kwargs" if is_video else "images_kwargs"] = {"size": size}
        return self.processor(**kwargs).to(self.device)


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Frames as (T, H, W, 3) uint8; a single (H, W, 3) image becomes one frame."""
    array = np.asarray(frames)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {array.dtype}")
    return array


def sample_frames(frames: np.ndarray, source_fps: float, target_fps: float) -> tuple[np.ndarray, float]:
    """Every k-th frame so the clip plays at about `target_fps`; returns the frames and their fps."""
    if target_fps <= 0 or source_fps <= 0:
        raise ValueError(f"fps must be positive (source {source_fps}, target {target_fps})")
    step = max(1, round(source_fps / target_fps))
    picked = frames[::step]
    if len(picked) < 2 and len(frames) >= 2:
        picked = frames[[0, -1]]
    return picked, source_fps / step
