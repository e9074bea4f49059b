"""Warm pools (issue 22): what a job costs beyond its generation on a pool's warm workers, against a job that
starts its own pod and loads its own models. On the local stack (real kube-apiserver, etcd, controller manager,
MinIO; the executor runs pods as processes), tiny models on the CPU.

A client keeps as many jobs in flight as there are workers (a new job when one ends), so that no job waits in a
queue: a job's time from its creation to its end, minus the generation seconds its result.json records (the
videos' timings: input, sampling, decoding, writing), is the overhead of running it that way.

    --level operator   the whole system: the operator, the training-operator, the executor with as many pod slots
                       as workers. PyTorchJob: Video2WorldJobs without poolRef; pool: a Video2WorldPool of
                       --workers replicas, loaded before the first job, and jobs with `spec.poolRef`.
    --level worker     the runtime alone, without the operator: PyTorchJob-like, a fresh
                       `v2w-launch --module v2w_runtime.video2world` process per job (what a PyTorchJob's pod
                       runs); pool: --workers `v2w_runtime.worker` processes claiming Leases the client creates
                       with the operator's own rendering of the job.

Model loads are counted from the runs themselves: each result.json's `worker` record (pod, loads) for the pool,
and the processes started for the PyTorchJob side (one load each).

    python bench/pool_overhead.py --level operator --jobs 20 --workers 2 --out OUT
    python bench/pool_overhead.py --level worker --jobs 20 --workers 2 --out OUT

Writes pool_overhead.json and pool_overhead.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "localstack"))

import stack  # noqa: E402  (hack/localstack/stack.py)

EXTRA = ["--height", "64", "--width", "96", "--num_frames", "9", "--device", "cpu"]
DISABLED = {"promptRefiner": {"enabled": False}, "guardrail": {"enabled": False}}
CHART = ROOT / "charts" / "video2world-operator"


@dataclass
class JobTiming:
    name: str
    seconds: float  # created -> seen finished, by the client
    generation: float  # the videos' timings in result.json
    overhead: float
    worker: str | None = None
    loads: int | None = None


@dataclass
class Side:
    mode: str
    jobs: list[JobTiming] = field(default_factory=list)
    total_seconds: float = 0.0
    model_loads: int = 0
    ready_seconds: float | None = None  # pool: from its creation to every worker ready (loaded)

    def summary(self) -> dict[str, Any]:
        over = [j.overhead for j in self.jobs]
        return {"mode": self.mode, "jobs": len(self.jobs), "total_seconds": round(self.total_seconds, 2),
                "model_loads": self.model_loads, "ready_seconds": self.ready_seconds,
                "overhead_mean": round(statistics.mean(over), 3), "overhead_median": round(statistics.median(over), 3),
                "overhead_max": round(max(over), 3),
                "generation_mean": round(statistics.mean(j.generation for j in self.jobs), 3),
                "seconds_mean": round(statistics.mean(j.seconds for j in self.jobs), 3)}


def closed_loop(count: int, concurrency: int, submit: Callable[[int], Any], finished: Callable[[Any], Any]
                ) -> tuple[list[tuple[int, float, float, Any]], float]:
    """Keeps `concurrency` jobs in flight until `count` have ended: [(index, started, ended, outcome)], total."""
    pending, flying, done = deque(range(count)), {}, []
    start = time.monotonic()
    while pending or flying:
        while pending and len(flying) < concurrency:
            index = pending.popleft()
            began = time.monotonic()
            flying[index] = (submit(index), began)
        for index, (handle, began) in list(flying.items()):
            outcome = finished(handle)
            if outcome is not None:
                done.append((index, began, time.monotonic(), outcome))
                del flying[index]
        time.sleep(0.05)
    return done, time.monotonic() - start


def generation_seconds(result: dict) -> float:
    return sum(sum((v.get("timings") or {}).values()) for v in result.get("videos") or [])


class Stack:
    """The local stack's common part: control plane, MinIO, tiny models and an input in a bucket."""

    def __init__(self, workdir: Path) -> None:
        bins = stack.build_binaries()
        self.workdir = workdir
        self.kube = stack.ControlPlane(bins, workdir / "kube").start()
        self.minio = stack.MinioServer(bins, workdir / "minio").start()
        self.bucket = self.minio.make_bucket("bench")
        s3 = self.minio.client()
        subprocess.run([sys.executable, "-m", "v2w_runtime.tiny", "--out", str(workdir / "models" / "video2world")],
                       check=True, capture_output=True)
        self.checkpoint = stack.upload_tree(s3, workdir / "models" / "video2world", self.bucket, "models/video2world")
        s3.put_object(Bucket=self.bucket, Key="inputs/in.jpg", Body=stack.sample_image(0, (96, 64)))
        self.input = f"s3://{self.bucket}/inputs/in.jpg"
        self.servers: list[Any] = []

    def result(self, namespace: str, name: str) -> dict:
        body = self.minio.client().get_object(Bucket=self.bucket, Key=f"results/{namespace}/{name}/result.json")["Body"]
        return json.loads(body.read())

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        self.kube.kubectl("create", "namespace", name)
        self.kube.kubectl("create", "secret", "generic", "v2w-s3", "-n", name,
                          f"--from-literal=AWS_ACCESS_KEY_ID={self.minio.access_key}",
                          f"--from-literal=AWS_SECRET_ACCESS_KEY={self.minio.secret_key}")
        return name

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.minio.stop()
        self.kube.stop()


