"""Face pixelation for every frame of every written video.

Faces are found by RetinaFace (`retinaface.py`, the detector of NVIDIA's Cosmos-Guardrail1 release, with
upstream's confidence 0.7 and NMS 0.4) and each one is replaced by flat blocks, 5 across (upstream's
pixelation), over its box grown by a margin. Two additions to upstream keep a face from showing where the
detector is unsure: the margin (hair, ears and a chin outside a tight box), and a face found in one frame
is also pixelated in its neighbours (`temporal_window` frames either side), so a one-frame miss does not
show it. Over-covering costs a few blurred pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Box:
    """A face in pixel coordinates: x0, y0 inclusive, x1, y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    def expanded(self, margin: float, width: int, height: int) -> "Box":
        dx = int(round((self.x1 - self.x0) * margin))
        dy = int(round((self.y1 - self.y0) * margin))
        return Box(max(0, self.x0 - dx), max(0, self.y0 - dy), min(width, self.x1 + dx), min(height, self.y1 + dy))

    @classmethod
    def around(cls, found, width: int, height: int) -> "Box":
        """The pixels a detected box (float corners x0, y0, x1, y1) covers, clipped to the frame."""
        return cls(max(0, math.floor(found.x0)), max(0, math.floor(found.y0)),
                   min(width, math.ceil(found.x1)), min(height, math.ceil(found.y1)))

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)


class FaceDetector(Protocol):
    def detect_frames(self, frames: np.ndarray) -> list[list]:
        """Faces in each RGB uint8 frame of (T, H, W, 3), as boxes with corners x0, y0, x1, y1 in pixels."""


def pixelate(frame: np.ndarray, boxes: list[Box], cells: int = 5, margin: float = 0.2) -> np.ndarray:
    """A copy of `frame` with each box (grown by `margin`) replaced by `cells` blocks across its
    longer side, each block the mean colour of the pixels it covers."""
    out = frame.copy()
    height, width = frame.shape[:2]
    for box in boxes:
        b = box.expanded(margin, width, height)
        if b.area == 0:
            continue
        region = out[b.y0 : b.y1, b.x0 : b.x1].astype(np.float32)
        h, w = region.shape[:2]
        cell = max(2, math.ceil(max(h, w) / cells))
        for y in range(0, h, cell):
            for x in range(0, w, cell):
                block = region[y : y + cell, x : x + cell]
                block[...] = block.reshape(-1, block.shape[-1]).mean(axis=0)
        out[b.y0 : b.y1, b.x0 : b.x1] = np.clip(np.rint(region), 0, 255).astype(frame.dtype)
    return out


class FacePixelator:
    """Detects faces in every frame and pixelates them, also in `temporal_window` frames either side."""

    def __init__(self, detector: FaceDetector, temporal_window: int = 2, cells: int = 5, margin: float = 0.2) -> None:
        self.detector = detector
        self.temporal_window = temporal_window
        self.cells = cells
        self.margin = margin

    def detect(self, frames: np.ndarray) -> list[list[Box]]:
        """The face boxes of each frame, clipped to the frame."""
        height, width = frames.shape[1:3]
        found = self.detector.detect_frames(frames)
        if len(found) != len(frames):
            raise ValueError(f"the face detector gave {len(found)} answers for {len(frames)} frames")
        return [[box for d in faces if (box := Box.around(d, width, height)).area] for faces in found]

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.pixelate_found(frames, self.detect(frames))

    def to(self, device) -> "FacePixelator":
        move = getattr(self.detector, "to", None)
        if move is not None:
            move(device)
        return self

    def pixelate_found(self, frames: np.ndarray, found: list[list[Box]]) -> np.ndarray:
        """Pixelate the faces `detect` found (a list of boxes per frame)."""
        if len(found) != len(frames):
            raise ValueError(f"{len(found)} detection lists for {len(frames)} frames")
        out = np.empty_like(frames)
        for t in range(len(frames)):
            lo, hi = max(0, t - self.temporal_window), min(len(frames), t + self.temporal_window + 1)
            boxes = [box for near in found[lo:hi] for box in near]
            out[t] = pixelate(frames[t], boxes, self.cells, self.margin) if boxes else frames[t]
        return out
