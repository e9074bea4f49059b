"""Fixtures of the pool worker tests: a real API server, a namespace with a worker's ServiceAccount that may
only get, list, watch and update Leases there (the pool worker's role), and Leases made as the operator makes
them for pooled jobs."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import stack  # hack/localstack/stack.py (on sys.path via tests/conftest.py)
from v2w_api.lease import ANNOTATION_RUN_ARGS, LABEL_POOL

from .jobs import Models

WORKER_RULES = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "verbs": ["get", "list", "watch", "update", "patch"]}]


@dataclass
class PoolNamespace:
    kube: stack.ControlPlane
    namespace: str
    pool: str
    service_account: str
    kubeconfig: Path  # the worker's: its ServiceAccount's token
    admin: object  # CoordinationV1Api as cluster admin (the operator's part in these tests)

    def worker_api(self):
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    def token_dir(self, folder: Path) -> Path:
        """The worker's service-account folder as a pod would have it mounted (token, ca.crt, namespace)."""
        folder.mkdir(parents=True, exist_ok=True)
        token = self.kube.kubectl("create", "token", self.service_account, "-n", self.namespace,
                                  "--duration=2h").stdout.strip()
        (folder / "token").write_text(token)
        (folder / "ca.crt").write_bytes((self.kube.pki / "ca.crt").read_bytes())
        (folder / "namespace").write_text(self.namespace)
        return folder

    def create_lease(self, name: str, run_args: list[str], duration: int = 20, pool: str | None = None) -> dict:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "labels": {LABEL_POOL: pool or self.pool,
                                                      "video2world.io/job-name": name.removeprefix("v2w-"),
                                                      "video2world.io/job-kind": "Video2WorldJob"},
                             "annotations": {ANNOTATION_RUN_ARGS: json.dumps(run_args)}},
                "spec": {"leaseDurationSeconds": duration}}
        response = self.admin.create_namespaced_lease(self.namespace, body, _preload_content=False)
        return json.loads(response.data)

    def lease(self, name: str) -> dict | None:
        out = self.kube.kubectl("get", "lease", name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def annotate(self, name: str, **notes: str) -> None:
        self.kube.kubectl("annotate", "--overwrite", "lease", name, "-n", self.namespace,
                          *[f"video2world.io/{k}={v}" for k, v in notes.items()])

    def delete_lease(self, name: str) -> None:
        self.kube.kubectl("delete", "lease", name, "-n", self.namespace, "--wait=false")


@pytest.fixture
def pool_ns(kube, tmp_path) -> PoolNamespace:
    from kubernetes import client, config

    namespace, pool = f"pool-{uuid.uuid4().hex[:6]}", "small"
    sa = f"v2wpool-{pool}"
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "pool-worker", "namespace": namespace}, "rules": WORKER_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": sa, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pool-worker"},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]},
    ]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    kubeconfig = stack.service_account_kubeconfig(kube, namespace, sa, tmp_path / "worker.kubeconfig")
    admin = client.CoordinationV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    yield PoolNamespace(kube, namespace, pool, sa, kubeconfig, admin)
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def models(minio, tmp_path_factory) -> Models:
    from v2w_runtime.tiny import write_checkpoint

    bucket = minio.make_bucket("pool")
    s3 = minio.client()
    checkpoint = stack.upload_tree(s3, write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0), bucket,
                                   "models/video2world")
    s3.put_object(Bucket=bucket, Key="inputs/in.jpg", Body=stack.sample_image(1, (96, 64)))
    return Models(bucket, checkpoint, f"s3://{bucket}/inputs/in.jpg")
