"""Whether a pool can run a job: the PoolMismatch check, pure.

A worker loaded its models once, for its pool's settings, and holds the pool's S3 credentials: a job can go to it
only when the run it asks for differs in nothing the worker fixed at load time (`v2w_api.worker.mismatches`, the
same check the worker repeats before it runs a claimed job) and it writes with the same credentials Secret,
endpoint and region as the pool (a worker never reads a job's own Secret).
"""

from __future__ import annotations

from v2w_api.pool import Video2WorldPoolSpec
from v2w_api.run import RunConfig
from v2w_api.spec import JobSpecCommon, SecretKeyRef
from v2w_api.worker import describe_mismatches, mismatches

from . import workers
from .backends import child
from .config import OperatorConfig


def _secret(ref: SecretKeyRef | None, config: OperatorConfig) -> tuple[str, str, str] | None:
    if ref is not None:
        return ref.name, ref.access_key_id_key, ref.secret_access_key_key
    if config.credentials_secret:
        return config.credentials_secret, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
    return None


def differences(pool_name: str, pool: Video2WorldPoolSpec, spec: JobSpecCommon, run: RunConfig,
                config: OperatorConfig) -> list[str]:
    """The job's fields, in API spelling, that keep the pool from running it (empty: it can)."""
    fields = mismatches(workers.worker_config(pool_name, pool, config), run)
    if _secret(spec.output.credentials_secret, config) != _secret(pool.output.credentials_secret, config):
        fields.append("output.credentialsSecret")
    if (spec.output.endpoint or config.s3_endpoint) != (pool.output.endpoint or config.s3_endpoint):
        fields.append("output.endpoint")
    if (spec.output.region or config.s3_region) != (pool.output.region or config.s3_region):
        fields.append("output.region")
    image = spec.scheduling.image
    if image is not None and image != (pool.scheduling.image or config.runtime_image):
        fields.append("scheduling.image")
    unmounted = sorted(child.volume_claims(spec, config) - workers.volume_claims(pool, config))
    if unmounted:
        # pvc:// URIs are read from the pod's mounts: the workers mount the pool's claims only.
        fields.append(f"PersistentVolumeClaims {', '.join(unmounted)} (the pool's workers do not mount them)")
    gpu = spec.scheduling.gpu_resource_name
    if gpu is not None and gpu != (pool.scheduling.gpu_resource_name or config.gpu_resource_name):
        fields.append("scheduling.gpuResourceName")
    return fields


def refusal(pool_name: str, fields: list[str]) -> str:
    """The PoolMismatch message: each field, and what to do."""
    message = describe_mismatches(pool_name, fields)
    if any(f.startswith("output.") for f in fields):
        message += ("; a pool's workers write with the pool's S3 credentials Secret, endpoint and region only, so a "
                    "job must name the same")
    return message + "; change the job to the pool's settings, use another pool, or drop spec.poolRef"
