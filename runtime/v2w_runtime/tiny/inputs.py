"""Synthetic conditioning inputs (images and a short video) for the demo and the tests.

Drawn from a seed: a sky-to-ground gradient with a few coloured boxes that drift between frames, so
that the last frame of a video differs from the others and cropping is visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def scene_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 frames of drifting boxes over a gradient."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    sky, ground = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    base = (sky * (1 - rows) + ground * rows) * np.ones((1, width, 1))
    boxes = [
        (rng.uniform(0, 0.7), rng.uniform(0, 0.7), rng.uniform(0.1, 0.3), rng.uniform(0, 255, 3), rng.uniform(-0.03, 0.03))
        for _ in range(3)
    ]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = base.copy()
        for y, x, size, colour, speed in boxes:
            top, left = int((y % 1.0) * height), int(((x + speed * t) % 1.0) * width)
            frame[top : top + int(size * height), left : left + int(size * width)] = colour
        frames[t] = frame.clip(0, 255).astype(np.uint8)
    return frames


def write_image(path: str | Path, height: int = 240, width: int = 320, seed: int = 0) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene_frames(1, height, width, seed)[0]).save(path)
    return path


def write_video(path: str | Path, num_frames: int = 12, height: int = 240, width: int = 320, fps: int = 16, seed: int = 0) -> Path:
    from ..outputs import write_mp4

    return write_mp4(scene_frames(num_frames, height, width, seed), Path(path), fps)


def write_example_inputs(folder: str | Path) -> list[Path]:
    """input0-2.jpg (stills) and input3.mp4 (a 12-frame clip), as the examples expect."""
    folder = Path(folder)
    paths = [write_image(folder / f"input{i}.jpg", seed=i) for i in range(3)]
    paths.append(write_video(folder / "input3.mp4", seed=3))
    return paths
