"""Faults on the real local stack, each with what a user would see and what was lost (nothing):
the API server restarting, a runtime worker killed, the PyTorchJob deleted by someone else, and
MinIO going away while a run uploads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.e2e.helpers import DISABLED, condition, phase_is, read_result, s3_key
from v2w_api import ResultManifest

import stack  # hack/localstack/stack.py

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


def batch_of(e2e, n: int, stem: str) -> list[dict]:
    return [{"input": f"s3://{e2e.bucket}/inputs/input{i % 3}.jpg", "prompt": f"{stem} {i} moves.",
             "output": f"{stem}-{i}"} for i in range(n)]


def wait_for_object(client, bucket: str, key: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError:
            time.sleep(0.2)
    raise AssertionError(f"s3://{bucket}/{key} did not appear in {timeout}s")


def assert_every_output_is_there(e2e, obj, names: list[str]) -> ResultManifest:
    """Succeeded, one status output per entry, each MP4 in MinIO, and result.json agreeing."""
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert sorted(o["name"] for o in obj["status"]["outputs"]) == sorted(names)
    client = e2e.minio.client()
    for output in obj["status"]["outputs"]:
        bucket, key = s3_key(output["uri"])
        assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000, key
    result = read_result(e2e, obj)
    assert sorted(v.name for v in result.videos) == sorted(names)
    assert all(v.status == "succeeded" and v.uri for v in result.videos), result.videos
    return result


def test_api_server_restart_mid_job_loses_nothing(e2e):
    ns = e2e.namespace()
    e2e.apply(ns, e2e.job("Video2WorldJob", "steady", {"batch": batch_of(e2e, 2, "steady"), **DISABLED}))
    e2e.wait_for(ns, "v2wjob", "steady", phase_is("Running"), timeout=120, what="Running")
    e2e.kube.restart_apiserver()  # same port, same certificates, etcd keeps the objects
    assert e2e.operator.alive() and e2e.executor.alive() and e2e.training_operator.alive(), \
        "operator, executor and training-operator must ride out the restart"
    obj, _ = e2e.wait_for(ns, "v2wjob", "steady", phase_is("Succeeded", "Failed"), what="a final phase")
    assert_every_output_is_there(e2e, obj, ["steady-0.mp4", "steady-1.mp4"])
    assert obj["status"]["progress"]["summary"].startswith("2/2 videos")
    # One PyTorchJob, not a second one created after the reconnect.
    pjs = json.loads(e2e.kubectl("get", "pytorchjobs", "-n", ns, "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in pjs] == ["v2w-steady"]
    assert e2e.operator.alive() and e2e.executor.alive() and e2e.training_operator.alive()


def replica_processes(e2e, ns: str, name: str) -> list[psutil.Process]:
    """The processes the executor runs for one PyTorchJob's pods (torchrun and its workers)."""
    procs = []
    for child in psutil.Process(e2e.executor.proc.pid).children():
        try:
            if f"/{ns}/{name}" in " ".join(child.cmdline()):
                procs += [child, *child.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


def test_worker_killed_mid_batch_restarts_and_keeps_finished_entries(e2e):
    ns = e2e.namespace()
    names = [f"victim-{i}.mp4" for i in range(3)]
    e2e.apply(ns, e2e.job("Video2WorldJob", "victim", {"batch": batch_of(e2e, 3, "victim"), **DISABLED}))
    client = e2e.minio.client()
    first = wait_for_object(client, e2e.bucket, f"results/{ns}/victim/victim-0.mp4", timeout=180)
    procs = replica_processes(e2e, ns, "victim")
    assert procs, "no runtime process found for the job"
    for proc in procs:  # the whole tree at once, like a node losing the pod
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    assert not client.list_objects_v2(Bucket=e2e.bucket, Prefix=f"results/{ns}/victim/result.json").get("KeyCount")

    obj, _ = e2e.wait_for(ns, "v2wjob", "victim", phase_is("Succeeded", "Failed"), what="a final phase")
    assert_every_output_is_there(e2e, obj, names)
    # The training-operator restarted the pod (its Restarting condition is gone once the pod runs again; the
    # event stays).
    events = json.loads(e2e.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=v2w-victim",
                                    "-o", "json").stdout)["items"]
    assert any(e["reason"] == "PyTorchJobRestarting" for e in events), [(e["reason"], e["message"]) for e in events]
    # The finished entry was kept, not made again: same object, and the runtime said so.
    again = client.head_object(Bucket=e2e.bucket, Key=f"results/{ns}/victim/victim-0.mp4")
    assert (again["LastModified"], again["ETag"]) == (first["LastModified"], first["ETag"])
    log = (e2e.workdir / "executor" / "logs" / f"{ns}_v2w-victim_master-0.log").read_text(errors="replace")
    assert "--- start (restart 1)" in log, log[-3000:]
    restarted = log.split("--- start (restart 1)", 1)[1]
    assert "victim-0.mp4: already made by an earlier attempt" in restarted, restarted[-3000:]
    assert "victim-2.mp4: already made" not in restarted


