"""Pool workers as processes (`v2w-launch --module v2w_runtime.worker`, as a worker pod starts them) against a
real API server and MinIO, with tiny models on the CPU: jobs run on models loaded once, with every file a
PyTorchJob's pod writes; a job the pool cannot serve fails naming the settings; deletion, suspension and SIGTERM
stop a run; a worker killed mid-job loses its claim and another worker finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from v2w_api.lease import LeaseState
from v2w_api.manifest import ResultManifest
from v2w_api.worker import WorkerConfig

from executor import descendants  # hack/localstack/executor.py (on sys.path via tests/conftest.py)

from .jobs import DURATION, EXTRA, Models, run_args, s3_json, wait_lease, wait_sampling


class WorkerProcess:
    def __init__(self, pool_ns, models: Models, minio, folder: Path, pod: str, gpus: int = 1) -> None:
        self.pod, self.folder = pod, folder
        for sub in ("tmp", "staging", "cache"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config = WorkerConfig.parse({
            "pool": pool_ns.pool, "model": {"checkpoint": models.checkpoint}, "generation": {"resolution": 480},
            "guardrail": {"enabled": False}, "promptRefiner": {"enabled": False}, "parallelism": {"gpus": gpus},
            "leaseDurationSeconds": DURATION, "renewSeconds": 0.5}, "test")
        self.ready = folder / "tmp" / "v2w-worker-ready"
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        env.update(minio.env(), POD_NAME=pod, POD_NAMESPACE=pool_ns.namespace, OMP_NUM_THREADS="1",
                   V2W_SERVICEACCOUNT_DIR=str(pool_ns.token_dir(folder / "serviceaccount")),
                   KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(pool_ns.kube.api_port),
                   V2W_READY_FILE=str(self.ready), V2W_CACHE_DIR=str(folder / "cache"), PET_STANDALONE="1",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", V2W_STAGING_DIR=str(folder / "staging"),
                   PET_NPROC_PER_NODE=str(gpus))
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        self.log = folder / "worker.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(["v2w-launch", "--module", "v2w_runtime.worker", "--config", config.to_yaml(),
                                          *EXTRA], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                         start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            assert self.proc.poll() is None, f"worker {self.pod} exited {self.proc.returncode}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"worker {self.pod} not ready:\n{self.tail()}"
            time.sleep(0.2)

    def signal(self, sig: int) -> None:
        """To every process of the container, as a container runtime signals them: torchrun starts its workers in
        sessions of their own, so the launcher's process group is not all of them."""
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.killpg(pid, sig) if pid == self.proc.pid else os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the launcher passes it on to its worker
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def workers(pool_ns, models, minio, tmp_path):
    started: list[WorkerProcess] = []

    def start(pod: str, gpus: int = 1) -> WorkerProcess:
        worker = WorkerProcess(pool_ns, models, minio, tmp_path / pod, pod, gpus)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_jobs_run_on_models_loaded_once_and_a_job_the_pool_cannot_serve_fails(pool_ns, models, minio, workers):
    worker = workers("w-a")
    worker.wait_ready()
    ns = pool_ns.namespace
    for name in ("one", "two"):
        pool_ns.create_lease(f"v2w-{name}", run_args(models, ns, name))
    pool_ns.create_lease("v2w-big", run_args(models, ns, "big", model={"size": "14B", "checkpoint": models.checkpoint},
                                             guardrail={"enabled": True}))
    served = []
    for name in ("one", "two"):
        state = wait_lease(pool_ns, f"v2w-{name}", lambda s: s.outcome is not None, "an outcome", worker=worker)
        assert (state.outcome, state.exit_code, state.holder) == ("Succeeded", 0, None), state
        result = ResultManifest.model_validate(s3_json(minio, models.bucket, f"results/{ns}/{name}/result.json"))
        assert result.succeeded and [v.status for v in result.videos] == ["succeeded"]
        assert result.worker.pod == "w-a" and result.worker.loads == 1
        served.append(result.worker.jobs_served)
        assert result.cold_start is None or result.cold_start.load == 0  # nothing loaded for the job
        assert s3_json(minio, models.bucket, f"results/{ns}/{name}/progress.json")["stage"] == "done"
        minio.client().head_object(Bucket=models.bucket, Key=f"results/{ns}/{name}/{name}.mp4")
    big = wait_lease(pool_ns, "v2w-big", lambda s: s.outcome is not None, "an outcome", worker=worker)
    assert (big.outcome, big.exit_code) == ("Failed", 2)
    assert big.message == "pool small cannot run this job: it differs in model.size, guardrail.enabled"
    assert sorted(served) == [served[0], served[0] + 1]  # one process served both, in turn
    log = worker.log.read_text()
    assert log.count("models loaded, serving") == 1 and "claimed v2w-one (attempt 1)" in log
    assert minio.secret_key not in log


