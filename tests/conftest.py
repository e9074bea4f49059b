"""Fixtures shared by every test layer: the real local stack (MinIO, kube-apiserver + etcd)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "localstack"))
sys.path.insert(0, str(ROOT))

import stack  # noqa: E402  (hack/localstack/stack.py)

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def localstack_bin() -> Path:
    """The cached binaries (built by hack/localstack/build.sh on first use)."""
    return stack.build_binaries()


@pytest.fixture(scope="session")
def minio(localstack_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real MinIO server on loopback for the whole session."""
    server = stack.MinioServer(localstack_bin, tmp_path_factory.mktemp("minio")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kube(localstack_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real control plane: etcd + kube-apiserver (RBAC) + kube-controller-manager (garbage collection)."""
    plane = stack.ControlPlane(localstack_bin, tmp_path_factory.mktemp("kube")).start()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def stack_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's folder for the stack's servers: the executor's pod files and logs (`executor/`), the
    folders that play PersistentVolumeClaims (`pvcs/`), and the e2e stack's own files."""
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def pod_executor(kube, stack_workdir: Path):
    """The executor (the kubelet's stand-in) for the whole session: it runs every pod of the PyTorchJobs and of
    the JobSets (Trainer v2) on the stack, so there is only ever one. Logs in `stack_workdir/executor/logs`."""
    server = stack.start_executor(kube, stack_workdir / "executor", stack_workdir / "pvcs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trainer_v2(kube, stack_workdir: Path):
    """Kubeflow Trainer v2 and JobSet (CRDs, webhooks, managers) on the stack, from the first test that asks for
    them to the end of the session; nothing else starts them. Pods need `pod_executor` too. No runtime is
    installed: see `stack.torch_runtime` for a ClusterTrainingRuntime the executor runs."""
    managers = stack.start_trainer_v2(kube, stack_workdir / "trainer-v2")
    yield managers
    stack.stop_trainer_v2(kube, managers)


@pytest.fixture(scope="session")
def crds_applied(kube):
    """Our CRDs, applied from crds/ and established."""
    kube.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    from v2w_api import ALL_KINDS

    for names, _ in ALL_KINDS.values():
        stack.wait_established(kube, names.crd_name)
    return kube


@pytest.fixture
def s3_env(minio, monkeypatch):
    """The MinIO server's AWS_* settings in this process's environment, with the runtime's S3 client made
    afresh from them (and again afterwards, so no later test inherits it)."""
    from v2w_runtime import storage

    for name, value in minio.env().items():
        monkeypatch.setenv(name, value)
    storage.reset_client()
    yield minio
    storage.reset_client()


@pytest.fixture
def staging_dir(tmp_path, monkeypatch) -> Path:
    """An empty folder the runtime stages an S3 output's files in (V2W_STAGING_DIR)."""
    folder = tmp_path / "staging"
    folder.mkdir()
    monkeypatch.setenv("V2W_STAGING_DIR", str(folder))
    return folder
