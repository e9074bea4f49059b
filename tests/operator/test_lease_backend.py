"""A pooled job's Lease: what the operator builds, and how the job's status reads it back (`ChildView`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from v2w_api import Video2WorldJobSpec
from v2w_api.lease import (ANNOTATION_EXIT_CODE, ANNOTATION_MESSAGE, ANNOTATION_OUTCOME, ANNOTATION_RUN_ARGS,
                           ANNOTATION_STARTED, ANNOTATION_SUSPEND, LABEL_POOL, LeaseState, micro_time)
from v2w_api.status import Phase, Reason, Video2WorldJobStatus
from v2w_operator.backends import child, lease
from v2w_operator.backends.pytorchjob import build as build_pytorchjob
from v2w_operator.config import OperatorConfig
from v2w_operator.observe import Observation, derive_status

CONFIG = OperatorConfig(checkpoint_2b="s3://models/2b", queue_name="platform-queue",
                        runtime_extra_args=["--num_frames", "9"])
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def spec(**extra) -> Video2WorldJobSpec:
    return Video2WorldJobSpec.model_validate({"input": {"uri": "s3://in-bucket/a.jpg", "prompt": "a bus"},
                                              "output": {"uri": "s3://out-bucket/r"}, "poolRef": "fast", **extra})


def test_the_lease_carries_the_pytorchjobs_exact_arguments_and_is_owned_by_the_job():
    built = lease.build("Video2WorldJob", "j", "team-a", "uid-9", spec(), CONFIG)
    meta = built["metadata"]
    assert built["apiVersion"] == "coordination.k8s.io/v1" and built["kind"] == "Lease"
    assert meta["name"] == "v2w-j" and meta["namespace"] == "team-a"
    assert meta["labels"][LABEL_POOL] == "fast" and meta["labels"][child.LABEL_JOB_NAME] == "j"
    assert "kueue.x-k8s.io/queue-name" not in meta["labels"]  # the platform's queue is not a pooled job's
    assert meta["ownerReferences"] == [child.owner_reference("Video2WorldJob", "j", "uid-9")]
    assert built["spec"] == {"leaseDurationSeconds": 20}  # free: no holder
    pj = build_pytorchjob("Video2WorldJob", "j", "team-a", "uid-9", spec(), CONFIG)
    args = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    assert json.loads(meta["annotations"][ANNOTATION_RUN_ARGS]) == args
    assert ANNOTATION_SUSPEND not in meta["annotations"]
    suspended = lease.build("Video2WorldJob", "j", "team-a", "u", spec(suspend=True), CONFIG)
    assert suspended["metadata"]["annotations"][ANNOTATION_SUSPEND] == "true"
    with pytest.raises(ValueError):
        lease.build("Video2WorldJob", "j", "ns", "u", spec(poolRef=None), CONFIG)


def test_suspend_patch_sets_and_removes_the_annotation():
    assert lease.BACKEND.suspend_patch(True) == {"metadata": {"annotations": {ANNOTATION_SUSPEND: "true"}}}
    assert lease.BACKEND.suspend_patch(False) == {"metadata": {"annotations": {ANNOTATION_SUSPEND: None}}}


def obj(holder=None, renewed=NOW, transitions=0, **notes):
    spec_ = {"leaseDurationSeconds": 20, "leaseTransitions": transitions}
    if holder:
        spec_.update(holderIdentity=holder, renewTime=micro_time(renewed))
    return {"metadata": {"name": "v2w-j", "uid": "l-1", "resourceVersion": "42", "labels": {LABEL_POOL: "fast"},
                         "annotations": {f"video2world.io/{k}": v for k, v in notes.items()}}, "spec": spec_}


@pytest.mark.parametrize("lease_obj, state, words", [
    (obj(), "Created", "waiting for a worker of pool fast"),
    (obj(transitions=1), "Created", "attempt 2"),
    (obj(holder="w-1", started=micro_time(NOW)), "Running", "running on worker w-1 of pool fast"),
    (obj(holder="w-1", renewed=NOW - timedelta(seconds=30), transitions=1), "Restarting", "w-1 of pool fast stopped"),
    (obj(suspend="true"), "Suspended", "suspended"),
    (obj(holder="w-1", suspend="true"), "Running", "running"),  # until the worker lets go
    (obj(outcome="Succeeded"), "Succeeded", ""),
    (obj(outcome="Failed", **{"exit-code": "2", "message": "input not found"}), "Failed", "exit code 2: input not found"),
])
def test_view_follows_the_contracts_states(lease_obj, state, words):
    seen = lease.view(lease_obj, NOW)
    assert seen.kind == "Lease" and seen.state == state and words in (seen.status_message or seen.message)


def test_the_job_status_reads_a_lease_like_a_pytorchjob():
    def derive(status, lease_obj, **obs):
        return derive_status(status, Observation(generation=1, child=lease.view(lease_obj, NOW),
                                                 child_was_created=True, child_kind="Lease", **obs))

    waiting = derive(Video2WorldJobStatus(pytorch_job_name="v2w-j"), obj())
    assert waiting.phase == Phase.PENDING and waiting.message == "waiting for a worker of pool fast"
    running = derive(waiting, obj(holder="w-1", started=micro_time(NOW)))
    assert running.phase == Phase.RUNNING and running.start_time == NOW and "w-1" in running.message
    expired = derive(running, obj(holder="w-1", renewed=NOW - timedelta(seconds=60), transitions=1))
    assert expired.phase == Phase.RUNNING and "stopped renewing" in expired.message
    failed = derive(running, obj(outcome="Failed", message=lease.BACKOFF_MESSAGE, transitions=4))
    failed_condition = next(c for c in failed.conditions if c.type.value == "Failed")
    assert failed.phase == Phase.FAILED and failed_condition.reason == Reason.BACKOFF_LIMIT_EXCEEDED.value
    gone = derive_status(running, Observation(generation=1, child=None, child_was_created=True, child_kind="Lease"))
    assert gone.phase == Phase.FAILED and gone.message.startswith("Lease v2w-j was deleted")


def test_the_operator_ends_a_lease_past_the_jobs_backoff_limit():
    free_after_four = obj(transitions=4)
    assert lease.backoff_exhausted(free_after_four, 3, NOW)
    assert not lease.backoff_exhausted(obj(transitions=3), 3, NOW)  # a fourth attempt is still allowed
    assert not lease.backoff_exhausted(obj(holder="w-1", transitions=4), 3, NOW)  # running its last attempt
    expired = obj(holder="w-1", renewed=NOW - timedelta(seconds=60), transitions=4)
    assert lease.backoff_exhausted(expired, 3, NOW)
    patch = lease.backoff_patch(expired)
    assert patch["metadata"]["resourceVersion"] == "42"  # a claim in between makes it a conflict
    assert patch["metadata"]["annotations"] == {ANNOTATION_OUTCOME: "Failed", ANNOTATION_MESSAGE: lease.BACKOFF_MESSAGE}
    ended = {**expired, "metadata": {**expired["metadata"], "annotations": patch["metadata"]["annotations"]},
             "spec": {**expired["spec"], "holderIdentity": None}}
    state = LeaseState.of(ended)
    assert state.outcome == "Failed" and not state.claimable(NOW)
    assert ANNOTATION_EXIT_CODE not in ended["metadata"]["annotations"] and ANNOTATION_STARTED not in patch["metadata"]["annotations"]
