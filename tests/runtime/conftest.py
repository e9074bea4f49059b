"""Fixtures for the runtime tests: tiny random checkpoints, synthetic inputs, the CLI in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from v2w_runtime import storage
from v2w_runtime.interfaces import GuardrailError, Verdict
from v2w_runtime.tiny import write_checkpoint
from v2w_runtime.tiny.inputs import write_image, write_video

# Small enough for seconds on one CPU core: 64x96 pixels, 9 frames (3 latent frames), 2 steps.
FAST = ["--height", "64", "--width", "96", "--num_frames", "9", "--num_steps", "2",
        "--disable_guardrail", "--disable_prompt_refiner"]


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "image": write_image(folder / "still.png", height=90, width=120, seed=1),
        "video": write_video(folder / "clip.mp4", num_frames=8, height=80, width=112, seed=2),
        "short": write_video(folder / "short.mp4", num_frames=3, height=80, width=112, seed=3),
    }


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test runs in its own folder with its own download cache and a fresh S3 client."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    storage.reset_client()
    yield
    storage.reset_client()


@dataclass
class CliRun:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, tiny_checkpoint):
    """Run `python -m v2w_runtime.video2world ARGS` in this process (the same parser and main)."""
    from v2w_runtime.video2world import main

    def run(*args: str, fast: bool = True, checkpoint: Path | str | None = None) -> CliRun:
        argv = ["--checkpoint_dir", str(checkpoint or tiny_checkpoint), *args, *(FAST if fast else [])]
        code = main(argv)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run


def read_video(path: Path) -> tuple[np.ndarray, dict]:
    """Frames (T, H, W, 3) and the metadata of an MP4, read back through imageio-ffmpeg."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader])
    return frames, meta


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


class WordGuardrail:
    """A real Guardrail for tests of the flow: blocks prompts containing a word, videos that are too bright.

    `postprocess` pixelates the whole frame in 8x8 cells, a visible change the tests can find.
    """

    def __init__(self, word: str = "forbidden", max_mean: float = 256.0, broken: bool = False) -> None:
        self.word, self.max_mean, self.broken = word.lower(), max_mean, broken
        self.seen_texts: list[str] = []

    def check_text(self, text: str) -> Verdict:
        if self.broken:
            raise GuardrailError("the text classifier cannot run")
        self.seen_texts.append(text)
        if self.word in text.lower().split():
            return Verdict(False, "blocklist", f"the word {self.word!r}")
        return Verdict.ok("blocklist")

    def check_video(self, frames: np.ndarray) -> Verdict:
        mean = float(frames.mean())
        return Verdict(mean <= self.max_mean, "brightness", f"mean {mean:.1f} > {self.max_mean}" if mean > self.max_mean else "")

    def postprocess(self, frames: np.ndarray) -> np.ndarray:
        t, h, w, c = frames.shape
        cells = frames.reshape(t, h // 8, 8, w // 8, 8, c).mean(axis=(2, 4), keepdims=True)
        return np.broadcast_to(cells, (t, h // 8, 8, w // 8, 8, c)).reshape(t, h, w, c).astype(np.uint8)
