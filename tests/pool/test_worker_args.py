"""The worker reads a pooled job's run arguments as the job's pod would, and its own configuration with the
platform's runtime flags: the operator's real rendering goes through the worker's real parsers."""

from __future__ import annotations

import pytest

from v2w_api.spec import BestOfNJobSpec, Video2WorldJobSpec
from v2w_api.worker import WorkerConfig, mismatches
from v2w_operator.backends import child
from v2w_operator.config import OperatorConfig
from v2w_runtime.cli import UsageError
from v2w_runtime.worker import loading_config, parse_run_args, worker_config

EXTRA = ["--height", "64", "--width", "96", "--num_frames", "9", "--device", "cpu"]
OUTPUT = {"uri": "s3://results/r", "credentialsSecret": {"name": "s3"}}


def operator_config() -> OperatorConfig:
    return OperatorConfig(checkpoint_2b="s3://models/video2world", refiner_checkpoint="s3://models/reason1",
                          runtime_extra_args=EXTRA)


def lease_args(kind: str, spec) -> list[str]:
    """The run arguments the operator puts on a pooled job's Lease: a PyTorchJob container's arguments."""
    config = operator_config()
    run = child.run_config(kind, "job-a", spec, config, "s3://results/r/ns/job-a")
    return child.runtime_args(kind, run, config)


def test_the_operators_video2world_args_parse_as_the_pod_parses_them():
    spec = Video2WorldJobSpec.model_validate({
        "input": {"uri": "s3://inputs/a.jpg", "prompt": "a red bus"}, "output": OUTPUT,
        "generation": {"resolution": 480, "numSteps": 3}, "guardrail": {"enabled": False}})
    mode, config = parse_run_args(lease_args("Video2WorldJob", spec))
    assert mode == "video2world"
    assert config.input.prompt == "a red bus" and config.generation.num_steps == 3
    assert config.output.uri == "s3://results/r/ns/job-a" and config.output.video_name == "job-a.mp4"
    assert (config.debug.num_frames, config.debug.height, config.debug.device) == (9, 64, "cpu")


def test_the_operators_best_of_n_args_parse_and_match_a_pool_with_a_critic():
    spec = BestOfNJobSpec.model_validate({
        "input": {"uri": "s3://inputs/a.jpg", "prompt": "a red bus"}, "output": OUTPUT,
        "generation": {"resolution": 480}, "guardrail": {"enabled": False},
        "bestOfN": {"numGenerations": 2, "critic": {"numTrials": 1}}})
    mode, config = parse_run_args(lease_args("BestOfNJob", spec))
    assert mode == "bestofn" and config.best_of_n.num_generations == 2
    pool = WorkerConfig.parse({"pool": "p", "model": {"checkpoint": "s3://models/video2world"},
                               "generation": {"resolution": 480}, "guardrail": {"enabled": False},
                               "promptRefiner": {"checkpoint": "s3://models/reason1"}, "critic": {},
                               "debug": {"device": "cpu"}}, "pool")
    assert mismatches(pool, config) == []
    assert mismatches(pool.model_copy(update={"critic": None}), config) == ["bestOfN.critic"]


@pytest.mark.parametrize("args, needle", [
    (["--module", "v2w_runtime.worker", "--config", "x"], "name no program"),
    (["v2w_runtime/video2world.py", "--prompt", "x"], "name no program"),
    (["--module", "v2w_runtime.video2world", "--no_such_flag"], "does not know"),
    ("--module v2w_runtime.video2world", "not a list"),
])
def test_run_args_that_are_not_a_jobs_are_refused(args, needle):
    with pytest.raises(UsageError) as info:
        parse_run_args(args)
    assert needle in str(info.value)


def test_worker_config_takes_the_platforms_runtime_flags():
    text = WorkerConfig(pool="p").to_yaml()
    config = worker_config(["--config", text, *EXTRA, "--disable_guardrail"])
    assert config.debug.device == "cpu" and config.debug.num_frames == 9 and not config.guardrail.enabled
    with pytest.raises(UsageError):
        worker_config(["--config", text, "--no_such_flag", "1"])


def test_the_loading_configuration_carries_the_pools_settings():
    pool = WorkerConfig.parse({"pool": "p", "model": {"checkpoint": "pvc://ckpt/x"}, "critic": {"numTrials": 2},
                               "generation": {"resolution": 480, "fps": 10}}, "pool")
    config = loading_config(pool)
    assert config.checkpoint == "pvc://ckpt/x" and config.generation.fps == 10
    assert config.best_of_n.critic.num_trials == 2 and config.critic_checkpoint == pool.critic_checkpoint
