"""The seed guide's commands as written, from a checkout's root: `python -m examples.video2world`,
`python -m examples.video2world_bestofn` and `torchrun --nproc_per_node=2 examples/video2world.py` (a script
path), on CPU with tiny checkpoints at the seed's default paths. Only the size and speed knobs of the
README's `$Q` are added; every other flag is the guide's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from v2w_api.manifest import ResultManifest

from .conftest import read_video

ROOT = Path(__file__).resolve().parents[2]
Q = ["--disable_guardrail", "--disable_prompt_refiner", "--height", "64", "--width", "96", "--num_frames", "9",
     "--num_steps", "2"]
PROMPT = "A nighttime city bus terminal gradually shifts from stillness to subtle movement."

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "V2W_CACHE_DIR": str(tmp / "cache"),
           "PET_MASTER_PORT": str(_free_port())}  # torchrun's --master_port, so the command stays the guide's
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "PYTHONPATH"):
        env.pop(var, None)
    return env


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=500)
    return proc


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A folder laid out as the repository root after the README's setup steps: the repository's examples/,
    the seed's batch file, and what `python -m v2w_runtime.tiny` writes at the seed's default paths."""
    root = tmp_path_factory.mktemp("checkout")
    (root / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    (root / "assets" / "video2world").mkdir(parents=True)
    shutil.copy(ROOT / "assets" / "video2world" / "batch_example.json", root / "assets" / "video2world")
    made = run([sys.executable, "-m", "v2w_runtime.tiny", "--out", "checkpoints/nvidia/Cosmos-Predict2-2B-Video2World",
                "--example_inputs", "assets/video2world"], root)
    assert made.returncode == 0, made.stderr
    return root


def test_single_video(checkout):
    proc = run([sys.executable, "-m", "examples.video2world", "--model_size", "2B",
                "--input_path", "assets/video2world/input0.jpg", "--num_conditional_frames", "1",
                "--prompt", PROMPT, "--save_path", "output/video2world_2b.mp4", *Q], checkout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_video(checkout / "output" / "video2world_2b.mp4")[0].shape == (9, 64, 96, 3)


def test_batch_of_the_seeds_batch_file(checkout):
    proc = run([sys.executable, "-m", "examples.video2world", "--model_size", "2B",
                "--batch_input_json", "assets/video2world/batch_example.json", *Q], checkout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    batch = json.loads((checkout / "assets" / "video2world" / "batch_example.json").read_text())
    for entry in batch:
        assert (checkout / entry["output_video"]).is_file(), entry["output_video"]


def test_five_frame_conditioning(checkout):
    proc = run([sys.executable, "-m", "examples.video2world", "--model_size", "2B",
                "--input_path", "assets/video2world/input3.mp4", "--num_conditional_frames", "5",
                "--prompt", PROMPT, "--save_path", "output/video2world_2b_5frames.mp4", *Q], checkout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (checkout / "output" / "video2world_2b_5frames.mp4").is_file()


def test_best_of_n(checkout):
    # The README's tiny critic, trained a few steps only: this test is about the commands, not the verdicts.
    made = run([sys.executable, "-m", "v2w_runtime.tiny.critic", "checkpoints/nvidia/Cosmos-Reason1-7B",
                "--steps", "40"], checkout)
    assert made.returncode == 0, made.stderr
    proc = run([sys.executable, "-m", "examples.video2world_bestofn", "--model_size", "2B",
                "--input_path", "assets/video2world/input0.jpg", "--prompt", PROMPT,
                "--num_generations", "2", "--num_critic_trials", "1", "--save_path", "output/rejection_sampling_demo",
                *Q, "--critic_max_new_tokens", "12"], checkout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = checkout / "output" / "rejection_sampling_demo"
    assert {"best.mp4", "index.html"} <= {p.name for p in folder.iterdir()}
    result = ResultManifest.model_validate_json((folder / "result.json").read_text())
    assert result.succeeded and len(result.videos) == 2


def _torchrun() -> list[str]:
    found = shutil.which("torchrun") or shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def test_multi_gpu_form_with_a_script_path(checkout):
    """The guide's `torchrun --nproc_per_node=${NUM_GPUS} examples/video2world.py … --num_gpus ${NUM_GPUS}`:
    a script path, not -m (it died with 'attempted relative import'); two processes with gloo on CPU."""
    proc = run([*_torchrun(), "--nproc_per_node=2", "examples/video2world.py", "--model_size", "2B",
                "--input_path", "assets/video2world/input0.jpg", "--prompt", PROMPT,
                "--save_path", "output/video2world_2b_2gpu.mp4", "--num_gpus", "2", *Q], checkout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_video(checkout / "output" / "video2world_2b_2gpu.mp4")[0].shape == (9, 64, 96, 3)
    assert proc.stdout.count("summary:") == 1  # rank 0 alone reports


def test_the_commands_sharing_output_keep_each_its_own_record(checkout):
    """Every command above wrote into output/: each run's progress and result files are named after it
    (the save path's stem, or the batch file's), and none overwrote another's."""
    out = checkout / "output"
    expected = {"video2world_2b": ["video2world_2b.mp4"], "video2world_2b_5frames": ["video2world_2b_5frames.mp4"],
                "video2world_2b_2gpu": ["video2world_2b_2gpu.mp4"],
                "batch_example": [Path(e["output_video"]).name for e in json.loads(
                    (checkout / "assets" / "video2world" / "batch_example.json").read_text())]}
    for record, videos in expected.items():
        result = ResultManifest.model_validate_json((out / f"{record}.result.json").read_text())
        assert result.succeeded and [v.name for v in result.videos] == videos, record
        assert json.loads((out / f"{record}.progress.json").read_text())["stage"] == "done", record
    assert not (out / "result.json").exists() and not (out / "progress.json").exists()
