"""What the pool worker tests share: where the tiny models are in MinIO, the run arguments the operator renders
for a pooled job, and waits on Leases and on the job's files."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from v2w_api.lease import LeaseState
from v2w_api.spec import Video2WorldJobSpec
from v2w_operator.backends import child
from v2w_operator.config import OperatorConfig

EXTRA = ["--height", "64", "--width", "96", "--num_frames", "9", "--device", "cpu"]
DURATION = 4  # seconds a claim lasts without renewal (the operator's is 20: kept short for the takeover)


@dataclass
class Models:
    bucket: str
    checkpoint: str
    input: str


def run_args(models: Models, namespace: str, name: str, batch: int = 0, s3=None, **spec) -> list[str]:
    """The run arguments the operator renders for a pooled job (its real code); with `batch`, an inline batch of
    that many entries, stored beside the results as the operator stores it."""
    doc = {"output": {"uri": f"s3://{models.bucket}/results"},
           "generation": {"resolution": 480, "numSteps": 2, "guidance": 3.0},
           "guardrail": {"enabled": False}, "promptRefiner": {"enabled": False}}
    if batch:
        doc["batch"] = [{"input": models.input, "prompt": f"{name} {i}", "output": f"v{i}"} for i in range(batch)]
    else:
        doc["input"] = {"uri": models.input, "prompt": f"job {name}"}
    for key, value in spec.items():
        doc[key] = {**doc.get(key, {}), **value}
    job = Video2WorldJobSpec.model_validate(doc)
    config = OperatorConfig(checkpoint_2b=models.checkpoint, runtime_extra_args=EXTRA)
    prefix = child.output_prefix(job, namespace, name)
    batch_uri = None
    if batch:
        key = f"results/{namespace}/{name}/batch.json"
        s3.put_object(Bucket=models.bucket, Key=key, Body=json.dumps(child.batch_json(job)).encode())
        batch_uri = f"s3://{models.bucket}/{key}"
    run = child.run_config("Video2WorldJob", name, job, config, prefix, batch_uri)
    return child.runtime_args("Video2WorldJob", run, config)


def wait_lease(pool_ns, name: str, predicate, what: str, timeout: float = 120, worker=None) -> LeaseState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lease = pool_ns.lease(name)
        if lease is not None and predicate(LeaseState.of(lease)):
            return LeaseState.of(lease)
        time.sleep(0.2)
    raise AssertionError(f"lease {name}: {what} not reached; {pool_ns.lease(name)}\n{worker.tail() if worker else ''}")


def s3_json(minio, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(minio.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    except minio.client().exceptions.NoSuchKey:
        return None


def wait_sampling(minio, models, namespace: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = s3_json(minio, models.bucket, f"results/{namespace}/{name}/progress.json")
        if progress and progress.get("stage") == "sampling" and progress.get("step", 0) >= 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never sampled")
