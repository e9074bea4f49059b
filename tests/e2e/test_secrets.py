"""Secrets stay secret, and batch output names stay inside the job's prefix, end to end.

The marker is the S3 secret access key itself: the `e2e` MinIO draws a random one per run, and the job's
credentials Secret holds it. After a job has run it must appear in no status, event, PyTorchJob, log
or object the job wrote. Failed jobs are searched too, with planted wrong credentials as further markers."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers import DISABLED, condition, phase_is, s3_key

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


def _objects(client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def _files_holding(root: Path, marker: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and marker in p.read_bytes()]


def test_the_s3_secret_appears_in_no_status_event_log_or_output(e2e):
    secret = e2e.minio.secret_key
    assert len(secret) >= 16  # random per run: nothing else can hold it by chance
    marker = secret.encode()
    ns = e2e.namespace()
    e2e.apply(ns, e2e.job("Video2WorldJob", "secret-check", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input1.jpg", "prompt": "Snow falls on a quiet street."},
        **DISABLED}))
    obj, _ = e2e.wait_for(ns, "v2wjob", "secret-check", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]

    seen = {
        "job": json.dumps(obj),
        "events": e2e.kubectl("get", "events", "-n", ns, "-o", "json").stdout,
        "pytorchjob": e2e.kubectl("get", "pytorchjobs.kubeflow.org", "-n", ns, "-o", "json").stdout,
        "pods": e2e.kubectl("get", "pods", "-n", ns, "-o", "json").stdout,  # the training-operator's
        "describe": e2e.kubectl("describe", "v2wjob", "-n", ns, "secret-check").stdout,
    }
    for where, text in seen.items():
        assert secret not in text, f"the S3 secret key appears in the {where}"
    # The PyTorchJob and its pods carry a reference to the Secret, never its value.
    assert "secretKeyRef" in seen["pytorchjob"] and "secretKeyRef" in seen["pods"]

    outputs = _objects(e2e.minio.client(), e2e.bucket, f"results/{ns}/secret-check/")
    names = {key.rsplit("/", 1)[-1] for key in outputs}
    assert {"secret-check.mp4", "result.json", "progress.json"} <= names, sorted(outputs)
    leaked = [key for key, body in outputs.items() if marker in body]
    assert not leaked, f"the S3 secret key appears in {leaked}"

    # Operator, executor and runtime (pod) logs of the whole session so far.
    logs = [p for p in e2e.workdir.rglob("*.log")]
    assert any("secret-check" in p.name for p in logs), [p.name for p in logs]
    assert _files_holding(e2e.workdir / "logs", marker) == []
    assert [p for p in logs if marker in p.read_bytes()] == []


def test_batch_file_output_names_never_leave_the_jobs_prefix(e2e):
    ns = e2e.namespace()
    tag = uuid.uuid4().hex[:8]
    client = e2e.minio.client()
    bad = [f"../{tag}-up.mp4", f"../../{tag}-up2.mp4", f"{tempfile.gettempdir()}/{tag}-abs.mp4", f"..\\{tag}-back.mp4",
           f"\u2024\u2024/{tag}-leader.mp4", f"\uff0e\uff0e/{tag}-fullwidth.mp4", f"s3://{e2e.bucket}/{tag}-uri.mp4",
           f"sub/../../{tag}-mid.mp4", f"{tag}-nul\x00.mp4"]
    entries = [{"input_video": f"s3://{e2e.bucket}/inputs/input2.jpg", "prompt": "A worker fills bottles.",
                "output_video": name} for name in [f"{tag}-ok", *bad]]
    client.put_object(Bucket=e2e.bucket, Key=f"batches/{tag}.json", Body=json.dumps(entries).encode())
    before_buckets = {b["Name"] for b in client.list_buckets()["Buckets"]}
    before = set(_objects(client, e2e.bucket))

    e2e.apply(ns, e2e.job("Video2WorldJob", "escape", {"batchUri": f"s3://{e2e.bucket}/batches/{tag}.json",
                                                       **DISABLED}))
    obj, _ = e2e.wait_for(ns, "v2wjob", "escape", phase_is("Succeeded", "Failed"), what="a final phase")

    prefix = f"results/{ns}/escape/"
    new = set(_objects(client, e2e.bucket)) - before
    assert new and all(key.startswith(prefix) for key in new), sorted(k for k in new if not k.startswith(prefix))
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == before_buckets
    written = {key[len(prefix):] for key in new}
    assert f"{tag}-ok.mp4" in written, sorted(written)
    # Names that stay inside once normalised (the Unicode look-alike dots are ordinary characters) may be
    # written, but only under the prefix; none of the climbing ones produced a video anywhere.
    videos = [k for k in written if k.endswith(".mp4")]
    for name in videos:
        assert ".." not in name.split("/") and not name.startswith("/"), name
    # `../x` from the local staging folder (a fresh temporary folder) would land in the temporary root.
    assert list(Path(tempfile.gettempdir()).glob(f"{tag}*")) == [], "a file was written outside the job"

    # Every refused entry is reported, naming its output.
    result_uri = obj["status"].get("resultUri")
    assert result_uri, obj["status"]
    bucket, key = s3_key(result_uri)
    result = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    failed = sorted(v["name"] for v in result["videos"] if v["status"] == "failed")
    # All but the two look-alike-dot names (ordinary sub-folders under the prefix) are refused.
    assert failed == [f"entry-{i}.mp4" for i in (1, 2, 3, 4, 7, 8, 9)], json.dumps(result["videos"], indent=1)[:3000]


def _leaks(e2e, namespaces: list[str], jobs: list[str], markers: dict[str, str]) -> list[str]:
    """Where any marker appears: job objects, `kubectl describe`, events, PyTorchJobs, pods, every log of the
    stack (operator, training-operator, executor, runtime pods) and every object under the namespaces' result prefixes."""
    texts: dict[str, str] = {}
    for ns in namespaces:
        texts[f"{ns} jobs"] = e2e.kubectl("get", "v2wjobs", "-n", ns, "-o", "json").stdout
        texts[f"{ns} events"] = e2e.kubectl("get", "events", "-n", ns, "-o", "json").stdout
        texts[f"{ns} pytorchjobs"] = e2e.kubectl("get", "pytorchjobs.kubeflow.org", "-n", ns, "-o", "json").stdout
        texts[f"{ns} pods"] = e2e.kubectl("get", "pods", "-n", ns, "-o", "json").stdout
        for job in jobs:
            texts[f"{ns} describe {job}"] = e2e.kubectl("describe", "v2wjob", "-n", ns, job, check=False).stdout
        for key, body in _objects(e2e.minio.client(), e2e.bucket, f"results/{ns}/").items():
            texts[f"s3 {key}"] = body.decode(errors="replace")
    for path in e2e.workdir.rglob("*.log"):
        texts[f"log {path.name}"] = path.read_text(errors="replace")
    return [f"{what} in {where}" for where, text in texts.items() for what, marker in markers.items() if marker in text]