# -- the whole system -------------------------------------------------------------------------------------------


def operator_level(s: Stack, jobs: int, workers: int) -> list[Side]:
    from kubernetes import client, config

    kubeconfig = stack.install_operator_identity(s.kube, CHART, "v2w-system", "v2w-operator",
                                                 s.workdir / "operator.kubeconfig")
    stack.install_crds(s.kube, ROOT)
    stack.wait_established(s.kube, "video2worldpools.video2world.io")
    s.servers.append(stack.start_training_operator(s.kube, s.workdir / "training-operator"))
    executor = stack.start_executor(s.kube, s.workdir / "executor", s.workdir / "pvcs", slots=workers)
    s.servers.append(executor)
    env = {"V2W_POLL_INTERVAL_SECONDS": "1", "V2W_METRICS_PORT": str(stack.free_port()),
           "V2W_CHECKPOINT_2B": s.checkpoint, "V2W_S3_ENDPOINT": s.minio.endpoint, "V2W_S3_REGION": s.minio.region,
           "V2W_RUNTIME_EXTRA_ARGS": " ".join(EXTRA),
           "V2W_POOL_WORKER_CLUSTER_ROLE": "v2w-video2world-operator-pool-worker"}
    s.servers.append(stack.start_operator(kubeconfig, env, s.workdir / "logs" / "operator.log"))
    api = client.CustomObjectsApi(config.new_client_from_config(str(s.kube.kubeconfig)))

    def job(namespace: str, name: str, pool: str | None) -> dict:
        spec = {"input": {"uri": s.input, "prompt": f"bench job {name}"},
                "output": {"uri": f"s3://{s.bucket}/results", "credentialsSecret": {"name": "v2w-s3"}},
                "generation": {"numSteps": 2, "guidance": 3.0}, **DISABLED}
        if pool:
            spec["poolRef"] = pool
        return {"apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldJob", "metadata": {"name": name},
                "spec": spec}

    def run_side(mode: str, namespace: str, pool: str | None) -> Side:
        side = Side(mode)

        def submit(i: int) -> str:
            name = f"{mode}-{i:02d}"
            api.create_namespaced_custom_object("video2world.io", "v1alpha1", namespace, "video2worldjobs",
                                                job(namespace, name, pool))
            return name

        def finished(name: str) -> str | None:
            obj = api.get_namespaced_custom_object("video2world.io", "v1alpha1", namespace, "video2worldjobs", name)
            phase = (obj.get("status") or {}).get("phase")
            if phase == "Failed":
                raise RuntimeError(f"{namespace}/{name} failed: {obj['status'].get('message')}")
            return phase if phase == "Succeeded" else None

        done, side.total_seconds = closed_loop(jobs, workers, submit, finished)
        for index, began, ended, _ in sorted(done):
            name = f"{mode}-{index:02d}"
            result = s.result(namespace, name)
            gen = generation_seconds(result)
            worker = result.get("worker") or {}
            side.jobs.append(JobTiming(name, ended - began, gen, ended - began - gen, worker.get("pod"),
                                       worker.get("loads")))
        return side

    # PyTorchJob per job: every pod loads (the executor's log names each pod it started in the namespace).
    ns = s.namespace("pytorchjob")
    plain = run_side("pytorchjob", ns, None)
    plain.model_loads = len(re.findall(rf"pod {re.escape(ns)}/\S+ .*started: pid", executor.log.read_text()))

    ns = s.namespace("pool")
    began = time.monotonic()
    api.create_namespaced_custom_object("video2world.io", "v1alpha1", ns, "video2worldpools", {
        "apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldPool", "metadata": {"name": "warm"},
        "spec": {"replicas": workers, **DISABLED, "output": {"credentialsSecret": {"name": "v2w-s3"}}}})
    while True:
        status = api.get_namespaced_custom_object("video2world.io", "v1alpha1", ns, "video2worldpools",
                                                  "warm").get("status") or {}
        if status.get("readyReplicas", 0) == workers:
            break
        if time.monotonic() - began > 600:
            raise TimeoutError(f"the pool's workers were not ready: {status}")
        time.sleep(0.2)
    pooled = run_side("pool", ns, "warm")
    pooled.ready_seconds = round(time.monotonic() - began - pooled.total_seconds, 2)
    pooled.model_loads = sum({j.worker: j.loads for j in pooled.jobs}.values())
    return [plain, pooled]


