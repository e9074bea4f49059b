"""Two ranks under torchrun (gloo on CPU): batch entries are shared out and rank 0 merges every result."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import FAST, read_json, read_video


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    argv = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
            "-m", "v2w_runtime.video2world", f"--num_gpus={nproc}", "--device=cpu", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_batch_across_two_ranks(tiny_checkpoint, media, tmp_path, cli):
    batch = [
        {"input_video": str(media["image"]), "prompt": "a bus", "output_video": "a.mp4"},
        {"input_video": str(media["video"]), "prompt": "a tram", "output_video": "b.mp4"},
        {"input_video": str(tmp_path / "absent.png"), "prompt": "a car", "output_video": "c.mp4"},
    ]
    (tmp_path / "batch.json").write_text(json.dumps(batch))
    proc = torchrun(["--checkpoint_dir", str(tiny_checkpoint), "--batch_input_json", "batch.json", *FAST], tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # c.mp4 has no input
    result = read_json(tmp_path / "output" / "batch.result.json")
    assert [(v["name"], v["status"], v["seed"]) for v in result["videos"]] == [
        ("a.mp4", "succeeded", 0), ("b.mp4", "succeeded", 1), ("c.mp4", "failed", 2)]
    progress = read_json(tmp_path / "output" / "batch.progress.json")
    assert progress["videosDone"] == progress["videosTotal"] == 3
    assert proc.stdout.count("summary:") == 1  # only rank 0 reports

    # rank 1 made b.mp4: the same video one process makes with the same seed
    single = cli("--batch_input_json", str(tmp_path / "batch.json"), "--save_path", "alone/x.mp4")
    assert single.code == 1
    np.testing.assert_array_equal(read_video(tmp_path / "output" / "b.mp4")[0], read_video(Path("alone/b.mp4"))[0])