def test_deleted_suspended_and_terminated_runs_stop_and_the_worker_goes_on(pool_ns, models, minio, workers):
    worker = workers("w-b")
    worker.wait_ready()
    ns = pool_ns.namespace
    long = {"generation": {"numSteps": 200}}

    # Deleted while sampling: the run stops, nothing is released (the Lease is gone), the next job runs.
    pool_ns.create_lease("v2w-deleted", run_args(models, ns, "deleted", **long))
    wait_sampling(minio, models, ns, "deleted")
    pool_ns.delete_lease("v2w-deleted")
    pool_ns.create_lease("v2w-after", run_args(models, ns, "after"))
    after = wait_lease(pool_ns, "v2w-after", lambda s: s.outcome is not None, "an outcome", worker=worker)
    assert after.outcome == "Succeeded"
    assert s3_json(minio, models.bucket, f"results/{ns}/deleted/result.json") is None
    assert "stopped v2w-deleted: the job was deleted" in worker.log.read_text()

    # Suspended while sampling: released without an outcome, and nobody claims it.
    pool_ns.create_lease("v2w-paused", run_args(models, ns, "paused", **long))
    wait_sampling(minio, models, ns, "paused")
    pool_ns.annotate("v2w-paused", suspend="true")
    paused = wait_lease(pool_ns, "v2w-paused", lambda s: s.holder is None, "released", worker=worker)
    assert paused.outcome is None and paused.suspended and "suspended" in paused.message
    assert s3_json(minio, models.bucket, f"results/{ns}/paused/result.json") is None

    # SIGTERM while sampling: released without an outcome for another worker, exit 0.
    pool_ns.create_lease("v2w-term", run_args(models, ns, "term", **long))
    wait_sampling(minio, models, ns, "term")
    assert worker.stop() == 143  # the container, terminated; the worker process itself stopped cleanly:
    assert "INFO worker w-b: stopped after 4 job(s)" in worker.log.read_text()
    term = LeaseState.of(pool_ns.lease("v2w-term"))
    assert (term.holder, term.outcome, term.message) == (None, None, "worker w-b stopped; the run stopped on worker w-b")
    assert term.claimable(datetime.now(timezone.utc))
    assert not worker.ready.exists()


def test_a_worker_killed_mid_job_loses_it_to_the_other_which_finishes_it(pool_ns, models, minio, workers):
    pair = {w.pod: w for w in (workers("w-first"), workers("w-second"))}
    for worker in pair.values():
        worker.wait_ready()
    ns = pool_ns.namespace
    entries = 6
    pool_ns.create_lease("v2w-crash", run_args(models, ns, "crash", batch=entries, s3=minio.client(),
                                               generation={"numSteps": 60}), duration=DURATION)
    holder = wait_lease(pool_ns, "v2w-crash", lambda s: s.holder is not None, "held").holder
    deadline = time.monotonic() + 120
    while (s3_json(minio, models.bucket, f"results/{ns}/crash/progress.json") or {}).get("videosDone", 0) < 2:
        assert time.monotonic() < deadline, "the batch made no 2 videos"
        time.sleep(0.1)
    crashed = pair.pop(holder)
    crashed.signal(signal.SIGKILL)  # mid-job, no release: the claim runs out
    crashed.proc.wait()
    assert LeaseState.of(pool_ns.lease("v2w-crash")).outcome is None
    (other,) = pair.values()
    state = wait_lease(pool_ns, "v2w-crash", lambda s: s.outcome is not None, "an outcome", timeout=180,
                       worker=other)
    assert (state.outcome, state.transitions) == ("Succeeded", 2)
    result = ResultManifest.model_validate(s3_json(minio, models.bucket, f"results/{ns}/crash/result.json"))
    assert result.succeeded and result.worker.pod == other.pod and result.worker.loads == 1
    assert [v.status for v in result.videos] == ["succeeded"] * entries
    names = {o["Key"].rsplit("/", 1)[1] for o in minio.client().list_objects_v2(
        Bucket=models.bucket, Prefix=f"results/{ns}/crash/")["Contents"]}
    assert {f"v{i}{suffix}" for i in range(entries) for suffix in (".mp4", ".json", ".txt")} <= names
    assert {"progress.json", "result.json"} <= names
    log = other.log.read_text()
    assert "claimed v2w-crash (attempt 2)" in log and "already made by an earlier attempt" in log


def test_a_two_rank_worker_runs_jobs_on_both_ranks_and_exits_to_stop_a_run(pool_ns, models, minio, workers):
    worker = workers("w-pair", gpus=2)  # two processes (gloo on the CPU) making each video together
    worker.wait_ready()
    ns = pool_ns.namespace
    two = {"parallelism": {"gpus": 2}}
    pool_ns.create_lease("v2w-pair", run_args(models, ns, "pair", **two))
    pool_ns.create_lease("v2w-single", run_args(models, ns, "single"))
    state = wait_lease(pool_ns, "v2w-pair", lambda s: s.outcome is not None, "an outcome", worker=worker)
    assert state.outcome == "Succeeded", state
    result = ResultManifest.model_validate(s3_json(minio, models.bucket, f"results/{ns}/pair/result.json"))
    assert result.succeeded and result.worker.loads == 1
    record = s3_json(minio, models.bucket, f"results/{ns}/pair/pair.json")
    assert record["layout"]["gpus"] == 2 and record["layout"]["groupSize"] == 2  # both ranks made the video
    single = wait_lease(pool_ns, "v2w-single", lambda s: s.outcome is not None, "an outcome", worker=worker)
    assert (single.outcome, single.exit_code) == ("Failed", 2) and "parallelism.gpus" in single.message

    # Its ranks cannot agree on a step to stop at: a deleted job's run ends the worker (the pod restarts it).
    pool_ns.create_lease("v2w-gone", run_args(models, ns, "gone", batch=6, s3=minio.client(),
                                              generation={"numSteps": 60}, **two))
    wait_sampling(minio, models, ns, "gone")
    pool_ns.delete_lease("v2w-gone")
    assert worker.proc.wait(60) == 143
    assert "v2w-gone: the job was deleted, stopping the run" in worker.log.read_text()
