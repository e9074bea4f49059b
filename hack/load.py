#!/usr/bin/env python3
"""Operator load test on the local stack: N Video2WorldJobs applied at once, driven by the executor.

Everything is real except the GPUs: kube-apiserver (with an audit log) + etcd + kube-controller-manager,
MinIO, the operator run by `kopf run` under the chart's RBAC, the Kubeflow training-operator turning each
PyTorchJob into pods, and the executor running every pod's runtime command (torchrun, tiny checkpoints, CPU)
with at most `--slots` pods at once, as a cluster with that many GPU nodes would. A watcher sees both the jobs
and their PyTorchJobs, so each lag below is measured on one clock:

- create -> PyTorchJob: the job appears, then its PyTorchJob does (the operator's create path);
- Running lag: the PyTorchJob turns Running, then the job's status says Running;
- final lag: the PyTorchJob turns Succeeded/Failed, then the job's status does (result.json read);
- API requests: the operator's requests from the API server's audit log, per job and by kind;
- memory and CPU: the operator process's peak RSS and CPU seconds.

    python hack/load.py --jobs 200 --slots 2 --until completed --out result.json

`--until pytorchjobs` stops once every job has its PyTorchJob (the operator's create path); `--slots 0` runs
neither the training-operator nor the executor, so the PyTorchJobs stay pending.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "localstack"))
import stack  # noqa: E402

NAMESPACE = "load"
OPERATOR_NS, OPERATOR_SA = "v2w-system", "v2w-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
RUNTIME_DEBUG_ARGS = "--height 64 --width 96 --num_frames 9 --device cpu"
FINAL = ("Succeeded", "Failed")


@dataclass
class Seen:
    """When the watcher first saw each event of one job, in time.monotonic() seconds."""

    job_added: float | None = None
    pytorchjob_added: float | None = None
    job_phase: dict[str, float] = field(default_factory=dict)
    pytorchjob_state: dict[str, float] = field(default_factory=dict)
    pytorchjobs: set[str] = field(default_factory=set)


class Watcher:
    """Watches the jobs and the PyTorchJobs of one namespace from threads and records first sightings."""

    def __init__(self, kubeconfig: Path, namespace: str):
        from kubernetes import client, config

        self.api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
        self.namespace = namespace
        self.seen: dict[str, Seen] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=args, daemon=True) for args in (
            ("video2world.io", "v1alpha1", "video2worldjobs", self._on_job),
            ("kubeflow.org", "v1", "pytorchjobs", self._on_pytorchjob))]

    def start(self) -> "Watcher":
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _loop(self, group: str, version: str, plural: str, handle) -> None:
        from kubernetes import watch

        resource_version = None
        while not self.stopped.is_set():
            try:
                stream = watch.Watch().stream(self.api.list_namespaced_custom_object, group, version, self.namespace,
                                              plural, timeout_seconds=30, resource_version=resource_version)
                for event in stream:
                    obj = event["object"]
                    resource_version = obj["metadata"]["resourceVersion"]
                    with self.lock:
                        handle(obj, time.monotonic())
            except Exception:  # noqa: BLE001 - an expired resourceVersion: list again
                resource_version = None
                time.sleep(0.2)

    def _entry(self, job_name: str) -> Seen:
        return self.seen.setdefault(job_name, Seen())

    def _on_job(self, obj: dict[str, Any], now: float) -> None:
        entry = self._entry(obj["metadata"]["name"])
        entry.job_added = entry.job_added or now
        phase = (obj.get("status") or {}).get("phase")
        if phase:
            entry.job_phase.setdefault(phase, now)

    def _on_pytorchjob(self, obj: dict[str, Any], now: float) -> None:
        owner = next((o["name"] for o in obj["metadata"].get("ownerReferences") or []
                      if o.get("kind") == "Video2WorldJob"), None)
        if owner is None:
            return
        entry = self._entry(owner)
        entry.pytorchjobs.add(obj["metadata"]["name"])
        entry.pytorchjob_added = entry.pytorchjob_added or now
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "True":
                entry.pytorchjob_state.setdefault(cond["type"], now)

    def snapshot(self) -> dict[str, Seen]:
        with self.lock:
            return {k: Seen(v.job_added, v.pytorchjob_added, dict(v.job_phase), dict(v.pytorchjob_state),
                            set(v.pytorchjobs)) for k, v in self.seen.items()}


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)

    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3), "p95": pick(0.95), "p99": pick(0.99),
            "max": round(ordered[-1], 3)}


def lags(seen: dict[str, Seen]) -> dict[str, dict[str, float | int]]:
    create, running, final = [], [], []
    for entry in seen.values():
        if entry.job_added is not None and entry.pytorchjob_added is not None:
            create.append(entry.pytorchjob_added - entry.job_added)
        if "Running" in entry.pytorchjob_state and "Running" in entry.job_phase:
            running.append(max(0.0, entry.job_phase["Running"] - entry.pytorchjob_state["Running"]))
        done = [entry.pytorchjob_state[s] for s in FINAL if s in entry.pytorchjob_state]
        shown = [entry.job_phase[s] for s in FINAL if s in entry.job_phase]
        if done and shown:
            final.append(max(0.0, min(shown) - min(done)))
    return {"create_to_pytorchjob_s": percentiles(create), "running_lag_s": percentiles(running),
            "final_lag_s": percentiles(final)}


def request_counts(events: list[dict[str, Any]]) -> tuple[int, Counter]:
    """The operator's API requests (one per auditID), by `verb resource[/subresource]`."""
    by_id = {e["auditID"]: e for e in events}
    kinds: Counter = Counter()
    for event in by_id.values():
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        kinds[f"{event['verb']} {resource}"] += 1
    return len(by_id), kinds


