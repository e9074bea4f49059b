"""One 4-rank torchrun launch (gloo, CPU) serves every multi-process test here.

Each process pays ~15 s of CPU for its imports, and CI has 2 cores: so the launch first checks the
transformer and the sampler in every layout (exactness_worker.py), then runs the video2world program on
a batch in the same process group. Tests read what it left behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.parallel.launch import torchrun
from v2w_runtime.tiny import write_checkpoint
from v2w_runtime.tiny.inputs import write_image

WORLD = 4
# Small enough for seconds on one core: 64x96 pixels, 9 frames (3 latent frames), 2 steps.
FAST = ["--height", "64", "--width", "96", "--num_frames", "9", "--num_steps", "2",
        "--disable_guardrail", "--disable_prompt_refiner"]
# Two data-parallel groups, each a Ulysses pair: group 0 makes entries 0 and 2, group 1 entry 1.
PARALLEL_FLAGS = ["--num_gpus", str(WORLD), "--context_parallel_size", "2", "--no-cfg_parallel"]


@dataclass
class Batch:
    root: Path
    checkpoint: Path
    file: Path

    def args(self, out: Path, *extra: str) -> list[str]:
        return ["--checkpoint_dir", str(self.checkpoint), "--batch_input_json", str(self.file),
                "--save_path", str(out / "video.mp4"), *FAST, *extra]


@dataclass
class Launch:
    reports: list[dict]  # exactness_worker.py's report of each rank
    out: Path  # the program's output folder
    stdout: str


@pytest.fixture(scope="session")
def batch(tmp_path_factory) -> Batch:
    root = tmp_path_factory.mktemp("parallel_batch")
    checkpoint = write_checkpoint(root / "ckpt", seed=0)
    entries = []
    for i in range(3):
        image = write_image(root / f"in{i}.png", height=72, width=100, seed=10 + i)
        entries.append({"input_video": str(image), "prompt": f"a red car moves slowly, take {i}",
                        "output_video": f"clips/video{i}.mp4"})
    file = root / "batch.json"
    file.write_text(json.dumps(entries))
    return Batch(root, checkpoint, file)


@pytest.fixture(scope="session")
def launch(batch, tmp_path_factory) -> Launch:
    reports = tmp_path_factory.mktemp("reports")
    out = batch.root / "parallel"
    proc = torchrun(WORLD, Path(__file__).with_name("exactness_worker.py"), str(reports), "--",
                    *batch.args(out, *PARALLEL_FLAGS))
    return Launch([json.loads((reports / f"rank{r}.json").read_text()) for r in range(WORLD)], out, proc.stdout)
