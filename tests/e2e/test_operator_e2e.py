"""Jobs driven end to end on the local stack: operator → PyTorchJob → training-operator → pods run by the
executor → runtime (tiny models on CPU) → MinIO → status. Each test says what a user would see."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.helpers import DISABLED, condition, make_claim, phase_is, read_result, s3_key

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


def test_single_video_job_goes_pending_running_succeeded(e2e):
    ns = e2e.namespace()
    doc = e2e.job("Video2WorldJob", "single", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A bus pulls out of a night terminal."},
        **DISABLED})
    e2e.apply(ns, doc)
    obj, phases = e2e.wait_for(ns, "v2wjob", "single", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    # The status follows the PyTorchJob at once, so a 0.5 s sampling may miss the short Pending: the phases seen
    # keep their order, and each phase the job went through has its one Event.
    assert phases == sorted(phases, key=["Pending", "Running", "Succeeded"].index) and "Running" in phases, phases
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Succeeded")["status"] == "True" and condition(obj, "Accepted")["reason"] == "ChildCreated"
    assert status["pytorchJobName"] == "v2w-single" and status["startTime"] and status["completionTime"]
    [output] = status["outputs"]
    bucket, key = s3_key(output["uri"])
    head = e2e.minio.client().head_object(Bucket=bucket, Key=key)
    # The guardrail was disabled for this job: the status says nothing checked the video.
    assert output["verdict"] == "NotChecked" and head["ContentLength"] > 1000 and key.endswith(".mp4")
    assert key == f"results/{ns}/single/single.mp4"
    assert status["progress"]["summary"].startswith("1/1 videos")
    # kubectl wait works because observedGeneration and the Succeeded condition are kept current.
    e2e.kubectl("wait", "-n", ns, "--for=condition=Succeeded", "v2wjob/single", "--timeout=10s")
    table = e2e.kubectl("get", "v2wjobs", "-n", ns).stdout
    assert "Succeeded" in table and "1/1 videos" in table
    events = e2e.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=single", "-o", "json").stdout
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert {"ChildCreated", "Running", "Succeeded"} <= set(reasons), reasons
    assert reasons.count("Running") == 1 and reasons.count("Succeeded") == 1, reasons


def test_batch_job_writes_every_entry(e2e):
    ns = e2e.namespace()
    batch = [{"input": f"s3://{e2e.bucket}/inputs/input{i}.jpg", "prompt": f"Scene {i} comes to life.",
              "output": f"scene-{i}"} for i in range(3)]
    e2e.apply(ns, e2e.job("Video2WorldJob", "batch", {"batch": batch, **DISABLED}))
    obj, _ = e2e.wait_for(ns, "v2wjob", "batch", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    names = sorted(o["name"] for o in obj["status"]["outputs"])
    assert names == ["scene-0.mp4", "scene-1.mp4", "scene-2.mp4"]
    result = read_result(e2e, obj)
    assert [v.status for v in result.videos] == ["succeeded"] * 3
    # The inline batch was stored next to the results, in the seed's batch-JSON form.
    stored = e2e.minio.client().get_object(Bucket=e2e.bucket, Key=f"results/{ns}/batch/batch.json")
    assert json.loads(stored["Body"].read())[0]["output_video"] == "scene-0.mp4"


def test_best_of_n_job_reports_the_best_video_and_its_score(e2e):
    ns = e2e.namespace()
    doc = e2e.job("BestOfNJob", "pick", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input2.jpg", "prompt": "A worker fills bottles."},
        "bestOfN": {"numGenerations": 2, "critic": {"numTrials": 2}}, **DISABLED})
    e2e.apply(ns, doc)
    obj, _ = e2e.wait_for(ns, "bonjob", "pick", phase_is("Succeeded", "Failed"), timeout=400, what="a final phase")
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    result = read_result(e2e, obj)
    best = result.best_video()
    assert best is not None and status["best"]["name"] == best.name and status["best"]["score"] == best.score
    assert sorted(o["score"] for o in status["outputs"]) == sorted(v.score for v in result.videos)
    assert len({o["seed"] for o in status["outputs"]}) == 2  # distinct, recorded seeds
    for output in status["outputs"]:
        assert f"{output['score']:03d}" in output["uri"]  # the score is in the MP4's name
    bucket, key = s3_key(status["indexUri"])
    index = e2e.minio.client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert best.name.rsplit(".", 1)[0] in index
    table = e2e.kubectl("get", "bonjobs", "-n", ns).stdout
    assert str(best.score) in table.splitlines()[1]


def test_runtime_failure_becomes_failed_with_the_runtime_message(e2e):
    ns = e2e.namespace()
    doc = e2e.job("Video2WorldJob", "broken", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/does-not-exist.jpg", "prompt": "Nothing to see."},
        "runPolicy": {"backoffLimit": 0}, **DISABLED})
    e2e.apply(ns, doc)
    obj, _ = e2e.wait_for(ns, "v2wjob", "broken", phase_is("Succeeded", "Failed"), what="a final phase")
    status = obj["status"]
    assert status["phase"] == "Failed"
    failed = condition(obj, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "RuntimeFailed"  # exit 2: final, not retried
    assert "does-not-exist.jpg" in status["message"], status["message"]


def test_bad_input_fails_at_once_without_the_retries_a_crash_would_get(e2e):
    """The runtime's final failures (bad input, exit 2) end the job on the first try under the ExitCode policy,
    however many retries runPolicy.backoffLimit allows for a killed worker."""
    ns = e2e.namespace()
    e2e.apply(ns, e2e.job("Video2WorldJob", "final", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/nowhere.jpg", "prompt": "Nothing to see."},
        "runPolicy": {"backoffLimit": 3}, **DISABLED}))
    obj, _ = e2e.wait_for(ns, "v2wjob", "final", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Failed"
    assert condition(obj, "Failed")["reason"] == "RuntimeFailed"
    assert "nowhere.jpg" in obj["status"]["message"] and "no such object" in obj["status"]["message"]
    pj = e2e.get(ns, "pytorchjob", "v2w-final")
    assert pj["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == "ExitCode"
    assert not [c for c in pj["status"]["conditions"] if c["type"] == "Restarting"], pj["status"]["conditions"]
    # Its pod ran once: the training-operator did not delete and recreate it. (It may still record a
    # PyTorchJobRestarting event: v1.9.3's status update emits one for any failed replica it does not count
    # as final there, whatever the exit code.)
    log = (e2e.workdir / "executor" / "logs" / f"{ns}_v2w-final_master-0.log").read_text(errors="replace")
    assert "--- start (restart 0)" in log and "--- start (restart 1)" not in log, log[-2000:]


def test_missing_secret_is_a_condition_then_recovers(e2e):
    ns = f"e2e-nosecret-{int(time.time()) % 100000}"
    e2e.kubectl("create", "namespace", ns)
    doc = e2e.job("Video2WorldJob", "waits", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A quiet street."}, **DISABLED})
    e2e.apply(ns, doc)
    obj, _ = e2e.wait_for(ns, "v2wjob", "waits",
                          lambda o: (condition(o, "Accepted") or {}).get("reason") == "SecretMissing", timeout=60,
                          what="Accepted=False/SecretMissing")
    assert condition(obj, "Accepted")["status"] == "False" and "v2w-s3" in condition(obj, "Accepted")["message"]
    assert e2e.get(ns, "pytorchjob", "v2w-waits") is None
    e2e.secret(ns)
    obj, _ = e2e.wait_for(ns, "v2wjob", "waits", lambda o: (condition(o, "Accepted") or {}).get("status") == "True",
                          timeout=90, what="Accepted=True after the Secret appeared")
    assert e2e.get(ns, "pytorchjob", "v2w-waits") is not None


def test_missing_claim_is_a_condition_then_recovers(e2e):
    """A pvc:// input whose claim is not there: the job says which claim, in its condition (not "waiting for
    pods to start" with the claim named only in a log), makes no PyTorchJob, and goes on once it exists."""
    import stack

    ns = e2e.namespace()
    doc = e2e.job("Video2WorldJob", "on-claim", {
        "input": {"uri": "pvc://clips/night/in.jpg", "prompt": "A tram turns a corner."}, **DISABLED})
    e2e.apply(ns, doc)
    obj, _ = e2e.wait_for(ns, "v2wjob", "on-claim",
                          lambda o: (condition(o, "Accepted") or {}).get("reason") == "ClaimMissing", timeout=60,
                          what="Accepted=False/ClaimMissing")
    accepted = condition(obj, "Accepted")
    assert accepted["status"] == "False" and "PersistentVolumeClaim clips not found" in accepted["message"]
    assert ns in accepted["message"] and obj["status"]["phase"] == "Pending"
    assert e2e.get(ns, "pytorchjob", "v2w-on-claim") is None
    events = json.loads(e2e.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "ClaimMissing" and "clips" in e["message"] for e in events)

    folder = e2e.workdir / "pvcs" / ns / "clips" / "night"
    folder.mkdir(parents=True)
    (folder / "in.jpg").write_bytes(stack.sample_image(3, (96, 64)))
    make_claim(e2e, ns, "clips")
    obj, _ = e2e.wait_for(ns, "v2wjob", "on-claim", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert condition(obj, "Accepted")["status"] == "True"


def test_suspend_then_resume(e2e):
    ns = e2e.namespace()
    doc = e2e.job("Video2WorldJob", "paused", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input1.jpg", "prompt": "Snow falls."}, "suspend": True,
        **DISABLED})
    e2e.apply(ns, doc)
    obj, _ = e2e.wait_for(ns, "v2wjob", "paused", phase_is("Suspended"), timeout=60, what="Suspended")
    assert condition(obj, "Suspended")["status"] == "True"
    pj = e2e.get(ns, "pytorchjob", "v2w-paused")
    assert pj["spec"]["runPolicy"]["suspend"] is True
    e2e.kubectl("patch", "-n", ns, "v2wjob", "paused", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    obj, phases = e2e.wait_for(ns, "v2wjob", "paused", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded" and condition(obj, "Suspended")["status"] == "False"


def test_deleting_a_running_job_deletes_its_pytorchjob_and_processes(e2e):
    ns = e2e.namespace()
    batch = [{"input": f"s3://{e2e.bucket}/inputs/input{i % 3}.jpg", "prompt": f"Clip {i}.", "output": f"clip-{i}"}
             for i in range(6)]
    e2e.apply(ns, e2e.job("Video2WorldJob", "doomed", {"batch": batch, **DISABLED}))
    e2e.wait_for(ns, "v2wjob", "doomed", phase_is("Running"), timeout=120, what="Running")
    e2e.kubectl("delete", "-n", ns, "v2wjob", "doomed", "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and e2e.get(ns, "pytorchjob", "v2w-doomed") is not None:
        time.sleep(0.5)
    assert e2e.get(ns, "pytorchjob", "v2w-doomed") is None, "garbage collection did not delete the PyTorchJob"
    # Garbage collection deletes its pods too, and the executor (the kubelet here) stops their processes.
    stopped = f"{ns}/v2w-doomed-master-0 deleted: processes stopped"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and stopped not in e2e.executor.log_tail(200):
        time.sleep(0.5)
    assert stopped in e2e.executor.log_tail(200)


def test_operator_killed_mid_job_resumes_without_duplicates(e2e):
    ns = e2e.namespace()
    batch = [{"input": f"s3://{e2e.bucket}/inputs/input{i}.jpg", "prompt": f"Shot {i}.", "output": f"shot-{i}"}
             for i in range(3)]
    e2e.apply(ns, e2e.job("Video2WorldJob", "survivor", {"batch": batch, **DISABLED}))
    e2e.wait_for(ns, "v2wjob", "survivor", phase_is("Running"), timeout=120, what="Running")
    e2e.restart_operator()  # SIGKILL, then start again
    obj, _ = e2e.wait_for(ns, "v2wjob", "survivor", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    pjs = json.loads(e2e.kubectl("get", "pytorchjobs", "-n", ns, "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in pjs] == ["v2w-survivor"]


def test_unreachable_s3_endpoint_is_a_condition_not_a_crash(e2e):
    ns = e2e.namespace()
    batch = [{"input": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A quiet street.", "output": "street"}]
    doc = e2e.job("Video2WorldJob", "nowhere", {"batch": batch, **DISABLED})
    doc["spec"]["output"]["endpoint"] = "http://127.0.0.1:9"  # discard port: nothing listens
    e2e.apply(ns, doc)
    obj, _ = e2e.wait_for(ns, "v2wjob", "nowhere",
                          lambda o: (condition(o, "Accepted") or {}).get("reason") == "StorageUnreachable",
                          timeout=90, what="Accepted=False/StorageUnreachable")
    accepted = condition(obj, "Accepted")
    assert accepted["status"] == "False" and "batch.json" in accepted["message"]
    assert e2e.get(ns, "pytorchjob", "v2w-nowhere") is None
    assert e2e.operator.alive(), "the operator must retry with backoff, not crash"


def scrape(e2e) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The operator's /metrics as {(sample name, sorted labels): value}; empty while it is not serving."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(f"http://127.0.0.1:{e2e.operator_env['V2W_METRICS_PORT']}/metrics", timeout=5).text
    except requests.ConnectionError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_describe_the_jobs_that_exist_even_after_a_restart(e2e):
    """Jobs by phase, their videos and GPU-seconds are computed when Prometheus scrapes, from the operator's watch:
    right after the operator restarts, and a deleted job no longer counts."""
    succeeded = ("v2w_jobs", (("kind", "Video2WorldJob"), ("phase", "Succeeded")))
    unchecked = ("v2w_job_outputs", (("kind", "Video2WorldJob"), ("verdict", "NotChecked")))
    gpu_seconds = ("v2w_job_gpu_seconds", (("kind", "Video2WorldJob"), ("phase", "Succeeded")))

    def settled(want: float, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = scrape(e2e)
            if metrics.get(succeeded, 0.0) == want:
                return metrics
            time.sleep(0.5)
        raise AssertionError(f"v2w_jobs Succeeded never became {want}: {scrape(e2e).get(succeeded)}")

    before = scrape(e2e)
    ns = e2e.namespace()
    batch = [{"input": f"s3://{e2e.bucket}/inputs/input{i}.jpg", "prompt": f"Scene {i}.", "output": f"m-{i}"}
             for i in range(2)]
    e2e.apply(ns, e2e.job("Video2WorldJob", "counted", {"batch": batch, **DISABLED}))
    obj, _ = e2e.wait_for(ns, "v2wjob", "counted", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    n = before.get(succeeded, 0.0) + 1
    after = settled(n)
    assert after.get(unchecked, 0.0) == before.get(unchecked, 0.0) + 2  # the guardrail was off for both videos
    assert after[gpu_seconds] > before.get(gpu_seconds, 0.0)

    e2e.restart_operator()  # nothing carried over but what the watch lists again
    assert settled(n).get(unchecked) == after[unchecked]

    e2e.kubectl("delete", "-n", ns, "v2wjob", "counted", "--wait=true", "--timeout=60s")
    gone = settled(n - 1)
    assert gone.get(unchecked, 0.0) == after[unchecked] - 2