def process_stats(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    hwm = next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"peak_rss_mib": round(hwm / 1024, 1), "cpu_seconds": round((int(fields[11]) + int(fields[12])) / ticks, 1)}


def job_docs(count: int, bucket: str, prefix: str = "job") -> list[dict[str, Any]]:
    docs = []
    for i in range(count):
        docs.append({
            "apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldJob",
            "metadata": {"name": f"{prefix}-{i:04d}"},
            "spec": {
                "input": {"uri": f"s3://{bucket}/inputs/input{i % 3}.jpg", "prompt": f"Load test scene {i}."},
                "generation": {"numSteps": 2, "guidance": 3.0, "seed": i},
                "promptRefiner": {"enabled": False}, "guardrail": {"enabled": False},
                "output": {"uri": f"s3://{bucket}/results", "credentialsSecret": {"name": "v2w-s3"}},
            },
        })
    return docs


class LoadTest:
    """The whole stack for one load run; `run()` returns the report."""

    def __init__(self, workdir: Path, jobs: int, slots: int, poll_seconds: float, until: str, timeout: float,
                 hold: float = 0.0):
        self.workdir, self.jobs, self.slots, self.hold = workdir, jobs, slots, hold
        self.poll_seconds, self.until, self.timeout = poll_seconds, until, timeout
        self.plane: stack.ControlPlane | None = None
        self.minio: stack.MinioServer | None = None
        self.servers: list[stack.Server] = []

    def __enter__(self) -> "LoadTest":
        bin_dir = stack.build_binaries()
        self.minio = stack.MinioServer(bin_dir, self.workdir / "minio").start()
        self.plane = stack.ControlPlane(bin_dir, self.workdir / "kube", audit=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for server in reversed(self.servers):
            server.stop()
        if self.plane:
            self.plane.stop()
        if self.minio:
            self.minio.stop()

    def _prepare(self) -> tuple[Path, str]:
        assert self.plane and self.minio
        plane, minio = self.plane, self.minio
        stack.install_crds(plane, ROOT)
        bucket = minio.make_bucket("load")
        s3 = minio.client()
        models = self.workdir / "models" / "video2world"
        subprocess.run([sys.executable, "-m", "v2w_runtime.tiny", "--out", str(models)], check=True,
                       capture_output=True)
        checkpoint = stack.upload_tree(s3, models, bucket, "models/video2world")
        for i in range(3):
            s3.put_object(Bucket=bucket, Key=f"inputs/input{i}.jpg", Body=stack.sample_image(i, (96, 64)))
        kubeconfig = stack.install_operator_identity(plane, ROOT / "charts" / "video2world-operator", OPERATOR_NS,
                                                     OPERATOR_SA, self.workdir / "operator.kubeconfig")
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl("create", "secret", "generic", "v2w-s3", "-n", NAMESPACE,
                      f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
                      f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}")
        if self.slots:
            self.servers.append(stack.start_training_operator(plane, self.workdir / "training-operator"))
            self.servers.append(stack.start_executor(plane, self.workdir / "executor", self.workdir / "pvcs",
                                                     slots=self.slots))
        env = {"V2W_POLL_INTERVAL_SECONDS": str(self.poll_seconds), "V2W_METRICS_PORT": "0",
               "V2W_CHECKPOINT_2B": checkpoint, "V2W_S3_ENDPOINT": minio.endpoint, "V2W_S3_REGION": minio.region,
               "V2W_RUNTIME_EXTRA_ARGS": RUNTIME_DEBUG_ARGS}
        operator = stack.start_operator(kubeconfig, env, self.workdir / "logs" / "operator.log")
        self.servers.append(operator)
        return kubeconfig, bucket

    def _done(self, seen: dict[str, Seen]) -> int:
        if self.until == "pytorchjobs":
            return sum(1 for e in seen.values() if e.pytorchjob_added is not None)
        return sum(1 for e in seen.values() if any(p in e.job_phase for p in FINAL))

    def _wait_for_training_operator(self, timeout: float = 300) -> None:
        """The training-operator works through the PyTorchJobs at its own API rate (20 requests/s by default: a
        pod, a Service and a status each): wait until it has written every one's status, and the operator has
        had a poll to take that in, so that what is counted next is the operator at rest."""
        assert self.plane
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = json.loads(self.plane.kubectl("get", "pytorchjobs", "-n", NAMESPACE, "-o", "json",
                                                  timeout=120).stdout)["items"]
            if len(items) >= self.jobs and all((item.get("status") or {}).get("conditions") for item in items):
                break
            time.sleep(1)
        time.sleep(self.poll_seconds + 1)

    def run(self) -> dict[str, Any]:
        assert self.plane
        _, bucket = self._prepare()
        operator = self.servers[-1]
        watcher = Watcher(self.plane.kubeconfig, NAMESPACE).start()
        # The operator is up when it has taken its watches; its first requests show in the audit log.
        deadline = time.monotonic() + 60
        while not any(e["verb"] == "watch" for e in self.plane.audit_events(user=OPERATOR_USER)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator did not start watching:\n{operator.log_tail()}")
            time.sleep(0.5)
        before, _ = request_counts(self.plane.audit_events(user=OPERATOR_USER))

        started = time.monotonic()
        self.plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(job_docs(self.jobs, bucket)),
                           timeout=600)
        applied = time.monotonic() - started
        while time.monotonic() - started < self.timeout:
            if self._done(watcher.snapshot()) >= self.jobs:
                break
            if not operator.alive():
                raise RuntimeError(f"the operator died:\n{operator.log_tail()}")
            time.sleep(1)
        wall = time.monotonic() - started
        if self.slots:
            self._wait_for_training_operator()
        time.sleep(2)  # let the last status patches reach the audit log
        total, kinds = request_counts(self.plane.audit_events(user=OPERATOR_USER))
        during = total - before
        steady = None
        if self.hold:
            # Nothing changes now: what the operator still asks per job and minute is its standing cost.
            time.sleep(self.hold)
            after, steady_kinds = request_counts(self.plane.audit_events(user=OPERATOR_USER))
            steady = {"window_s": self.hold,
                      "per_job_per_minute": round((after - total) / self.jobs / (self.hold / 60), 2),
                      "by_kind": dict((steady_kinds - kinds).most_common())}
        watcher.stop()
        seen = watcher.snapshot()
        phases = Counter(next((p for p in ("Succeeded", "Failed", "Running", "Pending") if p in e.job_phase), "none")
                         for e in seen.values())
        return {
            "jobs": self.jobs, "slots": self.slots, "until": self.until, "poll_interval_s": self.poll_seconds,
            "apply_s": round(applied, 2), "wall_s": round(wall, 1), "reached": self._done(seen),
            "final_phases": dict(phases),
            "pytorchjobs_per_job_max": max((len(e.pytorchjobs) for e in seen.values()), default=0),
            **lags(seen),
            "operator": process_stats(operator.proc.pid),
            "operator_requests": {"total": during, "per_job": round(during / self.jobs, 2),
                                  "by_kind": dict(kinds.most_common())},
            "operator_requests_standing": steady,
            "operator_alive": operator.alive(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--slots", type=int, default=2, help="pods (one-node jobs) the executor runs at once")
    parser.add_argument("--poll", type=float, default=10.0, help="the operator's poll interval (the chart's default)")
    parser.add_argument("--until", choices=("pytorchjobs", "completed"), default="completed")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--hold", type=float, default=0.0,
                        help="seconds to go on counting the operator's requests once everything is reached")
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="v2w-load-"))
    # A plain SIGTERM would leave the API server, MinIO, executor and operator running: unwind instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with LoadTest(workdir, args.jobs, args.slots, args.poll, args.until, args.timeout, args.hold) as load:
        report = load.run()
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["reached"] >= args.jobs and report["operator_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
