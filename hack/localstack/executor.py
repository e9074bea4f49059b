#!/usr/bin/env python3
"""Plays the parts of a GPU cluster that cannot run here: the training-operator and the kubelet.

It follows PyTorchJobs on the real API server and runs each replica's container command as a local
process (`torchrun` on CPU, gloo) with the environment the training-operator injects (PET_*,
MASTER_ADDR, RANK, WORLD_SIZE) and the container's env resolved as the kubelet would (Secret keys
by reference, volume paths mapped to local folders). A PersistentVolumeClaim is looked up in the
PyTorchJob's own namespace, as Kubernetes does: pods wait (are not started) until every claim they name
exists there, and claim `<c>` of namespace `<ns>` is the folder `<pvc-root>/<ns>/<c>`. It writes the PyTorchJob's status the way the
training-operator does: Created, Running, Restarting, Suspended, Succeeded, Failed, with the same
reasons and messages, and honours runPolicy (backoffLimit, activeDeadlineSeconds, suspend) and the replica's
restartPolicy (OnFailure restarts any failure; ExitCode only the retryable exit codes).

    python hack/localstack/executor.py --kubeconfig admin.kubeconfig --workdir DIR
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
# What the training-operator restarts under the ExitCode policy (pkg/util/train): killed by SIGINT, SIGKILL or
# SIGTERM (130, 137, 143), and 138 (128 + SIGUSR1), the code a program gives for "retryable"; others are final.
RETRYABLE_EXIT_CODES = (130, 137, 138, 143)
log = logging.getLogger("executor")


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Run:
    """One PyTorchJob as the executor tracks it."""

    namespace: str
    name: str
    uid: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    restarts: int = 0
    started_at: float | None = None
    finished: bool = False
    next_start: float = 0.0
    waiting_for: tuple[str, ...] = ()  # claims that do not exist (yet) in the job's namespace


class Executor:
    def __init__(self, workdir: Path, pvc_root: Path, python_bin: Path | None = None, slots: int = 0):
        self.workdir = workdir
        # How many PyTorchJobs may run at once (0: no limit), like a cluster with that many GPU nodes: the
        # others stay Created, as their pods would stay Pending for want of GPUs.
        self.slots = slots
        self.pvc_root = pvc_root
        self.python_bin = python_bin
        self.api = client.CustomObjectsApi()
        self.core = client.CoreV1Api()
        self.runs: dict[str, Run] = {}

    # -- status, as the training-operator writes it ------------------------------------------------
    def _set_status(self, job: dict[str, Any], cond_type: str, reason: str, message: str, **extra: Any) -> None:
        status = dict(job.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or []]
        for c in conditions:
            # Running, Restarting and Suspended are exclusive, as in the training-operator.
            if c["type"] in ("Running", "Restarting", "Suspended") and c["type"] != cond_type and c["status"] == "True":
                c.update(status="False", lastUpdateTime=now(), lastTransitionTime=now())
        existing = next((c for c in conditions if c["type"] == cond_type), None)
        entry = {"type": cond_type, "status": "True", "reason": f"PyTorchJob{reason}", "message": message,
                 "lastUpdateTime": now(), "lastTransitionTime": now()}
        if existing:
            if existing["status"] == "True" and existing.get("message") == message:
                entry["lastTransitionTime"] = existing.get("lastTransitionTime", now())
            conditions[conditions.index(existing)] = entry
        else:
            conditions.append(entry)
        status["conditions"] = conditions
        status.update(extra)
        try:
            self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, job["metadata"]["namespace"], PLURAL, job["metadata"]["name"], {"status": status})
            job["status"] = status
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- the kubelet's part -----------------------------------------------------------------------
    def _volume_dirs(self, job: dict, pod_spec: dict) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        base = self.workdir / "pods" / job["metadata"]["namespace"] / job["metadata"]["name"]
        for volume in pod_spec.get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                # A claim reference has no namespace: it is always the pod's own.
                dirs[volume["name"]] = self.pvc_root / job["metadata"]["namespace"] / volume["persistentVolumeClaim"]["claimName"]
            elif "hostPath" in volume:
                # Every pod runs on the one node this executor plays: its directories are shared by all jobs.
                dirs[volume["name"]] = self.workdir / "node" / volume["hostPath"]["path"].lstrip("/")
            else:
                dirs[volume["name"]] = base / volume["name"]
            dirs[volume["name"]].mkdir(parents=True, exist_ok=True)
        return dirs

    def _env(self, job: dict, container: dict, pod_spec: dict) -> dict[str, str]:
        namespace = job["metadata"]["namespace"]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        dirs = self._volume_dirs(job, pod_spec)
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = self._local_path(var["value"], mounts, dirs)
            elif "secretKeyRef" in (var.get("valueFrom") or {}):
                ref = var["valueFrom"]["secretKeyRef"]
                secret = self.core.read_namespaced_secret(ref["name"], namespace)
                env[var["name"]] = base64.b64decode((secret.data or {})[ref["key"]]).decode()
        Path(env.get("HOME", str(self.workdir))).mkdir(parents=True, exist_ok=True)
        if self.python_bin:
            env["PATH"] = f"{self.python_bin}:{env.get('PATH', '')}"
        return env

    @staticmethod
    def _local_path(value: str, mounts: dict[str, str], dirs: dict[str, Path]) -> str:
        """An env value that is a path in the container, as the local folder that plays it."""
        for mount_path, volume in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(dirs[volume]) + value[len(mount_path):]
        # The parent of mounts laid out alike (V2W_PVC_ROOT above /mnt/pvc/<claim>): the parent folder.
        parent = value.rstrip("/")
        for mount_path, volume in mounts.items():
            rest = mount_path[len(parent):]
            if parent and mount_path.startswith(parent + "/") and str(dirs[volume]).endswith(rest):
                return str(dirs[volume])[: -len(rest)]
        return value

    def _start(self, job: dict, run: Run) -> None:
        spec = job["spec"]
        replicas = spec["pytorchReplicaSpecs"]
        nodes = sum(int(r.get("replicas", 1)) for r in replicas.values())
        nproc = spec.get("nprocPerNode", "1")
        port = free_port()
        rank = 0
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for rtype in ("Master", "Worker"):
            if rtype not in replicas:
                continue
            template = replicas[rtype]["template"]
            container = next(c for c in template["spec"]["containers"] if c["name"] == "pytorch")
            for index in range(int(replicas[rtype].get("replicas", 1))):
                env = self._env(job, container, template["spec"])
                env.update({
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nodes), "RANK": str(rank),
                    "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port), "PET_NNODES": str(nodes),
                    "PET_NODE_RANK": str(rank), "PET_NPROC_PER_NODE": str(nproc),
                    "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                })
                argv = list(container.get("command") or []) + list(container.get("args") or [])
                log_path = logs / f"{job['metadata']['namespace']}_{job['metadata']['name']}_{rtype.lower()}-{index}.log"
                with log_path.open("ab") as handle:
                    handle.write(f"--- start (restart {run.restarts}) {now()}\n".encode())
                    handle.flush()
                    run.procs.append(subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                                      cwd=env.get("HOME"), start_new_session=True))
                rank += 1
        run.started_at = run.started_at or time.monotonic()
        self._set_status(job, "Running", "Running", f"PyTorchJob {job['metadata']['name']} is running.",
                         startTime=(job.get("status") or {}).get("startTime") or now(),
                         replicaStatuses={"Master": {"active": 1}, **({"Worker": {"active": nodes - 1}} if nodes > 1 else {})})

    @staticmethod
    def _kill(run: Run) -> None:
        for proc in run.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for proc in run.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        run.procs = []

    # -- the training-operator's part ---------------------------------------------------------------
    def step(self) -> None:
        jobs = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        seen = set()
        for job in jobs:
            meta = job["metadata"]
            key = f"{meta['namespace']}/{meta['name']}/{meta['uid']}"
            seen.add(key)
            run = self.runs.setdefault(key, Run(meta["namespace"], meta["name"], meta["uid"]))
            try:
                self._reconcile(job, run)
            except ApiException as exc:
                log.warning("%s: API error %s", key, exc.status)
        for key in list(self.runs):
            if key not in seen:  # deleted: its pods go with it
                self._kill(self.runs.pop(key))
                log.info("%s deleted: processes stopped", key)

    def _reconcile(self, job: dict, run: Run) -> None:
        if run.finished:
            return
        status = job.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Succeeded" in conds or "Failed" in conds:
            run.finished = True
            return
        name = job["metadata"]["name"]
        policy = job["spec"].get("runPolicy") or {}
        if "Created" not in {c["type"] for c in status.get("conditions") or []}:
            self._set_status(job, "Created", "Created", f"PyTorchJob {name} is created.")
        if policy.get("suspend"):
            if run.procs or "Suspended" not in conds:
                self._kill(run)
                run.started_at = None
                self._set_status(job, "Suspended", "Suspended", f"PyTorchJob {name} is suspended.", replicaStatuses={})
            return
        deadline = policy.get("activeDeadlineSeconds")
        if deadline and run.started_at and time.monotonic() - run.started_at > deadline:
            self._kill(run)
            run.finished = True
            self._set_status(job, "Failed", "Failed",
                             f"Job {name} has failed because it was active longer than specified deadline",
                             completionTime=now())
            return
        if not run.procs:
            if time.monotonic() >= run.next_start and self._free_slot() and not self._missing_claims(job, run):
                self._start(job, run)
            return
        codes = [p.poll() for p in run.procs]
        if any(c not in (None, 0) for c in codes):
            failed = next(c for c in codes if c not in (None, 0))
            exit_code = 128 - failed if failed < 0 else failed  # a signal as a container runtime reports it
            self._kill(run)
            if self._restart_policy(job) == "ExitCode" and exit_code not in RETRYABLE_EXIT_CODES:
                # The training-operator's ExitCode policy: a permanent failure is not restarted.
                run.finished = True
                self._set_status(job, "Failed", "PyTorchJobFailed",
                                 f"PyTorchJob {name} is failed because 1 Master replica(s) failed.",
                                 completionTime=now(), replicaStatuses={"Master": {"failed": 1}})
                log.info("%s/%s: exit code %d is permanent under ExitCode: not restarted", run.namespace, name,
                         exit_code)
                return
            run.restarts += 1
            if run.restarts > int(policy.get("backoffLimit", 6)):
                run.finished = True
                self._set_status(job, "Failed", "Failed",
                                 f"Job {name} has failed because it has reached the specified backoff limit",
                                 completionTime=now(), replicaStatuses={"Master": {"failed": 1}})
            else:
                run.next_start = time.monotonic() + min(2 ** run.restarts, 10)
                self._set_status(job, "Restarting", "Restarting",
                                 f"PyTorchJob {name} is restarting because {run.restarts} Master replica(s) failed.")
        elif all(c == 0 for c in codes):
            run.procs = []
            run.finished = True
            self._set_status(job, "Succeeded", "Succeeded", f"PyTorchJob {name} is successfully completed.",
                             completionTime=now(), replicaStatuses={"Master": {"succeeded": 1}})

    @staticmethod
    def _restart_policy(job: dict) -> str:
        return job["spec"]["pytorchReplicaSpecs"]["Master"].get("restartPolicy", "OnFailure")

    def _free_slot(self) -> bool:
        return not self.slots or sum(1 for r in self.runs.values() if r.procs) < self.slots

    def _missing_claims(self, job: dict, run: Run) -> tuple[str, ...]:
        """Claims the pods name that do not exist in the job's namespace: like the scheduler, wait for them."""
        namespace = job["metadata"]["namespace"]
        claims = sorted({v["persistentVolumeClaim"]["claimName"]
                         for replica in job["spec"]["pytorchReplicaSpecs"].values()
                         for v in replica["template"]["spec"].get("volumes") or [] if "persistentVolumeClaim" in v})
        missing = []
        for claim in claims:
            try:
                self.core.read_namespaced_persistent_volume_claim(claim, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                missing.append(claim)
        if tuple(missing) != run.waiting_for and missing:
            log.info("%s/%s waits for PersistentVolumeClaim %s in %s", namespace, job["metadata"]["name"],
                     ", ".join(missing), namespace)
        run.waiting_for = tuple(missing)
        return run.waiting_for

    def shutdown(self) -> None:
        for run in self.runs.values():
            self._kill(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workdir", type=Path, required=True, help="folder for pod files and logs")
    parser.add_argument("--pvc-root", type=Path, default=None, help="folder whose <namespace>/<claim> subfolders play the PVCs")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--slots", type=int, default=0, help="PyTorchJobs allowed to run at once (0: no limit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s executor %(message)s")
    config.load_kube_config(args.kubeconfig)
    pvc_root = args.pvc_root or args.workdir / "pvcs"
    executor = Executor(args.workdir, pvc_root, Path(sys.executable).parent, args.slots)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            try:
                executor.step()
            except Exception as exc:  # the API server may be restarting; keep going
                log.warning("step failed: %s", exc)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
