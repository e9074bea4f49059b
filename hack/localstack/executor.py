#!/usr/bin/env python3
"""Plays the part of a GPU cluster that cannot run here: the kubelet (no container runtime on this machine).

The real Kubeflow training-operator turns each PyTorchJob into Pods (labels `training.kubeflow.org/job-name`,
`training.kubeflow.org/replica-type`, `training.kubeflow.org/replica-index`) and a Service per replica, and
writes the PyTorchJob's status from the pods' status. This program runs each such Pod's `pytorch` container
as a local process (`torchrun` on CPU, gloo) with the container's command, args and env resolved as the
kubelet would (Secret keys by reference, volume paths mapped to local folders), and reports the pod's status
back: phase Running, then Succeeded or Failed with the container's exit code and terminated reason (what the
training-operator's ExitCode restart policy reads). A deleted Pod has its processes stopped.

Networking is loopback: every Service name resolves to 127.0.0.1, and each PyTorchJob gets a free port for
its master (MASTER_PORT / PET_MASTER_PORT) in place of the container port the training-operator names, as a
pod network would give each job its own address. Init containers (the training-operator's wait for the
master's DNS name) are taken as done.

Kubeflow Trainer v2 pods are run alike: Trainer turns a TrainJob into a JobSet of the same name, JobSet makes
batch Jobs (label `jobset.sigs.k8s.io/jobset-name`), kube-controller-manager's job controller makes their Pods,
and the executor runs each Pod's `node` container (the trainer container of Trainer's runtimes), with env set from
the pod's fields (PET_NODE_RANK from the job completion index) and the status written back for the job controller
(exit codes for a podFailurePolicy, the Job's backoffLimit). The torch runtime's master address (the first pod's
name under the JobSet's headless Service) is loopback, its port a free one per JobSet. Logs of these pods are
`<namespace>_<jobset>_<replicated job>-<job index>-<completion index>.log`.

A Video2WorldPool's worker pods (label `video2world.io/pool`, container `worker`, made by the Deployment and
ReplicaSet controllers) run the same way, with what a kubelet gives a long-running pod: the container restarted
in place when it exits (restartPolicy Always, restartCount counted), Ready only while its readiness probe (an
exec probe, its container paths mapped to the pod's folders) succeeds, and, when `automountServiceAccountToken`
is true, a real token of the pod's ServiceAccount from the TokenRequest API (bound to the pod) with the API
server's CA. A kubelet mounts those at /var/run/secrets/kubernetes.io/serviceaccount; a process here cannot
have that path, so the folder is named in V2W_SERVICEACCOUNT_DIR, which the runtime's in-cluster client reads
when it is set, and KUBERNETES_SERVICE_HOST/PORT name the local API server. Their logs are
`<namespace>_<pod>.log`.

A PersistentVolumeClaim is looked up in the pod's own namespace, as Kubernetes does: a pod waits (is not
started, stays Pending) until every claim it names exists there, and claim `<c>` of namespace `<ns>` is the
folder `<pvc-root>/<ns>/<c>`.

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
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

JOB_LABEL = "training.kubeflow.org/job-name"
TYPE_LABEL = "training.kubeflow.org/replica-type"
INDEX_LABEL = "training.kubeflow.org/replica-index"
CONTAINER = "pytorch"  # the container the training-operator reads the exit code of
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOBSET_CONTAINER = "node"  # the trainer container of Kubeflow Trainer v2's runtimes
POOL_LABEL = "video2world.io/pool"  # a pool's worker pods
WORKER_CONTAINER = "worker"
TOKEN_SECONDS = 24 * 3600
ADDRESS_VARS = ("MASTER_ADDR", "PET_MASTER_ADDR")
PORT_VARS = ("MASTER_PORT", "PET_MASTER_PORT")
log = logging.getLogger("executor")


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Owner:
    """What a pod belongs to: a PyTorchJob, a JobSet (Trainer v2 names it after its TrainJob), or a pool."""

    kind: str
    name: str

    @staticmethod
    def of(pod: Any) -> "Owner | None":
        labels = pod.metadata.labels or {}
        if JOB_LABEL in labels:
            return Owner("PyTorchJob", labels[JOB_LABEL])
        if JOBSET_LABEL in labels:
            return Owner("JobSet", labels[JOBSET_LABEL])
        if POOL_LABEL in labels:
            return Owner("Pool", labels[POOL_LABEL])
        return None


def _role(pod: Any, owner: Owner) -> str:
    """The pod's place in its job: `master-0`, `worker-1` (PyTorchJob), `node-0-1` (JobSet)."""
    labels, annotations = pod.metadata.labels or {}, pod.metadata.annotations or {}
    if owner.kind == "PyTorchJob":
        return f"{labels.get(TYPE_LABEL, 'master')}-{labels.get(INDEX_LABEL, '0')}"
    if owner.kind == "Pool":
        return pod.metadata.name
    index = annotations.get(COMPLETION_INDEX, labels.get(COMPLETION_INDEX, "0"))
    return f"{labels.get(REPLICATED_JOB_LABEL, 'job')}-{labels.get(JOB_INDEX_LABEL, '0')}-{index}"


