"""The pool worker's configuration: it round-trips through YAML, and `mismatches` names exactly the settings a
job's run differs in from what a worker loaded (and nothing a run may choose for itself)."""

from __future__ import annotations

import pytest

from v2w_api.run import RunConfig, RunConfigError
from v2w_api.worker import WorkerConfig, describe_mismatches, mismatches


def worker(**groups) -> WorkerConfig:
    return WorkerConfig.parse({"pool": "small", "generation": {"resolution": 480}, "debug": {"device": "cpu"},
                               **groups}, "worker")


def run(**groups) -> RunConfig:
    doc = {"input": {"uri": "s3://inputs/a.jpg", "prompt": "a cat"}, "output": {"uri": "s3://out/ns/job"},
           "generation": {"resolution": 480}, "debug": {"device": "cpu"}}
    for key, value in groups.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.parse(doc, "run")


def test_yaml_round_trip_and_defaults():
    config = worker(model={"size": "2B", "checkpoint": "pvc://ckpt/2b"}, critic={"numTrials": 2},
                    leaseDurationSeconds=30, renewSeconds=2.5)
    text = config.to_yaml()
    assert text.startswith("apiVersion: video2world.io/v1alpha1\nkind: WorkerConfig\npool: small\n")
    assert WorkerConfig.from_yaml(text, "--config") == config
    plain = WorkerConfig(pool="p")
    assert (plain.lease_duration_seconds, plain.renew_seconds, plain.critic) == (20, 5.0, None)
    assert plain.checkpoint == "checkpoints/nvidia/Cosmos-Predict2-2B-Video2World"
    assert worker(critic={}).critic_checkpoint == "checkpoints/nvidia/Cosmos-Reason1-7B"


@pytest.mark.parametrize("text, needle", [
    ("pool: p\nmodel: {size: 7B}\n", "model.size"),
    ("pool: p\nreplicas: 2\n", "unknown key replicas"),
    ("model: {size: 2B}\n", "pool"),
    ("- a\n", "expected a mapping"),
    ("pool: [", "not valid YAML"),
    ("pool: p\nrenewSeconds: 0\n", "renewSeconds"),
])
def test_bad_configuration_is_refused_naming_the_key(text, needle):
    with pytest.raises(RunConfigError) as info:
        WorkerConfig.from_yaml(text, "--config")
    assert needle in str(info.value) and str(info.value).startswith("--config: ")


def test_a_run_with_the_pools_settings_matches():
    assert mismatches(worker(), run()) == []
    # what a run chooses for itself is not compared
    assert mismatches(worker(), run(generation={"numSteps": 3, "seed": 9, "guidance": 1.0, "aspectRatio": "1:1"},
                                    promptRefiner={"maxNewTokens": 7, "offloadToCpu": False},
                                    debug={"numFrames": 9, "height": 32, "width": 48})) == []
    # an unset checkpoint and the default it stands for are the same
    explicit = worker(model={"checkpoint": "checkpoints/nvidia/Cosmos-Predict2-2B-Video2World"})
    assert mismatches(explicit, run()) == []


@pytest.mark.parametrize("groups, field", [
    ({"model": {"size": "14B", "checkpoint": "pvc://ckpt/cosmos"}}, "model.size"),
    ({"model": {"checkpoint": "pvc://other/2b"}}, "model.checkpoint"),
    ({"model": {"ditPath": "s3://weights/dit.safetensors"}}, "model.ditPath"),
    ({"model": {"dtype": "float16"}}, "model.dtype"),
    ({"generation": {"resolution": 720}}, "generation.resolution"),
    ({"generation": {"fps": 10}}, "generation.fps"),
    ({"promptRefiner": {"enabled": False}}, "promptRefiner.enabled"),
    ({"promptRefiner": {"checkpoint": "pvc://c/reason"}}, "promptRefiner.checkpoint"),
    ({"guardrail": {"enabled": False}}, "guardrail.enabled"),
    ({"guardrail": {"checkpoint": "pvc://c/guard"}}, "guardrail.checkpoint"),
    ({"guardrail": {"blocklist": ["x"]}}, "guardrail.blocklist"),
    ({"guardrail": {"pixelateFaces": False}}, "guardrail.pixelateFaces"),
    ({"parallelism": {"gpus": 2}}, "parallelism.gpus"),
    ({"performance": {"compile": False}}, "performance.compile"),
    ({"performance": {"fastMode": "step_cache"}}, "performance.fastMode"),
    ({"debug": {"device": "cuda"}}, "debug.device"),
])
def test_each_loaded_setting_that_differs_is_named(groups, field):
    pool = worker(model={"checkpoint": "pvc://ckpt/cosmos"})
    mine = {**groups, "model": {"checkpoint": "pvc://ckpt/cosmos", **groups.get("model", {})}}
    assert mismatches(pool, run(**mine)) == [field]


def test_several_differences_are_all_named_and_described():
    found = mismatches(worker(), run(model={"size": "14B"}, parallelism={"gpus": 4}))
    # the 14B's default checkpoint is another folder than the 2B's
    assert found == ["model.size", "model.checkpoint", "parallelism.gpus"]
    assert describe_mismatches("small", found[:2]) == (
        "pool small cannot run this job: it differs in model.size, model.checkpoint")


def test_checkpoints_of_parts_that_are_off_are_not_compared():
    off = worker(guardrail={"enabled": False, "checkpoint": "pvc://c/g1"})
    assert mismatches(off, run(guardrail={"enabled": False, "checkpoint": "pvc://c/g2"})) == []


def test_a_worker_is_one_pod():
    assert mismatches(worker(parallelism={"gpus": 2}), run(parallelism={"gpus": 2, "gpusPerNode": 1})) == [
        "parallelism.gpusPerNode"]


def test_guidance_fixes_the_layout_of_a_multi_gpu_worker_only():
    assert mismatches(worker(), run(generation={"guidance": 1.0})) == []
    two = worker(parallelism={"gpus": 2})
    assert mismatches(two, run(parallelism={"gpus": 2}, generation={"guidance": 1.0})) == ["generation.guidance"]


def test_best_of_n_needs_the_pools_critic():
    bon = {"bestOfN": {"numGenerations": 3, "critic": {"numTrials": 5}}}
    assert mismatches(worker(), run(**bon)) == ["bestOfN.critic"]
    assert mismatches(worker(critic={}), run(**bon)) == []  # trials, fps, seed: the run's own
    other = {"bestOfN": {"critic": {"checkpoint": "pvc://c/critic"}}}
    assert mismatches(worker(critic={}), run(**other)) == ["bestOfN.critic.checkpoint"]
    assert mismatches(worker(critic={"checkpoint": "pvc://c/critic"}), run(**other)) == []
