"""Jobs on several (CPU-played) GPUs through the operator: one pod of 2 processes, and 2 pods of 1 that meet
through the PyTorchJob's master address as the training-operator gives it. Each makes the very video of the
one-GPU job with the same seed; a best-of-N job shares its generations between its ranks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.helpers import DISABLED, phase_is, read_result, s3_key

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

PROMPT = "A bus pulls out of a night terminal."


def _frames(e2e, uri: str, tmp_path) -> np.ndarray:
    from v2w_runtime.bestofn import read_video

    bucket, key = s3_key(uri)
    local = tmp_path / key.replace("/", "_")
    e2e.minio.client().download_file(bucket, key, str(local))
    return read_video(local)[0]


@pytest.fixture(scope="module")
def videos(e2e):
    """The same single-video job on 1 GPU, on 2 GPUs of one pod, and on 2 pods of 1 GPU."""
    ns = e2e.namespace()
    layouts = {"one": {"gpus": 1}, "pod-of-two": {"gpus": 2}, "two-pods": {"gpus": 2, "gpusPerNode": 1}}
    for name, parallelism in layouts.items():
        e2e.apply(ns, e2e.job("Video2WorldJob", name, {
            "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": PROMPT},
            "generation": {"seed": 11}, "parallelism": parallelism, **DISABLED}))
    done = {}
    for name in layouts:
        obj, _ = e2e.wait_for(ns, "v2wjob", name, phase_is("Succeeded", "Failed"), timeout=400, what="a final phase")
        done[name] = obj
    return ns, done


def test_two_gpus_of_one_pod_and_two_pods_make_the_one_gpu_video(e2e, videos, tmp_path):
    ns, done = videos
    for obj in done.values():
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
    pods = {name: e2e.get(ns, "pytorchjob", obj["status"]["pytorchJobName"])["spec"] for name, obj in done.items()}
    assert pods["pod-of-two"]["nprocPerNode"] == "2" and "Worker" not in pods["pod-of-two"]["pytorchReplicaSpecs"]
    assert pods["two-pods"]["nprocPerNode"] == "1" and pods["two-pods"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    frames = {name: _frames(e2e, obj["status"]["outputs"][0]["uri"], tmp_path) for name, obj in done.items()}
    for name in ("pod-of-two", "two-pods"):
        assert frames[name].shape == frames["one"].shape
        # CFG-parallel over gloo: the same math on the same CPU, so the very same frames.
        assert np.array_equal(frames[name], frames["one"]), (name, np.abs(frames[name].astype(int) - frames["one"]).max())
    for name in ("pod-of-two", "two-pods"):
        record = read_result(e2e, done[name]).videos[0]
        assert record.status == "succeeded"


def test_best_of_n_on_two_gpus_shares_its_generations(e2e):
    ns = e2e.namespace()
    e2e.apply(ns, e2e.job("BestOfNJob", "pair", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input1.jpg", "prompt": PROMPT},
        "bestOfN": {"numGenerations": 4, "critic": {"numTrials": 1}}, "parallelism": {"gpus": 2}, **DISABLED}))
    obj, _ = e2e.wait_for(ns, "bonjob", "pair", phase_is("Succeeded", "Failed"), timeout=600, what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    client = e2e.minio.client()
    groups = set()
    for i in range(4):
        key = f"results/{ns}/pair/gen{i:02d}_seed{i}.json"
        import json

        groups.add(json.loads(client.get_object(Bucket=e2e.bucket, Key=key)["Body"].read())["gpu_group"])
    assert groups == {0, 1}  # 4 videos on 2 GPUs: data parallel, each GPU made two
    assert len(obj["status"]["outputs"]) == 4 and obj["status"]["best"]["name"]


def test_the_record_names_the_layout_the_runtime_chose(e2e, videos, tmp_path):
    ns, done = videos
    import json

    for name, expected in (("one", (1, 1, 1, False)), ("pod-of-two", (2, 1, 1, True)), ("two-pods", (2, 1, 1, True))):
        bucket, key = s3_key(done[name]["status"]["outputs"][0]["uri"])
        record = json.loads(e2e.minio.client().get_object(Bucket=bucket, Key=key.replace(".mp4", ".json"))["Body"].read())
        layout = record["layout"]
        # one video on 2 GPUs, guidance on: a CFG pair (the fastest measured), one group
        assert (layout["gpus"], layout["groups"], layout["contextParallelSize"], layout["cfgParallel"]) == expected, layout
