"""The operator → pool worker contract: what the operator writes (the workers' Deployment arguments, each pooled
job's Lease) is read by the worker's own parsers into what the operator meant.

The pool's `--config` goes through torchrun's parser (as `v2w-launch` reads a container's arguments) and the
worker's (`v2w_runtime.worker.worker_config`); a job's Lease annotation through `LeaseState` and the worker's
`parse_run_args`, which must give the run the PyTorchJob of the same job would have run, and one the pool's
workers accept (`mismatches` empty on both sides' parsed forms).
"""

from __future__ import annotations

import pytest
from torch.distributed.run import parse_args


from v2w_api import BestOfNJobSpec, Video2WorldJobSpec
from v2w_api.pool import Video2WorldPoolSpec
from v2w_api.worker import mismatches
from v2w_operator import workers
from v2w_operator.config import OperatorConfig
from v2w_runtime.worker import worker_config

CONFIG = OperatorConfig(checkpoint_2b="s3://models/2b", refiner_checkpoint="s3://models/reason1",
                        guardrail_checkpoint="s3://models/guard", s3_endpoint="http://minio:9000",
                        runtime_extra_args=["--num_frames", "9", "--height", "64", "--width", "64", "--device", "cpu"])
POOL = Video2WorldPoolSpec.model_validate({
    "replicas": 2, "generation": {"resolution": 480, "fps": 24}, "guardrail": {"blocklist": ["forbidden"]},
    "performance": {"compile": False}, "critic": {"numTrials": 2},
    "output": {"credentialsSecret": {"name": "team-s3"}}})


def worker_side() -> tuple[str, list[str]]:
    """The module and the worker's own arguments, as `v2w-launch` hands them over."""
    container = workers.deployment("fast", "team-a", "uid", POOL, CONFIG)["spec"]["template"]["spec"]["containers"][0]
    args = parse_args(container["args"])
    return args.training_script, list(args.training_script_args)


def test_the_worker_reads_the_pools_configuration_with_the_platforms_flags():
    module, argv = worker_side()
    assert module == "v2w_runtime.worker"
    parsed = worker_config(argv)
    meant = workers.worker_config("fast", POOL, CONFIG)
    assert parsed.pool == "fast"
    assert parsed.debug.num_frames == 9 and parsed.debug.device == "cpu"  # the platform's extra flags
    assert parsed.model_dump(exclude={"debug"}) == meant.model_dump(exclude={"debug"})


@pytest.mark.parametrize("kind", ["Video2WorldJob", "BestOfNJob"])
def test_the_worker_reads_a_jobs_lease_as_its_pytorchjob_would_have_run(kind):
    from v2w_api.lease import LeaseState
    from v2w_operator.backends import child, lease
    from v2w_operator.backends.pytorchjob import build as build_pytorchjob
    from v2w_runtime.cli import parse
    from v2w_runtime.worker import parse_run_args

    model = Video2WorldJobSpec if kind == "Video2WorldJob" else BestOfNJobSpec
    extra = {"bestOfN": {"numGenerations": 3, "critic": {"numTrials": 1}}} if kind == "BestOfNJob" else {}
    spec = model.model_validate({
        "input": {"uri": "s3://inputs/a.jpg", "prompt": "a bus"}, "poolRef": "fast",
        "generation": {"resolution": 480, "fps": 24, "numSteps": 3, "seed": 7},
        "guardrail": {"blocklist": ["forbidden"]}, "performance": {"compile": False},
        "output": {"uri": "s3://results/jobs", "credentialsSecret": {"name": "team-s3"}}, **extra})
    built = lease.build(kind, "job-a", "team-a", "uid", spec, CONFIG)

    mode, run = parse_run_args(LeaseState.of(built).run_args)
    # What the PyTorchJob of the same job would have run, read by the same parser as its pod reads it.
    pj = build_pytorchjob(kind, "job-a", "team-a", "uid", spec, CONFIG)
    args = parse_args(pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"])
    assert mode == {"Video2WorldJob": "video2world", "BestOfNJob": "bestofn"}[kind]
    assert run == parse(mode, list(args.training_script_args))
    assert run.output.uri == child.output_prefix(spec, "team-a", "job-a")
    # And the pool's workers, as they parsed their own configuration, accept it.
    assert mismatches(worker_config(worker_side()[1]), run) == []
