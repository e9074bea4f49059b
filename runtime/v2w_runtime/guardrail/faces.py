"""Face pixelation for every frame of every written video.

The detector must work offline. The default is OpenCV's boosted Haar cascades, whose trained weights ship
inside the opencv-python-headless wheel (`cv2.data`): the frontal-face cascade plus the profile cascade run
on the frame and on its mirror image (the profile cascade knows one side only). Deep detectors (RetinaFace,
YuNet, BlazeFace) are more accurate, but none of their weights come with a registry package here; any
detector with a `detect(frame) -> list[Box]` method can be passed to `FacePixelator` instead.

Haar cascades miss faces now and then from one frame to the next, so a face found in a frame is also
pixelated in its neighbours (`temporal_window` frames either side): over-covering costs a few blurred
pixels, a one-frame miss shows a face.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
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

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray) -> list[Box]:
        """Faces in one RGB uint8 frame (H, W, 3)."""


class CascadeFaceDetector:
    """OpenCV Haar cascades shipped in the wheel: frontal faces, and profiles facing either way.

    Frames are scaled down so that their longer side is at most `max_side` before detection (the cost
    grows with the pixel count); faces smaller than `min_face_fraction` of the shorter side are ignored.
    Safe to call from several threads: each thread gets its own cascades (OpenCV's are not shareable).
    """

    CASCADES = ("haarcascade_frontalface_alt2.xml", "haarcascade_profileface.xml")

    def __init__(self, max_side: int = 640, min_face_fraction: float = 0.04, min_neighbors: int = 5,
                 scale_factor: float = 1.1) -> None:
        import cv2

        self._cv2 = cv2
        self._local = threading.local()
        self._cascades()  # fail now, not in the first frame, when the cascades cannot be read
        self.max_side = max_side
        self.min_face_fraction = min_face_fraction
        self.min_neighbors = min_neighbors
        self.scale_factor = scale_factor

    def _cascades(self):
        if not hasattr(self._local, "cascades"):
            self._local.cascades = tuple(self._load(name) for name in self.CASCADES)
        return self._local.cascades

    def _load(self, name: str):
        path = self._cv2.data.haarcascades + name
        cascade = self._cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not read its face cascade {name}")
        return cascade

    def detect(self, frame: np.ndarray) -> list[Box]:
        cv2 = self._cv2
        frontal, profile = self._cascades()
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        small_w = gray.shape[1]
        side = max(20, int(min(gray.shape) * self.min_face_fraction))
        kwargs = dict(scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side))
        found = [tuple(r) for r in frontal.detectMultiScale(gray, **kwargs)]
        found += [tuple(r) for r in profile.detectMultiScale(gray, **kwargs)]
        found += [(small_w - x - w, y, w, h) for x, y, w, h in profile.detectMultiScale(cv2.flip(gray, 1), **kwargs)]
        return [
            Box(int(x / scale), int(y / scale), min(width, math.ceil((x + w) / scale)), min(height, math.ceil((y + h) / scale)))
            for x, y, w, h in found
        ]


def pixelate(frame: np.ndarray, boxes: list[Box], cells: int = 8, margin: float = 0.2) -> np.ndarray:
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
    """Detects faces in every frame and pixelates them, also in `temporal_window` frames either side.
    Frames are searched by `workers` threads (OpenCV releases the GIL while it searches)."""

    def __init__(self, detector: FaceDetector | None = None, temporal_window: int = 2, cells: int = 8,
                 margin: float = 0.2, workers: int | None = None) -> None:
        self.detector = detector if detector is not None else CascadeFaceDetector()
        self.temporal_window = temporal_window
        self.cells = cells
        self.margin = margin
        self.workers = workers if workers is not None else min(8, os.cpu_count() or 1)

    def detect(self, frames: np.ndarray) -> list[list[Box]]:
        if self.workers <= 1 or len(frames) <= 1:
            return [self.detector.detect(frame) for frame in frames]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="faces") as pool:
            return list(pool.map(self.detector.detect, frames))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.pixelate_found(frames, self.detect(frames))

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
