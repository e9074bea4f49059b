"""RetinaFace (Deng et al., "Single-stage Dense Face Localisation in the Wild", 2019) with a ResNet-50
backbone: the face detector of NVIDIA's Cosmos-Guardrail1 release (`face_blur_filter/Resnet50_Final.pth`).

The model class keeps the key names of the PyTorch RetinaFace that wrote that file, so its state dict
loads as it is (after the `module.` prefix that a DataParallel save adds):
    body.*              ResNet-50 up to layer4 (torchvision's Bottleneck blocks, 3-4-6-3); layer2, layer3
                        and layer4 feed the pyramid (strides 8, 16, 32)
    fpn.output{1,2,3}   1x1 conv + BN (+ leaky ReLU) per level; fpn.merge{1,2} 3x3 conv + BN after the
                        top-down sums
    ssh{1,2,3}          the SSH context module of each level: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3)
                        branches concatenated
    ClassHead.{i}, BboxHead.{i}, LandmarkHead.{i}   1x1 convs, 2 anchors per location: face/background
                        logits, box offsets, 5 landmarks
Widths are read from the checkpoint (stem channels, pyramid channels), so a narrow model with the same
key names (the tests' tiny one) loads through the same code.

Detection follows upstream's face blur filter: frames in BGR minus the mean (104, 117, 123) at their own
size, prior boxes of sizes 16/32, 64/128, 256/512 on strides 8/16/32, offsets decoded with variances
0.1/0.2, faces kept above confidence 0.7, the best 5000 through non-maximum suppression at IoU 0.4, at
most 750 a frame, and boxes under 20 pixels a side ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import ceil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

# The detection settings of upstream's face blur filter (cosmos_predict2/auxiliary/guardrail/face_blur_filter).
CONFIDENCE_THRESHOLD = 0.7
NMS_THRESHOLD = 0.4
TOP_K = 5000
KEEP_TOP_K = 750
MIN_FACE_SIZE = 20

# RetinaFace's ResNet-50 configuration.
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)
ANCHORS_PER_LOCATION = 2
RESNET50_BLOCKS = (3, 4, 6, 3)


# ------------------------------------------------------------------------------------------- model


def _conv_bn(inp: int, out: int, kernel: int, leaky: float | None) -> nn.Sequential:
    """Conv (no bias) + BN, then a leaky ReLU unless `leaky` is None; keys `.0` and `.1` as in the release."""
    layers: list[nn.Module] = [nn.Conv2d(inp, out, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(out)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


class ResNet50Body(nn.Module):
    """ResNet-50 without its classifier; `width` is the stem's channels (64 in the real model)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for index, (blocks, stride) in enumerate(zip(RESNET50_BLOCKS, (1, 2, 2, 2)), start=1):
            planes = width * 2 ** (index - 1)
            layer, inplanes = self._make_layer(inplanes, planes, blocks, stride)
            setattr(self, f"layer{index}", layer)

    @staticmethod
    def _make_layer(inplanes: int, planes: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
        layers = [Bottleneck(inplanes, planes, stride, downsample)]
        layers += [Bottleneck(out, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers), out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c2, c3, c4]


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, leaky)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, leaky)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, leaky)
        self.merge1 = _conv_bn(out_channels, out_channels, 3, leaky)
        self.merge2 = _conv_bn(out_channels, out_channels, 3, leaky)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        out1, out2, out3 = self.output1(features[0]), self.output2(features[1]), self.output3(features[2])
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
        return [out1, out2, out3]


