"""Warm worker pools end to end on the local stack: a Video2WorldPool's workers (a Deployment's pods run by the
executor, the tiny models on CPU) load once and run the jobs that name the pool through their Leases; the jobs
read as PyTorchJob-run jobs do. One pool for the module (its model loads are the costly part), used in order:
jobs of both kinds and a refused one, a worker killed mid-job, a job deleted mid-run, scale to zero and back."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import DISABLED, condition, phase_is, read_result, s3_key

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

POOL = "warm"


def pool_ready(replicas: int):
    def check(obj):
        status = obj.get("status") or {}
        return (obj["spec"]["replicas"] == replicas and status.get("readyReplicas", 0) == replicas
                and status.get("replicas", 0) == replicas)
    return check


@pytest.fixture(scope="module")
def pool(e2e):
    """A namespace with a pool of 2 warm workers (critic loaded too), ready: their models are loaded."""
    ns = e2e.namespace()
    e2e.apply(ns, {"apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldPool", "metadata": {"name": POOL},
                   "spec": {"replicas": 2, "critic": {}, **DISABLED,
                            "output": {"credentialsSecret": {"name": "v2w-s3"}}}})
    e2e.wait_for(ns, "v2wpool", POOL, pool_ready(2), timeout=300, what="2 ready workers")
    return ns


def pooled(e2e, kind: str, name: str, spec: dict) -> dict:
    return e2e.job(kind, name, {"poolRef": POOL, **DISABLED, **spec})


def single(e2e, name: str, **extra) -> dict:
    return pooled(e2e, "Video2WorldJob", name, {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A bus pulls out of a night terminal."},
        **extra})


def batch(e2e, name: str, entries: int, steps: int = 2) -> dict:
    return pooled(e2e, "Video2WorldJob", name, {
        "batch": [{"input": f"s3://{e2e.bucket}/inputs/input{i % 3}.jpg", "prompt": f"Scene {i} comes to life.",
                   "output": f"scene-{i}"} for i in range(entries)],
        "generation": {"numSteps": steps, "guidance": 3.0}})


def final(e2e, ns: str, kind: str, name: str, timeout: float = 300) -> dict:
    obj, phases = e2e.wait_for(ns, kind, name, phase_is("Succeeded", "Failed"), timeout=timeout, what="a final phase")
    return obj


def worker_pods(e2e, ns: str) -> list[str]:
    pods = json.loads(e2e.kubectl("get", "pods", "-n", ns, "-l", f"video2world.io/pool={POOL}", "-o", "json").stdout)
    return sorted(p["metadata"]["name"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp"))


def lease(e2e, ns: str, name: str) -> dict | None:
    return e2e.get(ns, "lease", name)


def test_pooled_jobs_of_both_kinds_succeed_as_pytorchjob_jobs_do_on_two_model_loads(e2e, pool):
    ns = pool
    e2e.apply(ns, single(e2e, "one"))
    e2e.apply(ns, batch(e2e, "two", 2))
    e2e.apply(ns, pooled(e2e, "BestOfNJob", "pick", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input2.jpg", "prompt": "A worker fills bottles."},
        "bestOfN": {"numGenerations": 2, "critic": {"numTrials": 1}}}))
    # A job the pool cannot run: another resolution.
    e2e.apply(ns, single(e2e, "other", generation={"resolution": 480, "numSteps": 2, "guidance": 3.0}))

    refused = final(e2e, ns, "v2wjob", "other", timeout=60)
    assert refused["status"]["phase"] == "Failed" and condition(refused, "Failed")["reason"] == "PoolMismatch"
    assert "generation.resolution" in refused["status"]["message"]
    assert lease(e2e, ns, "v2w-other") is None

    workers = set(worker_pods(e2e, ns))
    served = []
    for kind, name in (("v2wjob", "one"), ("v2wjob", "two"), ("bonjob", "pick")):
        obj = final(e2e, ns, kind, name)
        status = obj["status"]
        assert status["phase"] == "Succeeded", status
        assert condition(obj, "Accepted")["reason"] == "ChildCreated" and status["startTime"] and status["completionTime"]
        e2e.kubectl("wait", "-n", ns, "--for=condition=Succeeded", f"{kind}/{name}", "--timeout=10s")
        result = read_result(e2e, obj)
        assert result.worker is not None and result.worker.pod in workers, result.worker
        assert result.worker.loads == 1  # no worker loaded its models more than once
        served.append(result.worker.pod)
        # The same files where a PyTorchJob's pods would have put them.
        assert status["resultUri"] == f"s3://{e2e.bucket}/results/{ns}/{name}/result.json"
        for output in status["outputs"]:
            bucket, key = s3_key(output["uri"])
            assert key.startswith(f"results/{ns}/{name}/")
            assert e2e.minio.client().head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000
        events = json.loads(e2e.kubectl("get", "events", "-n", ns, "--field-selector",
                                        f"involvedObject.name={name}", "-o", "json").stdout)["items"]
        reasons = [e["reason"] for e in events]
        assert {"ChildCreated", "Succeeded"} <= set(reasons) and reasons.count("Succeeded") == 1, reasons
        assert e2e.get(ns, "pytorchjob", f"{'bon' if kind == 'bonjob' else 'v2w'}-{name}") is None
    one = e2e.get(ns, "v2wjob", "one")
    assert one["status"]["outputs"][0]["uri"].endswith(f"results/{ns}/one/one.mp4")
    assert sorted(o["name"] for o in e2e.get(ns, "v2wjob", "two")["status"]["outputs"]) == ["scene-0.mp4", "scene-1.mp4"]
    best = e2e.get(ns, "bonjob", "pick")["status"]
    assert best["best"]["score"] is not None and len(best["outputs"]) == 2
    # Two workers, two model loads in all, and both idle again with nothing queued.
    assert set(worker_pods(e2e, ns)) == workers and len(workers) == 2
    status, _ = e2e.wait_for(ns, "v2wpool", POOL, lambda o: (o.get("status") or {}).get("busyWorkers") == 0,
                             timeout=30, what="idle workers")
    assert status["status"]["queueLength"] == 0
    table = e2e.kubectl("get", "v2wpools", "-n", ns).stdout
    assert table.splitlines()[0].split() == ["NAME", "REPLICAS", "READY", "BUSY", "QUEUE", "MODEL", "AGE"]


def kill_worker(e2e, ns: str, pod: str) -> None:
    """SIGKILL the pod's container and every process below it (torchrun runs its workers in sessions of their
    own), as a node's OOM killer or a crash would: no goodbye, the claim must expire."""
    found = re.findall(rf"pod {re.escape(ns)}/{re.escape(pod)} .*?started: pid (\d+)", e2e.executor.log.read_text(
        errors="replace"))
    assert found, f"no pid for {ns}/{pod} in the executor's log"
    pids, todo = [], [int(found[-1])]
    while todo:
        parent = todo.pop()
        pids.append(parent)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_worker_killed_mid_job_loses_its_claim_and_the_job_finishes_with_every_output(e2e, pool):
    ns = pool
    # Long enough (about 20 s of sampling on a warm worker) to be killed in the middle.
    e2e.apply(ns, batch(e2e, "crash", 8, steps=40))
    held, _ = e2e.wait_for(ns, "lease", "v2w-crash",
                           lambda o: bool((o.get("spec") or {}).get("holderIdentity")), timeout=60, what="a claim")
    holder = held["spec"]["holderIdentity"]
    e2e.wait_for(ns, "v2wjob", "crash", lambda o: ((o.get("status") or {}).get("progress") or {}).get("step"),
                 timeout=60, what="sampling under way")
    kill_worker(e2e, ns, holder)

    obj = final(e2e, ns, "v2wjob", "crash", timeout=400)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert sorted(o["name"] for o in obj["status"]["outputs"]) == sorted(f"scene-{i}.mp4" for i in range(8))
    assert all(o["verdict"] == "NotChecked" for o in obj["status"]["outputs"])
    after = lease(e2e, ns, "v2w-crash")
    assert after["spec"]["leaseTransitions"] >= 2  # claimed again after the expiry
    result = read_result(e2e, obj)
    assert [v.status for v in result.videos] == ["succeeded"] * 8
    events = json.loads(e2e.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=crash",
                                    "-o", "json").stdout)["items"]
    assert [e["reason"] for e in events].count("Succeeded") == 1