def _container(pod: Any, owner: Owner) -> Any:
    """The container run: the one the job's controller reads the exit code of, else a pod's only container."""
    wanted = {"PyTorchJob": CONTAINER, "JobSet": JOBSET_CONTAINER, "Pool": WORKER_CONTAINER}[owner.kind]
    containers = pod.spec.containers
    return next((c for c in containers if c.name == wanted), containers[0] if len(containers) == 1 else None)


def _is_master(pod: Any, owner: Owner, container: Any) -> bool:
    """Whether the pod is the one its job's master address names (the others connect to it)."""
    if owner.kind == "PyTorchJob":
        return (pod.metadata.labels or {}).get(TYPE_LABEL) == "master"
    if owner.kind == "Pool":
        return False  # one pod per worker: no master address to share
    addresses = [v.value for v in container.env or [] if v.name in ADDRESS_VARS and v.value]
    # `<pod hostname>.<subdomain>`: the Indexed Job's pod hostname under the JobSet's headless Service.
    return bool(addresses) and addresses[0].split(".")[0] == (pod.spec.hostname or "")


def _field(pod: Any, path: str) -> str:
    """A downward-API field of the pod (env valueFrom.fieldRef), as the kubelet fills it in."""
    meta = pod.metadata
    for prefix, values in (("metadata.annotations", meta.annotations), ("metadata.labels", meta.labels)):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return (values or {}).get(path[len(prefix) + 2:-2], "")
    simple = {"metadata.name": meta.name, "metadata.namespace": meta.namespace, "metadata.uid": meta.uid,
              "spec.nodeName": pod.spec.node_name or "localhost", "spec.serviceAccountName": pod.spec.service_account_name,
              "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
    return simple.get(path) or ""


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own: not in its group)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


@dataclass
class PodRun:
    """One Pod as the executor runs it."""

    namespace: str
    name: str
    uid: str
    owner: Owner
    container: str
    proc: subprocess.Popen | None = None
    started: str = ""
    reported: bool = False  # its final status is written
    restarts: int = 0  # the container restarted in place (restartPolicy Always)
    ready: bool = False
    probe_at: float = 0.0  # monotonic time of the next readiness probe
    argv: list[str] | None = None
    env: dict[str, str] | None = None
    log: Path | None = None


