"""The node's checkpoint cache (chart value cache.hostPath): jobs of two namespaces, one of them on two GPUs,
started together on one node, download each checkpoint file once between them; a later job downloads nothing.
Every finished job reports its cold start in status (`coldStart`, and the `Cold start` column of -o wide)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import DISABLED, phase_is

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

HOST_PATH = "/var/cache/video2world"


@pytest.fixture
def node_cache(e2e):
    """The operator as the chart runs it with cache.hostPath and cache.sizeLimit set; as before afterwards."""
    before = dict(e2e.operator_env)
    e2e.operator_env.update(V2W_CACHE_HOST_PATH=HOST_PATH, V2W_CACHE_SIZE_LIMIT="1Gi")
    e2e.restart_operator(kill_signal=15)
    yield e2e.workdir / "executor" / "node" / HOST_PATH.lstrip("/") / "checkpoints"
    e2e.operator_env.clear()
    e2e.operator_env.update(before)
    e2e.restart_operator(kill_signal=15)


def downloads(cache) -> list[str]:
    log = cache / "downloads.log"
    return [json.loads(line)["uri"] for line in log.read_text().splitlines()] if log.exists() else []


def assert_cold_start(e2e, ns: str, obj: dict) -> dict:
    """The finished job's cold start: the runtime's figures in status, and in `kubectl get -o wide`."""
    cold = obj["status"]["coldStart"]
    assert set(cold) == {"seconds", "download", "load", "compile", "other"}, cold
    assert cold["load"] > 0 and cold["compile"] > 0 and cold["download"] >= 0, cold
    assert abs(cold["download"] + cold["load"] + cold["compile"] + cold["other"] - cold["seconds"]) < 0.1, cold
    header, row = e2e.kubectl("get", "v2wjob", obj["metadata"]["name"], "-n", ns, "-o", "wide").stdout.splitlines()[:2]
    assert "COLD START" in header and "COLD START" not in e2e.kubectl("get", "v2wjob", "-n", ns).stdout
    assert row[header.index("COLD START"):].split()[0] == f"{cold['seconds']:g}", (header, row)
    return cold


def test_jobs_on_a_node_share_one_download(e2e, node_cache):
    jobs = {e2e.namespace(): {"gpus": 2}, e2e.namespace(): {"gpus": 1}}
    for i, (ns, parallelism) in enumerate(jobs.items()):
        e2e.apply(ns, e2e.job("Video2WorldJob", "cached", {
            "input": {"uri": f"s3://{e2e.bucket}/inputs/input{i}.jpg", "prompt": "A tram crosses a bridge."},
            "parallelism": parallelism, **DISABLED}))
    for ns in jobs:
        obj, _ = e2e.wait_for(ns, "v2wjob", "cached", phase_is("Succeeded", "Failed"), what="a final phase")
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
        assert_cold_start(e2e, ns, obj)
        pj = e2e.get(ns, "pytorchjob", "v2w-cached")
        volume = next(v for v in pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"]
                      if v["name"] == "cache")
        assert volume["hostPath"] == {"path": HOST_PATH, "type": "Directory"}

    fetched = downloads(node_cache)
    assert fetched and all(uri.startswith(e2e.models["video2world"] + "/") for uri in fetched)
    assert len(fetched) == len(set(fetched)), f"downloaded more than once: {fetched}"  # 3 ranks, 1 download each

    ns = e2e.namespace()
    e2e.apply(ns, e2e.job("Video2WorldJob", "later", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input2.jpg", "prompt": "A tram crosses a bridge."},
        **DISABLED}))
    obj, _ = e2e.wait_for(ns, "v2wjob", "later", phase_is("Succeeded", "Failed"), what="a final phase")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert downloads(node_cache) == fetched  # the node had them all
    assert_cold_start(e2e, ns, obj)
