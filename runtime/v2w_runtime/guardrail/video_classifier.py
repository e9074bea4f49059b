"""Per-frame video safety classifier: SigLIP vision embeddings and a small MLP head.

Folder layout (`video_classifier/` in a guardrail checkpoint):
    encoder/            a SigLIP checkpoint: vision-only (SiglipVisionModel) or full (SiglipModel, whose
                        vision tower is used); its preprocessor_config.json, if any, gives mean and std
    head.safetensors    the MLP: `layers.{i}.weight` / `layers.{i}.bias`, Linear layers with ReLU between
    head.json           HeadConfig below: the class names, which one is safe, embedding normalisation

Each frame is resized to the encoder's square input, embedded (pooled output), optionally L2-normalised
and classified; the video is blocked when any checked frame's top class is not the safe class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn

from v2w_runtime.interfaces import GuardrailError, Verdict

CHECK = "video_classifier"
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"
ENCODER = "encoder"


class HeadConfig(BaseModel):
    """head.json: how to read the MLP head."""

    input_dim: int = Field(..., ge=1, description="Embedding size of the encoder (1152 for SigLIP so400m).")
    hidden_dims: list[int] = Field(default_factory=list, description="Hidden layer sizes, e.g. [512, 256].")
    classes: list[str] = Field(..., min_length=2, description="Class names in output order.")
    safe_class: str = Field("safe", description="The one class that lets a frame pass.")
    normalize_embeddings: bool = Field(True, description="L2-normalise embeddings before the head.")
    frame_stride: int = Field(1, ge=1, description="Check every n-th frame (1: every frame).")
    batch_size: int = Field(16, ge=1, description="Frames per encoder forward.")

    @model_validator(mode="after")
    def _safe_class_known(self) -> "HeadConfig":
        if self.safe_class not in self.classes:
            raise ValueError(f"safe_class {self.safe_class!r} is not one of the classes {self.classes}")
        return self


class SafetyHead(nn.Module):
    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        dims = [config.input_dim, *config.hidden_dims, len(config.classes)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def save_head(folder: str | Path, head: SafetyHead, config: HeadConfig) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / HEAD_WEIGHTS))
    (folder / HEAD_CONFIG).write_text(config.model_dump_json(indent=2) + "\n")


def load_encoder(path: str | Path, dtype: torch.dtype):
    """A SiglipVisionModel from a vision-only or a full SigLIP checkpoint."""
    from transformers import AutoConfig, SiglipModel, SiglipVisionModel

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if config.model_type == "siglip":
        return SiglipModel.from_pretrained(path, dtype=dtype, local_files_only=True).vision_model
    if config.model_type != "siglip_vision_model":
        raise ValueError(f"expected a SigLIP checkpoint, found model_type {config.model_type!r}")
    return SiglipVisionModel.from_pretrained(path, dtype=dtype, local_files_only=True)


class VideoClassifier:
    def __init__(self, encoder: nn.Module, head: SafetyHead, config: HeadConfig,
                 image_size: int, mean: tuple[float, ...] = (0.5,) * 3, std: tuple[float, ...] = (0.5,) * 3) -> None:
        self.encoder = encoder.eval()
        self.head = head.eval()
        self.config = config
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> "VideoClassifier":
        folder = Path(folder)
        try:
            config = HeadConfig.model_validate_json((folder / HEAD_CONFIG).read_text())
            encoder = load_encoder(folder / ENCODER, dtype or torch.float32).to(device)
            head = SafetyHead(config)
            head.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)))
            head.to(device=device, dtype=dtype or torch.float32)
            mean, std = _normalisation(folder / ENCODER)
            image_size = encoder.config.image_size
        except Exception as exc:  # no video check without every part: fail closed
            raise GuardrailError(f"cannot load the video classifier from {folder}: {type(exc).__name__}: {exc}") from exc
        return cls(encoder, head, config, image_size, mean, std)

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.head.parameters())
        return p.device, p.dtype

    @torch.inference_mode()
    def frame_classes(self, frames: np.ndarray) -> list[str]:
        """The top class of each checked frame (every `frame_stride`-th) of uint8 frames (T, H, W, 3)."""
        device, dtype = self._device_dtype()
        picked = frames[:: self.config.frame_stride]
        names: list[str] = []
        for start in range(0, len(picked), self.config.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(picked[start : start + self.config.batch_size]))
            x = batch.to(device).permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
            x = (x - self.mean.to(device)) / self.std.to(device)
            emb = self.encoder(pixel_values=x.to(dtype)).pooler_output
            if self.config.normalize_embeddings:
                emb = F.normalize(emb.float(), dim=-1).to(dtype)
            top = self.head(emb).argmax(dim=-1).tolist()
            names.extend(self.config.classes[i] for i in top)
        return names

    def check(self, frames: np.ndarray) -> Verdict:
        try:
            classes = self.frame_classes(frames)
        except Exception as exc:
            raise GuardrailError(f"the video classifier failed: {type(exc).__name__}: {exc}") from exc
        unsafe = [(i * self.config.frame_stride, c) for i, c in enumerate(classes) if c != self.config.safe_class]
        if not unsafe:
            return Verdict.ok(CHECK)
        kinds = sorted({c for _, c in unsafe})
        return Verdict(False, CHECK, f"{len(unsafe)} of {len(classes)} checked frames rated unsafe "
                                     f"({', '.join(kinds)}; first at frame {unsafe[0][0]})")

    def to(self, device: str | torch.device) -> "VideoClassifier":
        self.encoder.to(device)
        self.head.to(device)
        return self


def _normalisation(encoder_dir: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std from the encoder's preprocessor_config.json; SigLIP's 0.5 / 0.5 when absent."""
    path = encoder_dir / "preprocessor_config.json"
    if not path.exists():
        return (0.5,) * 3, (0.5,) * 3
    cfg = json.loads(path.read_text())
    return tuple(cfg.get("image_mean", (0.5,) * 3)), tuple(cfg.get("image_std", (0.5,) * 3))


__all__ = ["HeadConfig", "SafetyHead", "VideoClassifier", "load_encoder", "save_head"]