def test_pytorchjob_deleted_by_someone_else_fails_with_advice(e2e):
    ns = e2e.namespace()
    e2e.apply(ns, e2e.job("Video2WorldJob", "orphan", {"batch": batch_of(e2e, 4, "orphan"), **DISABLED}))
    e2e.wait_for(ns, "v2wjob", "orphan", phase_is("Running"), timeout=120, what="Running")
    e2e.kubectl("delete", "-n", ns, "pytorchjob", "v2w-orphan", "--wait=true", "--timeout=60s")
    obj, _ = e2e.wait_for(ns, "v2wjob", "orphan", phase_is("Succeeded", "Failed"), timeout=60, what="a final phase")
    status = obj["status"]
    assert status["phase"] == "Failed", status
    failed = condition(obj, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "ChildDeleted"
    assert "v2w-orphan" in status["message"] and "re-apply" in status["message"], status["message"]
    assert status.get("completionTime")
    # Nothing recreates it behind the user's back, and the processes went with its pods.
    time.sleep(3)
    assert e2e.get(ns, "pytorchjob", "v2w-orphan") is None
    stopped = f"{ns}/v2w-orphan-master-0 deleted: processes stopped"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and stopped not in e2e.executor.log_tail(200):
        time.sleep(0.5)
    assert stopped in e2e.executor.log_tail(200)


def test_minio_stopped_during_upload_fails_clearly_and_references_nothing_partial(e2e, localstack_bin, tmp_path):
    """The runtime CLI against a private MinIO that is stopped once the run has started writing."""
    private = stack.MinioServer(localstack_bin, tmp_path / "private").start()
    try:
        bucket = private.make_bucket("fault")
        image = tmp_path / "still.jpg"
        image.write_bytes(stack.sample_image(4, (96, 64)))
        batch = tmp_path / "batch.json"
        batch.write_text(json.dumps([{"input_video": str(image), "prompt": f"Take {i}.", "output_video": f"take-{i}.mp4"}
                                     for i in range(3)]))
        env = {**os.environ, **private.env(), "OMP_NUM_THREADS": "1", "V2W_CACHE_DIR": str(tmp_path / "cache"),
               "V2W_S3_MAX_ATTEMPTS": "2", "V2W_S3_CONNECT_TIMEOUT": "1", "HF_HUB_OFFLINE": "1"}
        for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
            env.pop(var, None)
        argv = [sys.executable, "-m", "v2w_runtime.video2world",
                "--checkpoint_dir", str(e2e.workdir / "models" / "video2world"),
                "--batch_input_json", str(batch), "--output_uri", f"s3://{bucket}/run",
                "--num_steps", "2", "--guidance", "3", "--disable_guardrail", "--disable_prompt_refiner",
                "--height", "64", "--width", "96", "--num_frames", "9", "--device", "cpu", "--dtype", "float32"]
        proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # A hand-started batch names its progress and result files after its batch file.
            wait_for_object(private.client(), bucket, "run/batch.progress.json", timeout=120)
            private.stop()  # the runtime is loading models: everything it writes from now on fails
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode not in (0, None), (proc.returncode, err[-2000:])
        assert "error:" in err and "S3 endpoint unreachable" in err, err[-2000:]
        assert f"s3://{bucket}/run/" in err  # the message names what could not be written
        assert private.secret_key not in out + err

        # MinIO back (same data): nothing claims a video that is not there.
        private.start()
        client = private.client()
        keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="run/").get("Contents", [])}
        assert not any(k.endswith(".mp4") for k in keys), keys
        if "run/batch.result.json" in keys:
            result = ResultManifest.model_validate_json(
                client.get_object(Bucket=bucket, Key="run/batch.result.json")["Body"].read())
            for video in result.videos:
                assert video.uri is None or s3_key(video.uri)[1] in keys, video
    finally:
        private.stop()