# -- the runtime alone --------------------------------------------------------------------------------------------


def worker_level(s: Stack, jobs: int, workers: int) -> list[Side]:
    import yaml
    from kubernetes import client, config

    from v2w_api.lease import ANNOTATION_RUN_ARGS, LABEL_POOL, LeaseState
    from v2w_api.spec import Video2WorldJobSpec
    from v2w_api.worker import WorkerConfig
    from v2w_operator.backends import child
    from v2w_operator.config import OperatorConfig

    def run_args(namespace: str, name: str) -> list[str]:
        spec = Video2WorldJobSpec.model_validate({
            "input": {"uri": s.input, "prompt": f"bench job {name}"}, "output": {"uri": f"s3://{s.bucket}/results"},
            "generation": {"numSteps": 2, "guidance": 3.0}, **DISABLED})
        operator = OperatorConfig(checkpoint_2b=s.checkpoint, runtime_extra_args=EXTRA)
        run = child.run_config("Video2WorldJob", name, spec, operator,
                               child.output_prefix(spec, namespace, name))
        return child.runtime_args("Video2WorldJob", run, operator)

    base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    base_env.update(s.minio.env(), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                    PET_STANDALONE="1", PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")

    def pod_env(folder: Path) -> dict[str, str]:
        for sub in ("tmp", "cache"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {**base_env, "V2W_CACHE_DIR": str(folder / "cache"), "TMPDIR": str(folder / "tmp")}

    # PyTorchJob-like: a fresh process per job, as its pod runs it (a fresh pod: its own empty cache).
    ns = "processes"
    plain = Side("process-per-job")

    def submit_process(i: int):
        folder = s.workdir / "pods" / f"job-{i:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "log").open("wb") as out:
            return f"job-{i:02d}", subprocess.Popen(["v2w-launch", *run_args(ns, f"job-{i:02d}")], env=pod_env(folder),
                                                    stdout=out, stderr=subprocess.STDOUT, cwd=folder)

    def process_done(handle):
        name, proc = handle
        if proc.poll() is None:
            return None
        if proc.returncode:
            raise RuntimeError(f"{name} exited {proc.returncode}")
        return name

    done, plain.total_seconds = closed_loop(jobs, workers, submit_process, process_done)
    for _, began, ended, name in sorted(done):
        gen = generation_seconds(s.result(ns, name))
        plain.jobs.append(JobTiming(name, ended - began, gen, ended - began - gen))
    plain.model_loads = jobs

    # The pool: worker processes as the pool's pods run them, claiming Leases.
    ns = "pool"
    s.kube.kubectl("create", "namespace", ns)
    sa = "v2wpool-warm"
    s.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pool-worker", "namespace": ns},
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["get", "list", "watch", "update", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": sa, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pool-worker"},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}]))
    worker_config = WorkerConfig.parse({"pool": "warm", "model": {"checkpoint": s.checkpoint}, **DISABLED}, "bench")
    procs, ready = [], []
    began = time.monotonic()
    for w in range(workers):
        folder = s.workdir / "pods" / f"worker-{w}"
        account = folder / "serviceaccount"
        account.mkdir(parents=True, exist_ok=True)
        (account / "token").write_text(s.kube.kubectl("create", "token", sa, "-n", ns, "--duration=2h").stdout.strip())
        (account / "ca.crt").write_bytes((s.kube.pki / "ca.crt").read_bytes())
        ready.append(folder / "tmp" / "ready")
        env = {**pod_env(folder), "POD_NAME": f"worker-{w}", "POD_NAMESPACE": ns, "V2W_SERVICEACCOUNT_DIR": str(account),
               "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(s.kube.api_port),
               "V2W_READY_FILE": str(ready[-1])}
        with (folder / "log").open("wb") as out:
            procs.append(subprocess.Popen(["v2w-launch", "--module", "v2w_runtime.worker", "--config",
                                           worker_config.to_yaml(), *EXTRA], env=env, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=folder, start_new_session=True))
    while not all(r.exists() for r in ready):
        if any(p.poll() is not None for p in procs) or time.monotonic() - began > 600:
            raise RuntimeError("a worker did not get ready")
        time.sleep(0.1)
    pooled = Side("pool", ready_seconds=round(time.monotonic() - began, 2))
    leases = client.CoordinationV1Api(config.new_client_from_config(str(s.kube.kubeconfig)))

    def submit_lease(i: int) -> str:
        name = f"job-{i:02d}"
        leases.create_namespaced_lease(ns, {
            "metadata": {"name": f"v2w-{name}", "labels": {LABEL_POOL: "warm"},
                         "annotations": {ANNOTATION_RUN_ARGS: json.dumps(run_args(ns, name))}},
            "spec": {"leaseDurationSeconds": 20}})
        return name

    def lease_done(name: str) -> str | None:
        data = json.loads(leases.read_namespaced_lease(f"v2w-{name}", ns, _preload_content=False).data)
        state = LeaseState.of(data)
        if state.outcome == "Failed":
            raise RuntimeError(f"{name} failed: {state.message}")
        return name if state.outcome == "Succeeded" else None

    try:
        done, pooled.total_seconds = closed_loop(jobs, workers, submit_lease, lease_done)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
    for _, began, ended, name in sorted(done):
        result = s.result(ns, name)
        gen = generation_seconds(result)
        pooled.jobs.append(JobTiming(name, ended - began, gen, ended - began - gen, result["worker"]["pod"],
                                     result["worker"]["loads"]))
    pooled.model_loads = sum({j.worker: j.loads for j in pooled.jobs}.values())
    return [plain, pooled]


