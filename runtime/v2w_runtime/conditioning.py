"""The conditioning frames: an image gives one frame; a video gives its last frame or its last 5.

Frames are center-cropped to the output aspect ratio and scaled to the output size, so the model always
sees the requested resolution and aspect ratio without distortion.

Inputs come from users, so decoding is defensive: a picture or video frame over `max_input_pixels()` is
refused from its header before anything is decoded; images are cropped before they are scaled, so no
aspect ratio can make a huge intermediate picture; ffmpeg runs with a time limit, reads only the local
file through the container demuxers we expect (no playlists, no network), and a damaged or truncated
video is refused rather than conditioned on whatever part of it decoded. Every failure is a
ConditioningError that names the input.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import warnings
from collections import deque
from pathlib import Path

import numpy as np

from v2w_api.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES

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


MAX_PIXELS_ENV = "V2W_MAX_INPUT_PIXELS"
# 100 megapixels per picture or frame: phone photos fit, a decompression bomb does not. Pillow's own
# refusal starts at about 179 megapixels, so this limit decides first unless it is raised above that.
DEFAULT_MAX_PIXELS = 100_000_000
DECODE_TIMEOUT_ENV = "V2W_INPUT_DECODE_TIMEOUT_S"
DEFAULT_DECODE_TIMEOUT_S = 300.0
# The container formats a conditioning video may be in (ffmpeg demuxer names). Anything else, above all
# playlists (hls, concat) that make ffmpeg open further files or URLs, is not opened.
VIDEO_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,gif"


def max_input_pixels() -> int:
    """The most pixels a conditioning picture or video frame may have ($V2W_MAX_INPUT_PIXELS)."""
    return _positive_env(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, int)


def decode_timeout_s() -> float:
    """The longest a conditioning video may take to decode ($V2W_INPUT_DECODE_TIMEOUT_S)."""
    return _positive_env(DECODE_TIMEOUT_ENV, DEFAULT_DECODE_TIMEOUT_S, float)


def _positive_env(var: str, default, kind):
    text = os.environ.get(var)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConditioningError(f"${var} must be a positive number, not {text!r}") from None
    if value <= 0:
        raise ConditioningError(f"${var} must be a positive number, not {text!r}")
    return value


def _too_large(name: str, size: str, limit: int) -> ConditioningError:
    return ConditioningError(
        f"input {name}: {size} is more than the limit of {limit:,} pixels per picture or frame (a "
        f"decompression bomb, or far more detail than the output needs); scale it down, or raise ${MAX_PIXELS_ENV}"
    )


def read_image(path: Path, name: str) -> np.ndarray:
    """One RGB frame (1, H, W, 3) uint8, upright as its EXIF orientation says, 16-bit samples scaled to 8."""
    from PIL import Image

    limit = max_input_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            with Image.open(path) as img:
                width, height = img.size
                if width * height > limit:
                    raise _too_large(name, f"the image is {width}x{height} pixels, which", limit)
                frame = _rgb8(_upright(img))
    except ConditioningError:
        raise
    except Image.DecompressionBombError:  # Pillow's own refusal, from the header, above about 179 megapixels
        pillow = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else limit
        raise _too_large(name, "the image", min(limit, pillow)) from None
    except Exception as exc:  # a decoder's failure on bad data can be of almost any type
        raise ConditioningError(f"input {name}: not a readable image ({_describe(exc, path, name)})") from None
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ConditioningError(f"input {name}: not a readable image (decoded to shape {frame.shape})")
    return frame[None]


def _upright(img):
    """The picture as it is meant to be seen (camera pictures often store the rotation in EXIF)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a damaged EXIF block does not make the pixels unusable
        return img


