"""The local stack runs a pool's worker Deployment as a cluster would: the Deployment and ReplicaSet controllers
make the pods, the executor (the kubelet's stand-in) runs each as processes with the downward-API env, the S3
Secret by reference and a TokenRequest token of the pool's ServiceAccount; a pod is Ready once its worker has
loaded the models (its exec readiness probe); deleting a pod stops its processes and its job goes on elsewhere;
the Deployment scales to zero. The Deployment here is written as the contract describes the operator's."""

from __future__ import annotations

import json
import time

import pytest
import yaml

import stack
from v2w_api.manifest import ResultManifest
from v2w_api.worker import WorkerConfig

from .jobs import EXTRA, run_args, s3_json, wait_lease

READY_FILE = "/tmp/v2w-worker-ready"


@pytest.fixture(scope="module")
def executor(kube, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("executor")
    server = stack.start_executor(kube, workdir, workdir / "pvcs")
    yield server
    server.stop()


def worker_deployment(pool_ns, models, replicas: int) -> dict:
    config = WorkerConfig.parse({"pool": pool_ns.pool, "model": {"checkpoint": models.checkpoint},
                                 "generation": {"resolution": 480}, "guardrail": {"enabled": False},
                                 "promptRefiner": {"enabled": False}, "renewSeconds": 1}, "test")
    secret = [{"name": var, "valueFrom": {"secretKeyRef": {"name": "v2w-s3", "key": var}}}
              for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    env = [*secret, {"name": "AWS_ENDPOINT_URL", "value": pool_ns.minio.endpoint},
           {"name": "AWS_REGION", "value": pool_ns.minio.region},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "V2W_CACHE_DIR", "value": "/cache"}, {"name": "HOME", "value": "/cache"},
           {"name": "TMPDIR", "value": "/tmp"}, {"name": "V2W_READY_FILE", "value": READY_FILE},
           {"name": "PET_STANDALONE", "value": "1"}, {"name": "PET_NPROC_PER_NODE", "value": "1"},
           {"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "PYTHONUNBUFFERED", "value": "1"}]
    labels = {"video2world.io/pool": pool_ns.pool}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"v2wpool-{pool_ns.pool}", "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"serviceAccountName": pool_ns.service_account, "automountServiceAccountToken": True,
                     "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}],
                     "containers": [{
                         "name": "worker", "image": "video2world/runtime:test", "command": ["v2w-launch"],
                         "args": ["--module", "v2w_runtime.worker", "--config", config.to_yaml(), *EXTRA],
                         "env": env, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                                      {"name": "cache", "mountPath": "/cache"}],
                         "readinessProbe": {"exec": {"command": ["test", "-e", READY_FILE]}, "periodSeconds": 1}}]}}}}


def pods(pool_ns) -> list[dict]:
    out = pool_ns.kube.kubectl("get", "pods", "-n", pool_ns.namespace, "-l", f"video2world.io/pool={pool_ns.pool}",
                               "-o", "json")
    return json.loads(out.stdout)["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def wait_ready_pods(pool_ns, count: int, executor, timeout: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in pods(pool_ns) if not p["metadata"].get("deletionTimestamp")]
        if len(found) == count and all(ready(p) for p in found):
            return found
        time.sleep(0.5)
    raise AssertionError(f"{count} ready worker pods not reached: {[(p['metadata']['name'], ready(p)) for p in pods(pool_ns)]}"
                         f"\n{executor.log_tail(20)}")


@pytest.fixture
def pool_ns_s3(pool_ns, minio):
    pool_ns.minio = minio
    pool_ns.kube.kubectl("create", "secret", "generic", "v2w-s3", "-n", pool_ns.namespace,
                         f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
                         f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}")
    return pool_ns


def test_a_worker_deployment_runs_ready_workers_that_serve_the_pools_jobs(pool_ns_s3, models, minio, executor):
    pool_ns = pool_ns_s3
    ns = pool_ns.namespace
    pool_ns.kube.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(worker_deployment(pool_ns, models, 2)))
    workers = wait_ready_pods(pool_ns, 2, executor)
    names = {p["metadata"]["name"] for p in workers}
    deployment = json.loads(pool_ns.kube.kubectl("get", "deployment", f"v2wpool-{pool_ns.pool}", "-n", ns,
                                                 "-o", "json").stdout)
    assert deployment["status"].get("readyReplicas") == 2

    for name in ("a", "b", "c"):
        pool_ns.create_lease(f"v2w-{name}", run_args(models, ns, name))
    pods_seen = set()
    for name in ("a", "b", "c"):
        state = wait_lease(pool_ns, f"v2w-{name}", lambda s: s.outcome is not None, "an outcome")
        assert state.outcome == "Succeeded", state
        result = ResultManifest.model_validate(s3_json(minio, models.bucket, f"results/{ns}/{name}/result.json"))
        assert result.worker.pod in names and result.worker.loads == 1
        pods_seen.add(result.worker.pod)

    # A pod deleted mid-job: its processes stop (its worker lets go of the job), the job finishes on a worker,
    # and the ReplicaSet brings the pool back to two ready workers.
    pool_ns.create_lease("v2w-moved", run_args(models, ns, "moved", batch=4, s3=minio.client(),
                                               generation={"numSteps": 60}))
    holder = wait_lease(pool_ns, "v2w-moved", lambda s: s.holder is not None, "held").holder
    pool_ns.kube.kubectl("delete", "pod", holder, "-n", ns, "--wait=false")
    state = wait_lease(pool_ns, "v2w-moved", lambda s: s.outcome is not None, "an outcome", timeout=240)
    assert state.outcome == "Succeeded" and state.transitions >= 2
    result = ResultManifest.model_validate(s3_json(minio, models.bucket, f"results/{ns}/moved/result.json"))
    assert result.worker.pod != holder and [v.status for v in result.videos] == ["succeeded"] * 4
    assert f"{ns}/{holder} deleted: processes stopped" in executor.log.read_text()
    wait_ready_pods(pool_ns, 2, executor)

    # Scaled to zero: no worker pod, no worker process.
    pool_ns.kube.kubectl("scale", "deployment", f"v2wpool-{pool_ns.pool}", "-n", ns, "--replicas=0")
    deadline = time.monotonic() + 60
    while pods(pool_ns):
        assert time.monotonic() < deadline, "worker pods left after scaling to zero"
        time.sleep(0.5)
