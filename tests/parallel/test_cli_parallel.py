"""The video2world program under torchrun makes the same files as one process.

The 4-rank launch of conftest.py (gloo, CPU) with --context_parallel_size 2: two data-parallel groups, each a
Ulysses pair, share a batch of three videos (group 0 makes entries 0 and 2, group 1 entry 1). Its
output folder must hold the same files as a single-process run of the batch: MP4 frames equal, prompt
files equal, run records equal but for timings and the parallel flags, and one batch.result.json listing all
three videos, written by rank 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from tests.parallel.conftest import Launch

TIMING_KEYS = {"timings_s", "timings", "timingsS", "startedAt", "finishedAt", "durationS", "updatedAt", "started_at", "finished_at",
               "load_seconds", "coldStart", "cold_start"}
PARALLEL_FLAGS = {"parallelism", "layout"}  # the GPUs and layout: asked for, and run


@pytest.fixture(scope="module")
def single(batch) -> Path:
    from v2w_runtime.video2world import main

    out = batch.root / "single"
    assert main(batch.args(out)) == 0
    return out


@pytest.fixture(scope="module")
def parallel(launch: Launch) -> tuple[Path, str]:
    return launch.out, launch.stdout


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def frames(path: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader])


def scrub(value, out: Path):
    """A manifest or record without what differs between runs by nature: times, the parallel flags and
    the output folder's own path."""
    if isinstance(value, dict):
        return {k: scrub(v, out) for k, v in value.items() if k not in TIMING_KEYS | PARALLEL_FLAGS}
    if isinstance(value, list):
        return [scrub(v, out) for v in value]
    if isinstance(value, str):
        return value.replace(str(out), "<out>")
    return value


def test_same_files_as_one_process(single, parallel):
    out, _ = parallel
    assert files(out) == files(single)
    assert {f"clips/video{i}.mp4" for i in range(3)} <= files(out)


def test_videos_equal_frame_for_frame(single, parallel):
    out, _ = parallel
    for i in range(3):
        expected = frames(single / "clips" / f"video{i}.mp4")
        got = frames(out / "clips" / f"video{i}.mp4")
        assert expected.shape == got.shape and expected.std() > 1.0
        assert np.array_equal(got, expected), f"video{i}"


def test_side_files_and_result_match(single, parallel):
    out, stdout = parallel
    for name in files(single):
        if name.endswith(".txt"):
            assert (out / name).read_text() == (single / name).read_text(), name
        elif name.endswith(".json") and name != "batch.progress.json":
            got, expected = (json.loads((d / name).read_text()) for d in (out, single))
            assert scrub(got, out) == scrub(expected, single), name
    result = json.loads((out / "batch.result.json").read_text())
    assert [v["name"] for v in result["videos"]] == [f"video{i}.mp4" for i in range(3)]
    assert stdout.count("summary: 3 video(s)") == 1  # rank 0 alone reports


def test_num_gpus_must_match_the_world(batch, tmp_path, capsys):
    from v2w_runtime.video2world import main

    assert main(batch.args(tmp_path, "--num_gpus", "2")) == 2
    assert "--num_gpus 2 needs 2 processes: launch with torchrun --nproc_per_node=2" in capsys.readouterr().err


def test_context_parallel_size_must_divide_heads(batch, tmp_path, capsys, monkeypatch):
    from v2w_runtime.video2world import main

    # The layout is checked against the checkpoint before any process group starts: rank 0 of 4 is enough.
    for var, value in (("WORLD_SIZE", "4"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(var, value)
    assert main(batch.args(tmp_path, "--num_gpus", "4", "--context_parallel_size", "4")) == 2
    assert "--context_parallel_size 4 does not divide the transformer's 2 heads" in capsys.readouterr().err
