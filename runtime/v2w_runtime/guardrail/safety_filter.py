"""The video content safety filter of NVIDIA's Cosmos-Guardrail1 release: every frame embedded by SigLIP
(so400m-patch14-384), the embedding L2-normalised and classified by a small MLP into seven classes; a
video with any frame whose top class is not "Safe" is blocked.

Release layout (`video_content_safety_filter/` in the Cosmos-Guardrail1 folder):
    safety_filter.pt    a torch checkpoint {"model": state dict} of the classifier, keys
                        `network.layers.{0,3,6}.{weight,bias}` (Linear 1152->512->256->7) and
                        `network.layers.{1,4}.*` (BatchNorm1d after the first two), ReLU between
    models--google--siglip-so400m-patch14-384/   the SigLIP checkpoint in Hugging Face cache layout:
                        refs/main names the snapshot, snapshots/<rev>/ holds config.json,
                        model.safetensors and preprocessor_config.json

As upstream: frames are prepared by SigLIP's own image processor (bicubic resize to the model's square
input, scaled to [-1, 1] by the checkpoint's mean and std), the image features are the vision tower's
pooled output, and the classifier runs in float32. Unlike upstream, a frame that cannot be classified
fails the check (GuardrailError) instead of being skipped, and frames go through in batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from v2w_runtime.interfaces import GuardrailError, Verdict

CHECK = "video_safety_filter"
FOLDER = "video_content_safety_filter"
WEIGHTS = "safety_filter.pt"
SIGLIP_REPO = "google/siglip-so400m-patch14-384"
SIGLIP_CACHE = "models--" + SIGLIP_REPO.replace("/", "--")
SIGLIP_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
# Upstream's class order; index 0 is the one class that lets a frame pass.
CLASSES = ("Safe", "Sexual_Content", "Violence", "Drugs", "Child_Abuse", "Hate_and_Harassment", "Self-Harm")


class SafetyClassifier(nn.Module):
    """The MLP of safety_filter.pt: Linear, BatchNorm1d, ReLU, Linear, BatchNorm1d, ReLU, Linear (raw logits).
    `hidden` is (512, 256) in the release."""

    def __init__(self, input_size: int = 1152, hidden: tuple[int, int] = (512, 256), num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, hidden[0]), nn.BatchNorm1d(hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.BatchNorm1d(hidden[1]), nn.ReLU(),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VideoSafetyModel(nn.Module):
    """The module safety_filter.pt was saved from: the classifier under the name `network`."""

    def __init__(self, input_size: int = 1152, hidden: tuple[int, int] = (512, 256), num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.network = SafetyClassifier(input_size, hidden, num_classes)


def siglip_snapshot(folder: Path) -> Path:
    """The snapshot folder of the SigLIP cache under `video_content_safety_filter/`: the revision refs/main
    names, or the only snapshot there is."""
    cache = folder / SIGLIP_CACHE
    ref = cache / "refs" / "main"
    if ref.is_file():
        rev = ref.read_text().strip()
        snapshot = cache / "snapshots" / rev
        if not snapshot.is_dir():
            raise GuardrailError(f"{ref} names revision {rev!r}, but {snapshot} is not there")
        return snapshot
    snapshots = sorted(p for p in (cache / "snapshots").glob("*") if p.is_dir())
    if len(snapshots) == 1:
        return snapshots[0]
    if not snapshots:
        raise GuardrailError(f"no SigLIP checkpoint: {cache}/snapshots/<rev>/ is missing (and {ref})")
    raise GuardrailError(f"{cache} holds {len(snapshots)} snapshots and no refs/main to choose one")


def load_classifier(path: Path) -> VideoSafetyModel:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GuardrailError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "network.layers.0.weight" not in state:
        raise GuardrailError(f"{path} is not the safety filter's checkpoint: no 'model' state dict with network.layers.0.weight")
    try:
        first, second, last = (state[f"network.layers.{i}.weight"] for i in (0, 3, 6))
        model = VideoSafetyModel(first.shape[1], (first.shape[0], second.shape[0]), last.shape[0])
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise GuardrailError(f"{path}: the safety filter's state dict does not fit its model: {exc}") from exc
    if last.shape[0] != len(CLASSES):
        raise GuardrailError(f"{path}: the safety filter has {last.shape[0]} classes, expected {len(CLASSES)} ({', '.join(CLASSES)})")
    return model.eval()


def load_siglip(snapshot: Path):
    """SigLIP's vision tower and its image processor from a (full, vision + text) SigLIP snapshot. Only the
    vision tower is loaded: the image features upstream uses come from it alone."""
    from transformers import SiglipVisionModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the text tower's weights are left out on purpose: no report of them
    try:
        model, info = SiglipVisionModel.from_pretrained(snapshot, dtype=torch.float32, local_files_only=True,
                                                        output_loading_info=True)
    finally:
        hf_logging.set_verbosity(level)
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise GuardrailError(f"{snapshot}/model.safetensors lacks {len(missing)} SigLIP vision weight(s), e.g. {missing[0]}")
    processor = SiglipImageProcessorPil.from_pretrained(snapshot, local_files_only=True)
    return model.eval(), processor


class VideoContentSafetyFilter:
    def __init__(self, encoder: nn.Module, processor, classifier: VideoSafetyModel, batch_size: int = 16) -> None:
        self.encoder = encoder.eval()
        self.processor = processor
        self.classifier = classifier.eval()
        self.batch_size = batch_size

    @classmethod
    def from_release(cls, guardrail_dir: str | Path, device: str | torch.device = "cpu") -> "VideoContentSafetyFilter":
        """Load from a Cosmos-Guardrail1 folder; GuardrailError names what is missing or broken."""
        folder = Path(guardrail_dir) / FOLDER
        try:
            classifier = load_classifier(folder / WEIGHTS)
            encoder, processor = load_siglip(siglip_snapshot(folder))
        except GuardrailError:
            raise
        except Exception as exc:  # no video check without every part: fail closed
            raise GuardrailError(f"cannot load the video safety filter from {folder}: {type(exc).__name__}: {exc}") from exc
        return cls(encoder, processor, classifier).to(device)

    def to(self, device: str | torch.device) -> "VideoContentSafetyFilter":
        self.encoder.to(device)
        self.classifier.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.classifier.parameters()).device

    @torch.inference_mode()
    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """L2-normalised image features of uint8 frames (N, H, W, 3)."""
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"]
        out = self.encoder(pixel_values=pixels.to(self.device, torch.float32))
        features = out.pooler_output
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def frame_classes(self, frames: np.ndarray, stop_at_unsafe: bool = False) -> list[str]:
        """The top class of each frame (in batches; with `stop_at_unsafe`, none after the first unsafe batch)."""
        names: list[str] = []
        for start in range(0, len(frames), self.batch_size):
            logits = self.classifier.network(self.embed(frames[start : start + self.batch_size]))
            names += [CLASSES[i] for i in logits.softmax(dim=-1).argmax(dim=-1).tolist()]
            if stop_at_unsafe and any(n != CLASSES[0] for n in names):
                break
        return names

    def check(self, frames: np.ndarray) -> Verdict:
        try:
            classes = self.frame_classes(frames, stop_at_unsafe=True)
        except Exception as exc:
            raise GuardrailError(f"the video safety filter failed: {type(exc).__name__}: {exc}") from exc
        unsafe = [(i, c) for i, c in enumerate(classes) if c != CLASSES[0]]
        if not unsafe:
            return Verdict.ok(CHECK)
        first, kind = unsafe[0]
        return Verdict(False, CHECK, f"frame {first} of {len(frames)} rated {kind} by the video safety filter")


__all__ = ["CHECK", "CLASSES", "SafetyClassifier", "VideoContentSafetyFilter", "VideoSafetyModel", "load_classifier",
           "siglip_snapshot"]
