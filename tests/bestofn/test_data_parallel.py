"""Best-of-N under torchrun: two CPU ranks (gloo) share the N generations and the scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from v2w_api.manifest import ResultManifest

from .conftest import cli_args


@pytest.mark.slow
def test_generations_are_spread_over_two_ranks(tiny_models, tmp_path):
    out = tmp_path / "dp"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", V2W_LOG_LEVEL="WARNING")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "v2w_runtime.bestofn",
        *cli_args(tiny_models, str(out), "--num_generations", "4", "--num_critic_trials", "1", "--seed", "20",
                  "--num_gpus", "2"),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = ResultManifest.model_validate_json((out / "result.json").read_text())
    assert sorted(v.seed for v in result.videos) == [20, 21, 22, 23]
    groups = {i: json.loads((out / f"gen{i:02d}_seed{20 + i}.json").read_text())["gpu_group"] for i in range(4)}
    assert groups == {0: 0, 1: 1, 2: 0, 3: 1}  # Layout.shard: every other generation
    assert (out / "index.html").is_file() and (out / "best.mp4").is_file()


@pytest.mark.slow
def test_the_critic_is_shared_by_every_rank_and_scores_as_one_rank_does(tiny_models, tmp_path):
    """One context-parallel group of 2 ranks makes each video together; then each rank loads the critic once and
    judges whole videos of its own, and every trial's answer is the one a single process gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", V2W_LOG_LEVEL="INFO")
    args = ("--num_generations", "2", "--num_critic_trials", "2", "--seed", "30", "--disable_prompt_refiner")
    logs = tmp_path / "logs"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "--log-dir", str(logs), "--redirects", "3", "-m", "v2w_runtime.bestofn",
        *cli_args(tiny_models, str(tmp_path / "cp"), *args, "--num_gpus", "2", "--context_parallel_size", "2"),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored_by = {rank: [line for line in (next(logs.rglob(f"{rank}/stderr.log"))).read_text().splitlines()
                        if "scoring " in line] for rank in (0, 1)}
    assert [len(lines) for lines in scored_by.values()] == [1, 1], scored_by

    from v2w_runtime.bestofn import main

    assert main(cli_args(tiny_models, str(tmp_path / "one"), *args)) == 0
    parallel, single = (ResultManifest.model_validate_json((tmp_path / d / "result.json").read_text())
                        for d in ("cp", "one"))
    assert [(v.name, v.score) for v in parallel.videos] == [(v.name, v.score) for v in single.videos]
    for video in single.videos:
        stem = video.name[: -len(".mp4")]
        answers = [[t["raw"] for t in json.loads((tmp_path / d / f"{stem}.json").read_text())["trials"]]
                   for d in ("cp", "one")]
        assert answers[0] == answers[1]
