"""Small readers of job objects and S3 URIs shared by the end-to-end tests."""

from __future__ import annotations

from v2w_api import ResultManifest

# The tiny-model jobs run without the refiner and the guardrail unless a test is about them.
DISABLED = {"promptRefiner": {"enabled": False}, "guardrail": {"enabled": False}}


def phase_is(*phases):
    return lambda obj: (obj.get("status") or {}).get("phase") in phases


def condition(obj, type_):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def s3_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def read_result(e2e, obj) -> ResultManifest:
    bucket, key = s3_key(obj["status"]["resultUri"])
    return ResultManifest.model_validate_json(e2e.minio.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def make_claim(e2e, namespace: str, name: str) -> None:
    """A PersistentVolumeClaim (the executor plays it with the folder <pvc-root>/<namespace>/<name>)."""
    import yaml

    e2e.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
        "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}}}))
