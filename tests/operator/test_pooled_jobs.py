"""The handlers for a job that names a pool, without a cluster: PoolNotFound (tried again), PoolMismatch (for
good, naming each field), the Lease instead of a PyTorchJob, suspend onto the Lease, and the backoff limit the
operator enforces on it."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from tests.api.cases import BATCH
from tests.operator.test_handlers import NAMESPACE, applied, cluster, conditions, ensure, job  # noqa: F401
from v2w_api.lease import ANNOTATION_OUTCOME, ANNOTATION_RUN_ARGS, ANNOTATION_SUSPEND, micro_time
from v2w_operator import handlers

POOL = {"apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldPool",
        "metadata": {"name": "fast", "namespace": NAMESPACE},
        "spec": {"replicas": 2, "output": {"credentialsSecret": {"name": "v2w-s3"}}}}


def pooled(**generation):
    return job(mutate=lambda spec: (spec.update(poolRef="fast"), spec["generation"].update(generation)))


def test_a_job_waits_for_its_pool_then_gets_a_lease_not_a_pytorchjob(cluster):  # noqa: F811
    api, events, _ = cluster
    doc = pooled()
    with pytest.raises(kopf.TemporaryError):
        ensure(doc)
    assert doc["_patch"]["phase"] == "Pending" and conditions(doc["_patch"])["Accepted"] == ("False", "PoolNotFound")
    assert "Video2WorldPool fast not found" in doc["_patch"]["message"] and api.creates == 0

    api.objects[(NAMESPACE, "fast")] = copy.deepcopy(POOL)
    again = applied(doc, doc["_patch"])
    status = applied(again, ensure(again))["status"]
    made = api.objects[(NAMESPACE, "v2w-job-a")]
    assert made["kind"] == "Lease" and ANNOTATION_RUN_ARGS in made["metadata"]["annotations"]
    assert status["phase"] == "Pending" and conditions(status)["Accepted"] == ("True", "ChildCreated")
    assert status["message"] == "Lease v2w-job-a created; waiting for a worker of pool fast"
    assert ("Normal", "ChildCreated", "created Lease v2w-job-a for a worker of pool fast") in events


def test_a_job_the_pool_cannot_run_fails_naming_each_field(cluster):  # noqa: F811
    api, events, _ = cluster
    api.objects[(NAMESPACE, "fast")] = copy.deepcopy(POOL)
    doc = pooled(resolution=480, fps=24)
    with pytest.raises(kopf.PermanentError):
        ensure(doc)
    written = doc["_patch"]
    assert written["phase"] == "Failed" and conditions(written)["Failed"] == ("True", "PoolMismatch")
    assert "pool fast cannot run this job: it differs in generation.resolution, generation.fps" in written["message"]
    assert events[-1][:2] == ("Warning", "PoolMismatch") and api.creates == 0


def lease_patches(api):
    patches = []

    def patch(group, version, namespace, plural, name, body):
        patches.append((plural, name, body))
        if body.get("metadata", {}).get("resourceVersion") not in (None, "7"):
            raise ApiException(status=409)
        obj = api.objects[(namespace, name)]
        notes = obj["metadata"].setdefault("annotations", {})
        for key, value in (body.get("metadata") or {}).get("annotations", {}).items():
            notes.pop(key, None) if value is None else notes.__setitem__(key, value)
        obj["spec"].update({k: v for k, v in (body.get("spec") or {}).items() if v is not None})
        for key in [k for k, v in (body.get("spec") or {}).items() if v is None]:
            obj["spec"].pop(key, None)
        return copy.deepcopy(obj)

    api.patch_namespaced_custom_object = patch
    return patches


def accepted(api):
    api.objects[(NAMESPACE, "fast")] = copy.deepcopy(POOL)
    doc = pooled()
    doc = applied(doc, ensure(doc))
    api.objects[(NAMESPACE, "v2w-job-a")]["metadata"]["resourceVersion"] = "7"
    return doc


def test_suspend_and_resume_mark_the_lease(cluster):  # noqa: F811
    api, events, _ = cluster
    doc = accepted(api)
    patches = lease_patches(api)
    body = kopf.Body(doc)
    handlers.set_suspend(body=body, name="job-a", namespace=NAMESPACE, old=False, new=True, retry=0)
    assert patches[-1] == ("leases", "v2w-job-a", {"metadata": {"annotations": {ANNOTATION_SUSPEND: "true"}}})
    handlers.set_suspend(body=body, name="job-a", namespace=NAMESPACE, old=True, new=False, retry=0)
    assert ANNOTATION_SUSPEND not in api.objects[(NAMESPACE, "v2w-job-a")]["metadata"]["annotations"]
    assert [e[1] for e in events[-2:]] == ["Suspended", "Resumed"]


def test_past_its_backoff_limit_the_operator_ends_the_lease_and_fails_the_job(cluster):  # noqa: F811
    api, _, _ = cluster
    doc = accepted(api)
    patches = lease_patches(api)
    lease = api.objects[(NAMESPACE, "v2w-job-a")]
    # The default backoffLimit (3) allows 4 claims; the 4th holder stopped renewing a minute ago.
    lease["spec"].update(holderIdentity="w-1", leaseTransitions=4,
                         renewTime=micro_time(datetime.now(timezone.utc) - timedelta(seconds=60)))
    done = handlers.sync(kopf.Body(doc), dict(doc["status"]), "job-a", NAMESPACE, handlers.logging.getLogger("t"))
    assert patches and patches[0][2]["metadata"]["resourceVersion"] == "7"
    assert lease["metadata"]["annotations"][ANNOTATION_OUTCOME] == "Failed" and "holderIdentity" not in lease["spec"]
    assert done.new.phase.value == "Failed"
    assert conditions(done.new.to_wire())["Failed"] == ("True", "BackoffLimitExceeded")


def test_an_inline_batch_is_compared_as_it_will_run_and_gets_its_lease(cluster):  # noqa: F811
    api, _, _ = cluster
    api.objects[(NAMESPACE, "fast")] = copy.deepcopy(POOL)
    doc = job(BATCH, mutate=lambda spec: spec.update(poolRef="fast", parallelism={"gpus": 1}))
    status = applied(doc, ensure(doc))["status"]
    assert conditions(status)["Accepted"] == ("True", "ChildCreated")
    args = api.objects[(NAMESPACE, "v2w-job-a")]["metadata"]["annotations"][ANNOTATION_RUN_ARGS]
    assert f"{NAMESPACE}/job-a/batch.json" in args
