"""The conditioning frames: an image gives one frame; a video gives its last frame or its last 5.

Frames are scaled to cover the output size and center-cropped to it, so the model always sees the
requested resolution and aspect ratio without distortion.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from v2w_operator.api.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES

# (width, height) of the output video per resolution class and aspect ratio, as the models were trained.
RESOLUTIONS: dict[str, dict[str, tuple[int, int]]] = {
    "720": {"16:9": (1280, 704), "4:3": (960, 704), "1:1": (960, 960), "3:4": (704, 960), "9:16": (704, 1280)},
    "480": {"16:9": (832, 480), "4:3": (640, 480), "1:1": (640, 640), "3:4": (480, 640), "9:16": (480, 832)},
}
CONDITIONAL_FRAME_CHOICES = (1, 5)


class ConditioningError(ValueError):
    """The conditioning input cannot be used; the message names it."""


def output_size(resolution: str | int, aspect_ratio: str) -> tuple[int, int]:
    """(height, width) of the generated video."""
    table = RESOLUTIONS.get(str(resolution))
    if table is None:
        raise ValueError(f"resolution {resolution!r}: choose one of {', '.join(RESOLUTIONS)}")
    if aspect_ratio not in table:
        raise ValueError(f"aspect ratio {aspect_ratio!r}: choose one of {', '.join(table)}")
    width, height = table[aspect_ratio]
    return height, width


def is_image(path: str | Path) -> bool:
    return str(path).lower().split("?", 1)[0].endswith(IMAGE_SUFFIXES)


def is_video(path: str | Path) -> bool:
    return str(path).lower().split("?", 1)[0].endswith(VIDEO_SUFFIXES)


def read_image(path: Path, name: str) -> np.ndarray:
    """One RGB frame (1, H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            frame = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ConditioningError(f"input {name}: not a readable image ({exc})") from None
    return frame[None]


def read_last_frames(path: Path, count: int, name: str) -> tuple[np.ndarray, int]:
    """The last `count` frames (T, H, W, 3) uint8 of a video, streamed; also the video's frame count."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        last: deque[np.ndarray] = deque(maxlen=count)
        total = 0
        for raw in reader:
            last.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
            total += 1
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as exc:
        raise ConditioningError(f"input {name}: not a readable video ({str(exc).strip().splitlines()[-1:]})") from None
    if total == 0:
        raise ConditioningError(f"input {name}: the video has no frames")
    return np.stack(list(last)), total


def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale (T, H, W, 3) frames to cover height x width, then crop the center; uint8 out."""
    from PIL import Image

    src_h, src_w = frames.shape[1:3]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = max(height, round(src_h * scale)), max(width, round(src_w * scale))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        img = Image.fromarray(frame)
        if (new_w, new_h) != (src_w, src_h):
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        out[i] = np.asarray(img)[top : top + height, left : left + width]
    return out


def load_conditioning(path: Path, num_conditional_frames: int, height: int, width: int, name: str | None = None) -> np.ndarray:
    """Conditioning frames (T, height, width, 3) uint8 from an image or a video file.

    `name` is how errors refer to the input (its URI); defaults to the path.
    """
    name = name or str(path)
    if num_conditional_frames not in CONDITIONAL_FRAME_CHOICES:
        raise ConditioningError(f"num_conditional_frames must be 1 or 5, not {num_conditional_frames}")
    if not path.is_file():
        raise ConditioningError(f"input {name}: no such file")
    if is_image(name) or (not is_video(name) and _looks_like_image(path)):
        if num_conditional_frames != 1:
            raise ConditioningError(
                f"input {name}: a still image gives one frame, but --num_conditional_frames is "
                f"{num_conditional_frames}; give a video of at least {num_conditional_frames} frames"
            )
        frames = read_image(path, name)
    else:
        frames, total = read_last_frames(path, num_conditional_frames, name)
        if total < num_conditional_frames:
            raise ConditioningError(
                f"input {name}: the video has {total} frame(s), {num_conditional_frames}-frame conditioning "
                f"needs at least {num_conditional_frames}"
            )
    return fit_frames(frames, height, width)


def _looks_like_image(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return getattr(img, "n_frames", 1) == 1
    except (UnidentifiedImageError, OSError):
        return False


__all__ = [
    "CONDITIONAL_FRAME_CHOICES",
    "RESOLUTIONS",
    "ConditioningError",
    "fit_frames",
    "load_conditioning",
    "output_size",
]
