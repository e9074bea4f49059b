"""The end-to-end stack: real kube-apiserver + etcd + kube-controller-manager, MinIO, the published
PyTorchJob CRD with the real Kubeflow training-operator (its PyTorchJob controller and validating webhook),
the executor (the kubelet's stand-in: runs the pods as processes) and the operator run with `kopf run` under
its own ServiceAccount with the Helm chart's RBAC."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import stack  # hack/localstack/stack.py (on sys.path via tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "video2world-operator"
OPERATOR_NS = "v2w-system"
OPERATOR_SA = "v2w-operator"
# The runtime's debug knobs make a CPU video take seconds: 9 frames of 64x96 with the tiny models.
RUNTIME_DEBUG_ARGS = "--height 64 --width 96 --num_frames 9 --device cpu"


BACKENDS = ("pytorchjob", "trainjob")
TRAINJOB_RUNTIME = "v2w-e2e"  # the ClusterTrainingRuntime of the trainjob operator (trainjob.runtime of its settings)


@dataclass
class Stack:
    kube: stack.ControlPlane
    minio: stack.MinioServer
    bucket: str
    models: dict[str, str]
    operator: stack.Server
    executor: stack.Server
    training_operator: stack.Server
    operator_env: dict[str, str]  # the operator's settings, whatever its backend (a test may change them)
    operator_kubeconfig: Path
    workdir: Path
    backend: str = "pytorchjob"  # what the running operator makes: one operator at a time on the shared stack
    identities: dict[str, Path] = field(default_factory=dict)  # a kubeconfig per backend, under its chart RBAC

    def backend_env(self, backend: str) -> dict[str, str]:
        env = {**self.operator_env, "V2W_BACKEND": backend}
        if backend == "trainjob":
            env["V2W_TRAINING_RUNTIME_NAME"] = TRAINJOB_RUNTIME
        return env

    def use_backend(self, backend: str) -> None:
        """Runs the operator with `backend`, under the chart's RBAC for that backend (a ServiceAccount each), and
        for TrainJob with the ClusterTrainingRuntime the chart would install; nothing when it already runs so."""
        if backend == self.backend:
            return
        self.identities.setdefault("pytorchjob", self.operator_kubeconfig)
        if backend not in self.identities:
            self.identities[backend] = stack.install_operator_identity(
                self.kube, CHART, OPERATOR_NS, f"{OPERATOR_SA}-{backend}", self.workdir / f"operator-{backend}.kubeconfig",
                release=f"v2w-{backend}", values={"backend": backend})
        if backend == "trainjob":
            from v2w_operator.backends import trainjob
            from v2w_operator.config import OperatorConfig

            runtime = trainjob.runtime(OperatorConfig.from_env(self.backend_env(backend)))
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(runtime))
        self.operator.stop(sig=15)
        self.backend, self.operator_kubeconfig = backend, self.identities[backend]
        self.operator = stack.start_operator(self.operator_kubeconfig, self.backend_env(backend), self.operator.log)

    def child(self, namespace: str, name: str) -> dict | None:
        """The job's child, of the running operator's kind."""
        return self.get(namespace, self.backend, name)

    def kubectl(self, *args: str, **kw):
        return self.kube.kubectl(*args, **kw)

    def namespace(self) -> str:
        """A fresh namespace with the S3 credentials Secret the example jobs name."""
        name = f"e2e-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        self.secret(name)
        return name

    def secret(self, namespace: str, name: str = "v2w-s3") -> None:
        self.kubectl("create", "secret", "generic", name, "-n", namespace,
                     f"--from-literal=AWS_ACCESS_KEY_ID={self.minio.access_key}",
                     f"--from-literal=AWS_SECRET_ACCESS_KEY={self.minio.secret_key}")

    def apply(self, namespace: str, doc: dict) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))

    def get(self, namespace: str, kind: str, name: str) -> dict | None:
        out = self.kubectl("get", "-n", namespace, kind, name, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def wait_for(self, namespace: str, kind: str, name: str, predicate, timeout: float = 240, what: str = ""):
        deadline = time.monotonic() + timeout
        seen = []
        obj = None
        while time.monotonic() < deadline:
            obj = self.get(namespace, kind, name)
            status = (obj or {}).get("status") or {}
            if status.get("phase") and (not seen or seen[-1] != status["phase"]):
                seen.append(status["phase"])
            if obj is not None and predicate(obj):
                return obj, seen
            time.sleep(0.5)
        raise AssertionError(f"{kind}/{name}: {what} not reached in {timeout}s; phases {seen}; status "
                             f"{json.dumps((obj or {}).get('status'), indent=1)[:3000]}\n"
                             f"operator log:\n{self.operator.log_tail(30)}\nexecutor log:\n{self.executor.log_tail(15)}\n"
                             f"training-operator log:\n{self.training_operator.log_tail(15)}")

    def job(self, kind: str, name: str, spec: dict) -> dict:
        base = {"output": {"uri": f"s3://{self.bucket}/results", "credentialsSecret": {"name": "v2w-s3"}},
                "generation": {"numSteps": 2, "guidance": 3.0}}
        for key, value in spec.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) and key in base else value
        return {"apiVersion": "video2world.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": base}

    def restart_operator(self, kill_signal: int = 9) -> None:
        self.operator.stop(sig=kill_signal)
        self.operator = stack.start_operator(self.operator_kubeconfig, self.backend_env(self.backend),
                                             self.operator.log)


@pytest.fixture(scope="session")
def e2e(kube, minio, stack_workdir, pod_executor) -> Stack:
    workdir = stack_workdir
    stack.install_crds(kube, ROOT)
    bucket = minio.make_bucket("e2e")
    client = minio.client()

    models_dir = workdir / "models"
    subprocess.run([sys.executable, "-m", "v2w_runtime.tiny", "--out", str(models_dir / "video2world")], check=True,
                   capture_output=True)
    from v2w_runtime.tiny.critic import write_tiny_critic

    write_tiny_critic(models_dir / "reason1")  # a tiny Cosmos-Reason1 that answers: the critic really ranks
    models = {name: stack.upload_tree(client, models_dir / name, bucket, f"models/{name}")
              for name in ("video2world", "reason1")}
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"inputs/input{i}.jpg", Body=stack.sample_image(i, (96, 64)))

    kubeconfig = stack.install_operator_identity(kube, CHART, OPERATOR_NS, OPERATOR_SA, workdir / "operator.kubeconfig")

    training_operator = stack.start_training_operator(kube, workdir / "training-operator")
    executor = pod_executor
    env = {
        "V2W_POLL_INTERVAL_SECONDS": "1",
        "V2W_METRICS_PORT": str(stack.free_port()),
        "V2W_CHECKPOINT_2B": models["video2world"],
        "V2W_REFINER_CHECKPOINT": models["reason1"],
        "V2W_S3_ENDPOINT": minio.endpoint,
        "V2W_S3_REGION": minio.region,
        "V2W_RUNTIME_EXTRA_ARGS": RUNTIME_DEBUG_ARGS,
        # The chart's worker role (release v2w), which each pool's RoleBinding gives its workers.
        "V2W_POOL_WORKER_CLUSTER_ROLE": "v2w-video2world-operator-pool-worker",
        # Presigned links in the status, as a platform with a public S3 endpoint would set them.
        "V2W_LINKS_PUBLIC_ENDPOINT": minio.endpoint,
        "V2W_LINKS_TTL_SECONDS": "3600",
    }
    operator = stack.start_operator(kubeconfig, env, workdir / "logs" / "operator.log")
    s = Stack(kube, minio, bucket, models, operator, executor, training_operator, env, kubeconfig, workdir)
    yield s
    s.operator.stop()  # the one running now: a test may have restarted it
    training_operator.stop()


@pytest.fixture(autouse=True)
def _operator_backend(request: pytest.FixtureRequest):
    """The e2e operator runs the backend a test asks for (its `backend` parameter), else PyTorchJob's. Tests that
    share a backend run together (a module-scoped `backend`), so the stack switches operators rarely."""
    if "e2e" in request.fixturenames:
        backend = request.getfixturevalue("backend") if "backend" in request.fixturenames else "pytorchjob"
        if backend == "trainjob":
            request.getfixturevalue("trainer_v2")
        request.getfixturevalue("e2e").use_backend(backend)
    yield