def _rgb8(img) -> np.ndarray:
    """(H, W, 3) uint8. Pillow's own conversion clips 16-bit grey at 255 (a white picture): scale it instead."""
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img).astype(np.int64).clip(0, 65535)
        grey = ((grey * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def _describe(exc: BaseException, path: Path, name: str) -> str:
    """The decoder's message, with our local copy's path replaced by the input's name."""
    text = (str(exc).strip() or type(exc).__name__).replace(str(path), name)
    return text if len(text) <= 300 else text[:300] + "..."


def read_last_frames(path: Path, count: int, name: str, height: int, width: int) -> tuple[np.ndarray, int]:
    """The last `count` frames of a video, cropped and scaled by ffmpeg to (height, width), and its frame count.

    Frames are streamed (only `count` are kept) at the output size, so memory does not depend on the
    video. Every frame is decoded (no seeking): a decode error anywhere refuses the video.
    """
    import imageio_ffmpeg

    limit = max_input_pixels()
    timeout = decode_timeout_s()
    crop = f"crop=w='min(iw,ih*{width}/{height})':h='min(ih,iw*{height}/{width})':exact=1"
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-xerror",
        "-protocol_whitelist", "file", "-format_whitelist", VIDEO_DEMUXERS, "-max_pixels", str(limit),
        "-i", "file:" + str(Path(path).absolute()),
        "-map", "0:v:0", "-vf", f"{crop},scale={width}:{height}:flags=bicubic", "-fps_mode", "passthrough",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]
    frame_bytes = height * width * 3
    last: deque[np.ndarray] = deque(maxlen=count)
    total, partial, timed_out = 0, False, threading.Event()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)

        def stop() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            while True:
                chunk = proc.stdout.read(frame_bytes)
                if not chunk:
                    break
                if len(chunk) < frame_bytes:
                    partial = True
                    break
                last.append(np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3))
                total += 1
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        errors.seek(0)
        log = errors.read(20000).decode("utf-8", "replace")
    if timed_out.is_set():
        raise ConditioningError(f"input {name}: decoding took longer than {timeout:g} s (${DECODE_TIMEOUT_ENV})")
    if code != 0 or partial:
        raise ConditioningError(f"input {name}: {_ffmpeg_problem(log, limit)}")
    if total == 0:
        raise ConditioningError(f"input {name}: the video has no frames")
    return np.stack(list(last)), total


def _ffmpeg_problem(log: str, limit: int) -> str:
    """What ffmpeg's error output says went wrong, in a few words."""
    text = log.lower()
    if "matches no streams" in text:
        return "not a readable video (it has no video stream)"
    if "max pixel count" in text:
        return f"not a readable video (its frames are more than the limit of {limit:,} pixels; ${MAX_PIXELS_ENV})"
    if "format not on whitelist" in text or "not on whitelist" in text:
        return "not a readable video (not a video container format: playlists and other formats are refused)"
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip() for line in log.splitlines()]
    lines = [line for line in lines if line and not line.lower().startswith(("error opening output", "error parsing options"))]
    detail = next((line for line in lines if any(k in line.lower() for k in ("partial file", "moov atom", "invalid nal", "end of file", "invalid data"))),
                  lines[0] if lines else "ffmpeg failed")
    return f"not a readable video, damaged or truncated ({detail[:200]})"


def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop (T, H, W, 3) frames to the aspect ratio of height x width around the center, then scale; uint8 out.

    Cropping first keeps every intermediate picture no larger than the input or the output, whatever the
    input's aspect ratio (scaling a 1x100000 strip to cover first would need billions of pixels).
    """
    from PIL import Image

    src_h, src_w = frames.shape[1:3]
    scale = max(height / src_h, width / src_w)
    crop_w, crop_h = min(src_w, width / scale), min(src_h, height / scale)
    left, top = (src_w - crop_w) / 2, (src_h - crop_h) / 2
    box = (left, top, left + crop_w, top + crop_h)
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        img = Image.fromarray(np.ascontiguousarray(frame))
        if (src_w, src_h) == (width, height):
            out[i] = frame
        elif box == (round(left), round(top), round(left) + width, round(top) + height):
            out[i] = np.asarray(img.crop(tuple(int(v) for v in box)))  # already at scale: a plain crop
        else:
            out[i] = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC, box=box))
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
    if path.stat().st_size == 0:
        raise ConditioningError(f"input {name}: the file is empty")
    if is_image(name) or (not is_video(name) and _looks_like_image(path)):
        if num_conditional_frames != 1:
            raise ConditioningError(
                f"input {name}: a still image gives one frame, but --num_conditional_frames is "
                f"{num_conditional_frames}; give a video of at least {num_conditional_frames} frames"
            )
        return fit_frames(read_image(path, name), height, width)
    frames, total = read_last_frames(path, num_conditional_frames, name, height, width)
    if total < num_conditional_frames:
        raise ConditioningError(
            f"input {name}: the video has {total} frame(s), {num_conditional_frames}-frame conditioning "
            f"needs at least {num_conditional_frames}"
        )
    return frames


def _looks_like_image(path: Path) -> bool:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return getattr(img, "n_frames", 1) == 1
    except Image.DecompressionBombError:
        return True  # a picture, refused as too large by read_image
    except Exception:
        return False


__all__ = [
    "CONDITIONAL_FRAME_CHOICES",
    "RESOLUTIONS",
    "ConditioningError",
    "fit_frames",
    "load_conditioning",
    "max_input_pixels",
    "output_size",
]
