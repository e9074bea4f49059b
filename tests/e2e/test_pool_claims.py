"""A pooled job's Lease between the real operator and a worker's real Lease client, on the local stack: the worker
is played by `v2w_runtime.leases.LeaseClient` with the token of the pool's own ServiceAccount (the pool has no
worker pods: replicas 0), so each step of the contract is driven by hand and its effect on the job checked.

What a worker may do is exactly its role: Leases of its own namespace, nothing of Secrets, jobs or other
namespaces. The job follows its Lease: waiting (queue length 1), claimed (Running), a worker that stops
renewing (Running: "stopped renewing"), the operator's backoff limit (Failed, BackoffLimitExceeded), a worker's
failure (Failed with its exit code and message), and suspend / resume."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.helpers import DISABLED, condition, phase_is
from v2w_api.lease import LeaseState
from v2w_runtime.leases import LeaseClient

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

POOL = "handmade"


def worker_api(e2e, ns: str) -> client.ApiClient:
    """An API client with the token of the pool's ServiceAccount, as a worker pod has it."""
    from kubernetes import config as kube_config

    token = e2e.kubectl("create", "token", f"v2wpool-{POOL}", "-n", ns, "--duration=1h").stdout.strip()
    path = e2e.kube.write_kubeconfig(e2e.workdir / f"worker-{ns}.kubeconfig", {"token": token}, name=f"worker-{ns}")
    return kube_config.new_client_from_config(str(path))


def job(e2e, name: str, **spec) -> dict:
    return e2e.job("Video2WorldJob", name, {
        "poolRef": POOL, **DISABLED,
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A bus pulls out of a night terminal."},
        **spec})


def status_of(e2e, ns: str, name: str) -> dict:
    return (e2e.get(ns, "v2wjob", name) or {}).get("status") or {}


def test_a_workers_token_reaches_only_its_pools_leases_and_the_job_follows_the_lease(e2e):
    ns, elsewhere = e2e.namespace(), e2e.namespace()
    e2e.apply(ns, {"apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldPool", "metadata": {"name": POOL},
                   "spec": {"replicas": 0, **DISABLED, "output": {"credentialsSecret": {"name": "v2w-s3"}}}})
    e2e.wait_for(ns, "v2wpool", POOL, lambda o: (o.get("status") or {}).get("selector"), timeout=60,
                 what="the pool's status")
    api = worker_api(e2e, ns)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    leases = client.CoordinationV1Api(api)
    leases.list_namespaced_lease(ns)  # its own namespace: allowed
    for refused in (lambda: core.read_namespaced_secret("v2w-s3", ns),
                    lambda: leases.list_namespaced_lease(elsewhere),
                    lambda: custom.list_namespaced_custom_object("video2world.io", "v1alpha1", ns, "video2worldjobs"),
                    lambda: core.list_namespaced_pod(ns)):
        with pytest.raises(ApiException) as info:
            refused()
        assert info.value.status == 403

    worker = LeaseClient(api, ns, POOL, "hand-worker-1", 20)
    # Waiting: the pool's queue holds it.
    e2e.apply(ns, job(e2e, "waits", runPolicy={"backoffLimit": 0}))
    e2e.wait_for(ns, "v2wpool", POOL, lambda o: (o.get("status") or {}).get("queueLength") == 1, timeout=30,
                 what="one job queued")
    assert status_of(e2e, ns, "waits")["message"] == "waiting for a worker of pool handmade"

    # Claimed: Running, from the claim's start; the pool counts a busy worker.
    claim = worker.claim()
    assert claim is not None and claim.name == "v2w-waits"
    obj, _ = e2e.wait_for(ns, "v2wjob", "waits", phase_is("Running"), timeout=30, what="Running")
    assert "running on worker hand-worker-1" in obj["status"]["message"] and obj["status"]["startTime"]
    e2e.wait_for(ns, "v2wpool", POOL, lambda o: (o.get("status") or {}).get("busyWorkers") == 1, timeout=30,
                 what="one busy worker")

    # The worker stops renewing: after the Lease's 20 s it has lost the claim; with backoffLimit 0 that was the
    # job's one attempt, so the operator ends the Lease and fails the job.
    obj, _ = e2e.wait_for(ns, "v2wjob", "waits", phase_is("Failed"), timeout=60, what="Failed")
    assert condition(obj, "Failed")["reason"] == "BackoffLimitExceeded"
    ended = LeaseState.of(e2e.get(ns, "lease", "v2w-waits"))
    assert ended.outcome == "Failed" and ended.holder is None and ended.message == "backoff limit reached"
    assert worker.claim() is None  # nothing left to claim

    # A worker's failure: its exit code and message become the job's.
    e2e.apply(ns, job(e2e, "fails"))
    e2e.wait_for(ns, "v2wjob", "fails", phase_is("Pending"), timeout=30, what="Pending")
    claim = worker.claim()
    assert claim is not None and claim.name == "v2w-fails"
    assert worker.release(claim, outcome="Failed", exit_code=2, message="input not found: s3://x/y.jpg")
    obj, _ = e2e.wait_for(ns, "v2wjob", "fails", phase_is("Failed"), timeout=30, what="Failed")
    assert "exit code 2: input not found" in obj["status"]["message"]
    assert condition(obj, "Failed")["reason"] == "RuntimeFailed"

    # Suspended while it waits: nobody may claim it; resumed: claimable again.
    e2e.apply(ns, job(e2e, "paused"))
    e2e.wait_for(ns, "v2wjob", "paused", phase_is("Pending"), timeout=30, what="Pending")
    e2e.kubectl("patch", "-n", ns, "v2wjob/paused", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    e2e.wait_for(ns, "v2wjob", "paused", phase_is("Suspended"), timeout=30, what="Suspended")
    assert worker.claim() is None
    e2e.kubectl("patch", "-n", ns, "v2wjob/paused", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    e2e.wait_for(ns, "v2wjob", "paused", phase_is("Pending"), timeout=30, what="Pending again")
    deadline = time.monotonic() + 10
    claim = None
    while claim is None and time.monotonic() < deadline:
        claim = worker.claim()
    assert claim is not None and claim.name == "v2w-paused"
    e2e.kubectl("delete", "-n", ns, "v2wjob/paused", "--wait=true", "--timeout=60s")
    assert worker.renew(claim).value == "deleted"  # the job's deletion took its Lease: the worker stops
