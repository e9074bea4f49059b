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
def crds_applied(kube):
    """Our CRDs, applied from crds/ and established."""
    kube.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for name in ("video2worldjobs.video2world.io", "bestofnjobs.video2world.io"):
        stack.wait_established(kube, name)
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