class SSH(nn.Module):
    """Context module: a 3x3 branch (half the channels), a 5x5 and a 7x7 branch (a quarter each) from
    stacked 3x3 convs, concatenated and rectified."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH needs a channel count divisible by 4, got {out_channels}")
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.conv3X3 = _conv_bn(in_channels, out_channels // 2, 3, None)
        self.conv5X5_1 = _conv_bn(in_channels, out_channels // 4, 3, leaky)
        self.conv5X5_2 = _conv_bn(out_channels // 4, out_channels // 4, 3, None)
        self.conv7X7_2 = _conv_bn(out_channels // 4, out_channels // 4, 3, leaky)
        self.conv7x7_3 = _conv_bn(out_channels // 4, out_channels // 4, 3, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5_1 = self.conv5X5_1(x)
        branch7 = self.conv7x7_3(self.conv7X7_2(branch5_1))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(branch5_1), branch7], dim=1))


class _Head(nn.Module):
    def __init__(self, in_channels: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, ANCHORS_PER_LOCATION * values, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """forward(x) -> (box offsets (N, P, 4), face probabilities (N, P, 2), landmark offsets (N, P, 10)) for
    x in BGR minus BGR_MEAN, (N, 3, H, W); P prior boxes in the order of `prior_boxes`."""

    def __init__(self, width: int = 64, out_channels: int = 256) -> None:
        super().__init__()
        self.width, self.out_channels = width, out_channels
        self.body = ResNet50Body(width)
        stage = width * Bottleneck.expansion  # layer1's output: 256 in the real model
        self.fpn = FPN([stage * 2, stage * 4, stage * 8], out_channels)
        self.ssh1 = SSH(out_channels, out_channels)
        self.ssh2 = SSH(out_channels, out_channels)
        self.ssh3 = SSH(out_channels, out_channels)
        self.ClassHead = nn.ModuleList(_Head(out_channels, 2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(_Head(out_channels, 4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(_Head(out_channels, 10) for _ in STEPS)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The SSH outputs of the three levels (what the heads read)."""
        fpn = self.fpn(self.body(x))
        return [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(x)
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return boxes, F.softmax(logits, dim=-1), landmarks


class RetinaFaceLoadError(ValueError):
    """The file is not a RetinaFace ResNet-50 state dict; the message names the file and what is wrong."""


def load_retinaface(path: str | Path) -> RetinaFace:
    """The RetinaFace of a `Resnet50_Final.pth` (or a narrower model with the same keys), in eval mode on
    the CPU. Every key of the model must be in the file and every key of the file must be used."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RetinaFaceLoadError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RetinaFaceLoadError(f"{path}: holds no state dict of tensors")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    for key in ("body.conv1.weight", "fpn.output1.0.weight"):
        if key not in state:
            raise RetinaFaceLoadError(f"{path}: no {key!r}: not a RetinaFace ResNet-50 checkpoint")
    model = RetinaFace(width=state["body.conv1.weight"].shape[0], out_channels=state["fpn.output1.0.weight"].shape[0])
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown key(s), e.g. {', '.join(unexpected[:3])}")
        raise RetinaFaceLoadError(f"{path}: not a RetinaFace ResNet-50 state dict: {'; '.join(parts)}")
    for key, value in expected.items():
        if key in state and state[key].shape != value.shape:
            raise RetinaFaceLoadError(f"{path}: {key} has shape {tuple(state[key].shape)}, the model wants {tuple(value.shape)}")
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(state)
    return model.eval()


# ------------------------------------------------------------------------- priors, decoding, NMS


def prior_boxes(height: int, width: int) -> torch.Tensor:
    """(P, 4) anchors as (cx, cy, w, h) relative to the image, level by level, row by row, two sizes a
    location (RetinaFace's PriorBox)."""
    anchors: list[float] = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = ceil(height / step), ceil(width / step)
        for i, j in product(range(rows), range(cols)):
            for size in sizes:
                anchors += [(j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height]
    return torch.tensor(anchors, dtype=torch.float32).view(-1, 4)


def decode(offsets: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Box offsets (..., P, 4) on priors (P, 4) -> corners (x0, y0, x1, y1) relative to the image."""
    centres = priors[..., :2] + offsets[..., :2] * variances[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp(offsets[..., 2:] * variances[1])
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best first. Boxes are pixel corners counted inclusively
    (a box from 0 to 9 is 10 pixels wide), as in the Fast R-CNN NMS that RetinaFace uses; a box is dropped
    when its overlap (IoU) with a kept box is above `threshold`."""
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]) + 1)
        inter = w * h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return keep


@dataclass(frozen=True)
class Detection:
    """A face in pixels: corners (floats, as decoded) and the model's confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float


def select(boxes: np.ndarray, scores: np.ndarray, confidence: float = CONFIDENCE_THRESHOLD,
           nms_threshold: float = NMS_THRESHOLD, top_k: int = TOP_K, keep_top_k: int = KEEP_TOP_K,
           min_size: float = MIN_FACE_SIZE) -> list[Detection]:
    """Upstream's filtering of one frame's decoded boxes (pixels) and face scores: above `confidence`, the
    `top_k` best through NMS, at most `keep_top_k`, then boxes narrower or lower than `min_size` dropped."""
    above = np.nonzero(scores > confidence)[0]
    boxes, scores = boxes[above], scores[above]
    order = np.argsort(-scores, kind="stable")[:top_k]
    boxes, scores = boxes[order], scores[order]
    kept = nms(boxes, scores, nms_threshold)[:keep_top_k]
    out = []
    for i in kept:
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        if x1 - x0 < min_size or y1 - y0 < min_size:
            continue
        out.append(Detection(x0, y0, x1, y1, float(scores[i])))
    return out


# ---------------------------------------------------------------------------------------- detector


def preprocess(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB frames (N, H, W, 3) -> float32 BGR minus the mean, (N, 3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device=device, dtype=torch.float32)
    x = x.permute(0, 3, 1, 2)[:, [2, 1, 0]]
    return x - torch.tensor(BGR_MEAN, device=x.device).view(1, 3, 1, 1)


class RetinaFaceDetector:
    """Faces in RGB uint8 frames with a RetinaFace model, `batch_size` frames a forward."""

    def __init__(self, model: RetinaFace, confidence: float = CONFIDENCE_THRESHOLD,
                 nms_threshold: float = NMS_THRESHOLD, min_size: float = MIN_FACE_SIZE, batch_size: int = 4) -> None:
        self.model = model.eval()
        self.confidence = confidence
        self.nms_threshold = nms_threshold
        self.min_size = min_size
        self.batch_size = batch_size
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> "RetinaFaceDetector":
        return cls(load_retinaface(path).to(device), **kwargs)

    def to(self, device: str | torch.device) -> "RetinaFaceDetector":
        self.model.to(device)
        self._priors.clear()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _priors_for(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width).to(self.device)
        return self._priors[key]

    @torch.inference_mode()
    def detect_frames(self, frames: np.ndarray) -> list[list[Detection]]:
        """Faces in each frame of (T, H, W, 3) uint8."""
        height, width = frames.shape[1:3]
        priors = self._priors_for(height, width)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=self.device)
        found: list[list[Detection]] = []
        for start in range(0, len(frames), self.batch_size):
            offsets, probs, _ = self.model(preprocess(frames[start : start + self.batch_size], self.device))
            boxes = (decode(offsets.float(), priors) * scale).cpu().numpy()
            scores = probs[..., 1].float().cpu().numpy()
            found += [select(b, s, self.confidence, self.nms_threshold, min_size=self.min_size)
                      for b, s in zip(boxes, scores)]
        return found

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return self.detect_frames(frame[None])[0]


__all__ = ["CONFIDENCE_THRESHOLD", "Detection", "NMS_THRESHOLD", "RetinaFace", "RetinaFaceDetector",
           "RetinaFaceLoadError", "decode", "load_retinaface", "nms", "prior_boxes", "select"]