def test_failed_jobs_leak_no_credential_either(e2e):
    """A runtime failure (a missing input) and a storage failure (S3 refuses the credentials, both in the
    runtime and in the operator) put no secret key and no access key id anywhere, and still say why."""
    tag = uuid.uuid4().hex[:8]
    planted = {"planted access key id": f"AKIA{uuid.uuid4().hex[:16].upper()}",
               "planted secret key": f"planted-{uuid.uuid4().hex}"}
    markers = {"the S3 secret key": e2e.minio.secret_key, **planted}
    ns = e2e.namespace()
    e2e.kubectl("create", "secret", "generic", "wrong-s3", "-n", ns,
                f"--from-literal=AWS_ACCESS_KEY_ID={planted['planted access key id']}",
                f"--from-literal=AWS_SECRET_ACCESS_KEY={planted['planted secret key']}")
    wrong = {"credentialsSecret": {"name": "wrong-s3"}}
    once = {"runPolicy": {"backoffLimit": 0}}
    e2e.apply(ns, e2e.job("Video2WorldJob", "lost-input", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/{tag}-missing.jpg", "prompt": "Nothing to see."}, **once, **DISABLED}))
    e2e.apply(ns, e2e.job("Video2WorldJob", "wrong-keys", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A quiet street."}, "output": wrong,
        **once, **DISABLED}))
    # An inline batch makes the operator itself write batch.json with the job's credentials.
    e2e.apply(ns, e2e.job("Video2WorldJob", "wrong-keys-batch", {
        "batch": [{"input": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A quiet street.", "output": "street"}],
        "output": wrong, **DISABLED}))

    obj, _ = e2e.wait_for(ns, "v2wjob", "wrong-keys-batch",
                          lambda o: (condition(o, "Accepted") or {}).get("reason") == "StorageUnreachable",
                          timeout=60, what="Accepted=False/StorageUnreachable")
    assert "batch.json" in obj["status"]["message"] and "InvalidAccessKeyId" in obj["status"]["message"], obj["status"]
    assert e2e.get(ns, "pytorchjob", "v2w-wrong-keys-batch") is None
    lost, _ = e2e.wait_for(ns, "v2wjob", "lost-input", phase_is("Succeeded", "Failed"), timeout=120, what="a final phase")
    assert lost["status"]["phase"] == "Failed" and f"{tag}-missing.jpg" in lost["status"]["message"], lost["status"]
    keys, _ = e2e.wait_for(ns, "v2wjob", "wrong-keys", phase_is("Succeeded", "Failed"), timeout=120, what="a final phase")
    assert keys["status"]["phase"] == "Failed", keys["status"]
    assert condition(keys, "Failed")["status"] == "True"
    # The status says why: S3 refused the credentials (the code, never the key).
    assert "no result.json" in keys["status"]["message"] and "InvalidAccessKeyId" in keys["status"]["message"], \
        keys["status"]["message"]

    # What the runtime wrote: result.json of the failed run (nothing at all with the wrong keys).
    outputs = _objects(e2e.minio.client(), e2e.bucket, f"results/{ns}/")
    assert f"results/{ns}/lost-input/result.json" in outputs, sorted(outputs)
    assert not [k for k in outputs if k.startswith(f"results/{ns}/wrong-keys")], sorted(outputs)
    # The runtime said why in its log, in our words.
    pod_log = (e2e.workdir / "executor" / "logs" / f"{ns}_v2w-wrong-keys_master-0.log").read_text()
    assert f"cannot reach s3://{e2e.bucket}/results/{ns}/wrong-keys: access denied" in pod_log, pod_log[-2000:]

    leaks = _leaks(e2e, [ns], ["lost-input", "wrong-keys", "wrong-keys-batch"], markers)
    assert not leaks, leaks