def report(level: str, sides: list[Side], out: Path, workers: int) -> str:
    rows = [side.summary() for side in sides]
    out.mkdir(parents=True, exist_ok=True)
    (out / "pool_overhead.json").write_text(json.dumps(
        {"level": level, "workers": workers, "summary": rows, "jobs": {s.mode: [asdict(j) for j in s.jobs] for s in sides}},
        indent=2))
    lines = [f"# Warm pool against a pod per job ({level} level, {workers} at a time, tiny models, CPU)", "",
             "| mode | jobs | total s | model loads | workers ready s | per-job overhead mean / median / max s | "
             "generation mean s | job mean s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['jobs']} | {r['total_seconds']} | {r['model_loads']} | "
                     f"{r['ready_seconds'] if r['ready_seconds'] is not None else '-'} | {r['overhead_mean']} / "
                     f"{r['overhead_median']} / {r['overhead_max']} | {r['generation_mean']} | {r['seconds_mean']} |")
    text = "\n".join(lines) + "\n"
    (out / "pool_overhead.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", choices=("operator", "worker"), default="operator")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=None, help="the stack's files (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="v2w-pool-bench-"))
    s = Stack(workdir)
    try:
        sides = (operator_level if args.level == "operator" else worker_level)(s, args.jobs, args.workers)
    finally:
        s.stop()
    print(report(args.level, sides, args.out, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