class Executor:
    def __init__(self, workdir: Path, pvc_root: Path, python_bin: Path | None = None, slots: int = 0):
        self.workdir = workdir
        # How many pods may run at once (0: no limit), like a cluster with that many GPU nodes: the others stay
        # Pending, as they would for want of GPUs.
        self.slots = slots
        self.pvc_root = pvc_root
        self.python_bin = python_bin
        self.core = client.CoreV1Api()
        self.runs: dict[str, PodRun] = {}  # by pod uid
        self.starts: Counter[tuple[str, str]] = Counter()  # (namespace, pod name): a recreated pod is a restart
        self.ports: dict[tuple[str, Owner], int] = {}  # (namespace, PyTorchJob or JobSet): its master's port
        self.masters: dict[tuple[str, Owner], str] = {}  # (namespace, PyTorchJob or JobSet): its master pod's uid
        self.waiting: dict[str, tuple[str, ...]] = {}  # pod uid: claims it waits for

    # -- volumes and environment, as the kubelet resolves them ----------------------------------------------
    def _volume_dirs(self, pod: Any) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        base = self.workdir / "pods" / pod.metadata.namespace / pod.metadata.name
        for volume in pod.spec.volumes or []:
            if volume.persistent_volume_claim is not None:
                # A claim reference has no namespace: it is always the pod's own.
                dirs[volume.name] = self.pvc_root / pod.metadata.namespace / volume.persistent_volume_claim.claim_name
            elif volume.host_path is not None:
                # Every pod runs on the one node this executor plays: its directories are shared by all jobs.
                dirs[volume.name] = self.workdir / "node" / volume.host_path.path.lstrip("/")
            else:
                dirs[volume.name] = base / volume.name
            dirs[volume.name].mkdir(parents=True, exist_ok=True)
        return dirs

    def _env(self, pod: Any, container: Any, owner: Owner) -> dict[str, str]:
        namespace = pod.metadata.namespace
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
        mounts = {m.mount_path: m.name for m in container.volume_mounts or []}
        dirs = self._volume_dirs(pod)
        for var in container.env or []:
            if var.value_from is not None and var.value_from.secret_key_ref is not None:
                ref = var.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, namespace)
                env[var.name] = base64.b64decode((secret.data or {})[ref.key]).decode()
            elif var.value_from is not None and var.value_from.field_ref is not None:
                env[var.name] = _field(pod, var.value_from.field_ref.field_path)
            elif var.value_from is None:
                env[var.name] = self._local_path(var.value or "", mounts, dirs)
        for name in ADDRESS_VARS:
            if name in env:
                env[name] = "127.0.0.1"  # the master's Service name, on the pod network that loopback plays
        for name in PORT_VARS:
            if name in env:
                env[name] = str(self.ports[(namespace, owner)])
        if pod.spec.automount_service_account_token:
            env.update(self._service_account(pod))
        env.setdefault("OMP_NUM_THREADS", "1")  # the node's few CPU cores are shared by every pod
        Path(env.get("HOME", str(self.workdir))).mkdir(parents=True, exist_ok=True)
        if self.python_bin:
            env["PATH"] = f"{self.python_bin}:{env.get('PATH', '')}"
        return env

    def _service_account(self, pod: Any) -> dict[str, str]:
        """A token of the pod's ServiceAccount, bound to the pod (TokenRequest), with the API server's CA and the
        namespace, in the pod's folder; the env that points the in-cluster client at them and at the API server."""
        meta = pod.metadata
        folder = self.workdir / "pods" / meta.namespace / meta.name / "serviceaccount"
        folder.mkdir(parents=True, exist_ok=True)
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": TOKEN_SECONDS,
                            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta.name, "uid": meta.uid}}}
        answer = self.core.create_namespaced_service_account_token(pod.spec.service_account_name or "default",
                                                                   meta.namespace, request)
        (folder / "token").write_text(answer.status.token)
        api = client.Configuration.get_default_copy()
        (folder / "ca.crt").write_bytes(Path(api.ssl_ca_cert).read_bytes())
        (folder / "namespace").write_text(meta.namespace)
        server = urllib.parse.urlsplit(api.host)
        return {"V2W_SERVICEACCOUNT_DIR": str(folder), "KUBERNETES_SERVICE_HOST": server.hostname,
                "KUBERNETES_SERVICE_PORT": str(server.port or 443)}

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

    # -- pod lifecycle ------------------------------------------------------------------------------------------
    def _start(self, pod: Any, owner: Owner, container: Any) -> PodRun:
        meta = pod.metadata
        key = (meta.namespace, owner)
        master = _is_master(pod, owner, container)
        if key not in self.ports or (master and self.masters.get(key, meta.uid) != meta.uid):
            # A restarted master listens on a fresh port; its workers, started after it, are given the same.
            # (A worker seen before its master's first start gives the job its port.)
            self.ports[key] = free_port()
        if master:
            self.masters[key] = meta.uid
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        name = f"{meta.namespace}_{meta.name}.log" if owner.kind == "Pool" else \
            f"{meta.namespace}_{owner.name}_{_role(pod, owner)}.log"
        run = PodRun(meta.namespace, meta.name, meta.uid, owner, container.name, log=logs / name)
        run.env = self._env(pod, container, owner)
        run.argv = list(container.command or []) + list(container.args or [])
        # Without a readiness probe a running container is ready, as the kubelet has it.
        run.ready = container.readiness_probe is None
        self._spawn(pod, run)
        log.info("pod %s/%s (%s %s/%s) started: pid %d", meta.namespace, meta.name, owner.kind, meta.namespace,
                 owner.name, run.proc.pid)
        return run

    def _spawn(self, pod: Any, run: PodRun) -> None:
        key = (run.namespace, run.name)
        restarts = self.starts[key]
        self.starts[key] += 1
        run.started = now()
        with run.log.open("ab") as handle:
            handle.write(f"--- start (restart {restarts}) {now()} pod {run.name} {run.uid}\n".encode())
            handle.flush()
            run.proc = subprocess.Popen(run.argv, env=run.env, stdout=handle, stderr=subprocess.STDOUT,
                                        cwd=run.env.get("HOME"), start_new_session=True)
        self._report(pod, run, {"phase": "Running", "startTime": run.started, "containerStatuses": [
            self._container_status(pod, run, {"running": {"startedAt": run.started}})]})

    @staticmethod
    def _container(pod: Any, run: PodRun) -> Any:
        return next(c for c in pod.spec.containers if c.name == run.container)

    def _container_status(self, pod: Any, run: PodRun, state: dict) -> dict:
        container = self._container(pod, run)
        running = "running" in state
        return {"name": run.container, "image": container.image or "", "imageID": "", "restartCount": run.restarts,
                "ready": running and run.ready, "started": running, "state": state}

    def _report(self, pod: Any, run: PodRun, status: dict) -> None:
        ready = "True" if status["phase"] == "Running" and run.ready else "False"
        status["conditions"] = [{"type": t, "status": ready if t in ("Ready", "ContainersReady") else "True",
                                 "lastTransitionTime": now()} for t in ("PodScheduled", "Initialized", "Ready", "ContainersReady")]
        try:
            self.core.patch_namespaced_pod_status(run.name, run.namespace, {"metadata": {"uid": run.uid}, "status": status},
                                                 _content_type="application/strategic-merge-patch+json")
        except ApiException as exc:
            if exc.status not in (404, 409):  # deleted, or replaced by a pod of the same name
                raise

    def _finish(self, pod: Any, run: PodRun, code: int) -> None:
        exit_code = 128 - code if code < 0 else code  # a signal, as a container runtime reports it
        state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                "startedAt": run.started, "finishedAt": now()}}
        self._report(pod, run, {"phase": "Succeeded" if exit_code == 0 else "Failed",
                                "containerStatuses": [self._container_status(pod, run, state)]})
        run.reported = True
        log.info("pod %s/%s (%s %s/%s) exited with %d", run.namespace, run.name, run.owner.kind, run.namespace,
                 run.owner.name, exit_code)

    def _restart(self, pod: Any, run: PodRun) -> None:
        """restartPolicy Always: the container starts again in the same pod (restartCount + 1), not ready."""
        code = run.proc.returncode
        run.restarts += 1
        run.ready = self._container(pod, run).readiness_probe is None
        run.probe_at = 0.0
        log.info("pod %s/%s (%s %s/%s) exited with %d: restarting its container (restart %d)", run.namespace,
                 run.name, run.owner.kind, run.namespace, run.owner.name, 128 - code if code < 0 else code,
                 run.restarts)
        self._spawn(pod, run)

    def _probe(self, pod: Any, run: PodRun) -> None:
        """The container's exec readiness probe, its container paths mapped to the pod's folders."""
        probe = self._container(pod, run).readiness_probe
        if probe is None or probe._exec is None or time.monotonic() < run.probe_at:
            return
        run.probe_at = time.monotonic() + max(0.5, float(probe.period_seconds or 10))
        container = self._container(pod, run)
        mounts = {m.mount_path: m.name for m in container.volume_mounts or []}
        dirs = self._volume_dirs(pod)
        argv = [self._local_path(arg, mounts, dirs) for arg in probe._exec.command or []]
        try:
            ok = subprocess.run(argv, env=run.env, cwd=run.env.get("HOME"), capture_output=True,
                                timeout=float(probe.timeout_seconds or 1)).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok != run.ready:
            run.ready = ok
            log.info("pod %s/%s (%s %s/%s) %s", run.namespace, run.name, run.owner.kind, run.namespace,
                     run.owner.name, "ready" if ok else "not ready")
            self._report(pod, run, {"phase": "Running", "containerStatuses": [
                self._container_status(pod, run, {"running": {"startedAt": run.started}})]})

    @staticmethod
    def _kill(run: PodRun) -> None:
        proc = run.proc
        if proc is None:
            return
        if proc.poll() is None:
            below = descendants(proc.pid)  # the container's every process, as its cgroup holds them
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)  # the pod's grace period, shortened
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for pid in below:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        else:
            try:  # what the container left behind (torchrun's workers) goes with it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def step(self) -> None:
        pods = [p for p in self.core.list_pod_for_all_namespaces().items if Owner.of(p) and _container(p, Owner.of(p))]
        # Masters first: their workers are given the port the master was just given.
        pods.sort(key=lambda p: (not _is_master(p, Owner.of(p), _container(p, Owner.of(p))), p.metadata.name))
        seen = {pod.metadata.uid for pod in pods}
        for uid in list(self.runs):
            if uid not in seen:  # deleted (suspended, restarted, its PyTorchJob gone): its processes go with it
                run = self.runs.pop(uid)
                self._kill(run)
                log.info("%s/%s deleted: processes stopped (%s %s/%s)", run.namespace, run.name,
                         run.owner.kind, run.namespace, run.owner.name)
        self.waiting = {uid: claims for uid, claims in self.waiting.items() if uid in seen}
        for pod in pods:
            uid = pod.metadata.uid
            run = self.runs.get(uid)
            try:
                if run is None:
                    if pod.metadata.deletion_timestamp or (pod.status and pod.status.phase in ("Succeeded", "Failed")):
                        continue
                    if self._free_slot() and not self._missing_claims(pod):
                        owner = Owner.of(pod)
                        self.runs[uid] = self._start(pod, owner, _container(pod, owner))
                elif pod.metadata.deletion_timestamp and run.proc is not None and run.proc.poll() is None:
                    # Deleted but kept by a finalizer (the job controller's): stopped, as the kubelet would.
                    self._kill(run)
                    log.info("%s/%s deleting: processes stopped (%s %s/%s)", run.namespace, run.name,
                             run.owner.kind, run.namespace, run.owner.name)
                elif not run.reported and run.proc is not None and run.proc.poll() is not None:
                    if pod.spec.restart_policy == "Always" and not pod.metadata.deletion_timestamp:
                        self._restart(pod, run)
                    else:
                        self._finish(pod, run, run.proc.returncode)
                elif not run.reported and run.proc is not None:
                    self._probe(pod, run)
            except ApiException as exc:
                log.warning("pod %s/%s: API error %s", pod.metadata.namespace, pod.metadata.name, exc.status)

    def _free_slot(self) -> bool:
        running = sum(1 for r in self.runs.values() if r.proc is not None and r.proc.poll() is None)
        return not self.slots or running < self.slots

    def _missing_claims(self, pod: Any) -> tuple[str, ...]:
        """Claims the pod names that do not exist in its namespace: like the scheduler, wait for them."""
        namespace = pod.metadata.namespace
        claims = sorted({v.persistent_volume_claim.claim_name for v in pod.spec.volumes or []
                         if v.persistent_volume_claim is not None})
        missing = []
        for claim in claims:
            try:
                self.core.read_namespaced_persistent_volume_claim(claim, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                missing.append(claim)
        if missing and tuple(missing) != self.waiting.get(pod.metadata.uid):
            log.info("pod %s/%s waits for PersistentVolumeClaim %s in %s", namespace, pod.metadata.name,
                     ", ".join(missing), namespace)
        self.waiting[pod.metadata.uid] = tuple(missing)
        return tuple(missing)

    def shutdown(self) -> None:
        for run in self.runs.values():
            self._kill(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workdir", type=Path, required=True, help="folder for pod files and logs")
    parser.add_argument("--pvc-root", type=Path, default=None, help="folder whose <namespace>/<claim> subfolders play the PVCs")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--slots", type=int, default=0, help="pods allowed to run at once (0: no limit)")
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