def test_a_job_deleted_mid_run_frees_its_worker_for_the_next(e2e, pool):
    ns = pool
    e2e.kubectl("scale", "-n", ns, f"v2wpool/{POOL}", "--replicas=1")
    e2e.wait_for(ns, "v2wpool", POOL, pool_ready(1), timeout=120, what="1 ready worker")
    [worker] = worker_pods(e2e, ns)
    e2e.apply(ns, batch(e2e, "long", 64, steps=50))  # minutes of sampling
    e2e.wait_for(ns, "v2wjob", "long", lambda o: ((o.get("status") or {}).get("progress") or {}).get("step"),
                 timeout=120, what="sampling under way")
    e2e.kubectl("delete", "-n", ns, "v2wjob/long", "--wait=true", "--timeout=60s")
    started = time.monotonic()
    e2e.apply(ns, single(e2e, "next"))
    obj = final(e2e, ns, "v2wjob", "next", timeout=90)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    result = read_result(e2e, obj)
    # The same worker, its models still loaded, stopped the deleted job (its 64 videos would take minutes) and
    # took the next one.
    assert result.worker.pod == worker and result.worker.loads == 1
    assert time.monotonic() - started < 90


def test_scale_to_zero_keeps_jobs_queued_and_scaling_back_runs_them(e2e, pool):
    ns = pool
    e2e.kubectl("scale", "-n", ns, f"v2wpool/{POOL}", "--replicas=0")
    e2e.wait_for(ns, "v2wpool", POOL, lambda o: (o.get("status") or {}).get("replicas", 1) == 0 and
                 not worker_pods(e2e, ns), timeout=120, what="no workers")
    deployment = e2e.get(ns, "deployment", f"v2wpool-{POOL}")
    assert deployment["spec"]["replicas"] == 0
    e2e.apply(ns, single(e2e, "queued"))
    waiting, _ = e2e.wait_for(ns, "v2wpool", POOL, lambda o: (o.get("status") or {}).get("queueLength") == 1,
                              timeout=30, what="one job queued")
    job = e2e.get(ns, "v2wjob", "queued")
    assert job["status"]["phase"] == "Pending" and "waiting for a worker of pool warm" in job["status"]["message"]
    ready = next(c for c in waiting["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ScaledToZero"
    e2e.kubectl("scale", "-n", ns, f"v2wpool/{POOL}", "--replicas=1")
    obj = final(e2e, ns, "v2wjob", "queued", timeout=300)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
