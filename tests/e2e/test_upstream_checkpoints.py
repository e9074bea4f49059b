"""A job on the checkpoints a user already has: upstream's checkpoints/ tree in S3, as NVIDIA's download script
lays it out (native DiT .pt, native VAE .pth, t5-11b, Cosmos-Guardrail1 and Llama Guard 3), named by the job
alone. The guardrail is on (the default) and comes from the tree without being named: it lets one prompt
through, checking the video with every component, and blocks the other with Llama Guard's category."""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import phase_is, read_result, s3_key

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def upstream_tree(e2e, tmp_path_factory) -> str:
    import stack
    from v2w_runtime.tiny.guardrail import TEXT_MARKER, write_tiny_guardrail_release
    from v2w_runtime.tiny.upstream import write_upstream_tree

    assert TEXT_MARKER == "robbery"  # the word the tiny Llama Guard 3 calls a violent crime (S1)
    root = write_upstream_tree(tmp_path_factory.mktemp("upstream") / "checkpoints", seed=0, reason1=False,
                               guardrail=write_tiny_guardrail_release)
    return stack.upload_tree(e2e.minio.client(), root, e2e.bucket, "upstream/checkpoints")


def test_a_job_runs_from_upstreams_tree_with_its_guardrail(e2e, upstream_tree):
    ns = e2e.namespace()
    batch = [{"input": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A quiet street at dawn.", "output": "street"},
             {"input": f"s3://{e2e.bucket}/inputs/input1.jpg", "prompt": "A masked man commits a robbery.",
              "output": "robbery"}]
    e2e.apply(ns, e2e.job("Video2WorldJob", "from-tree", {
        "model": {"checkpoint": upstream_tree}, "batch": batch, "promptRefiner": {"enabled": False}}))
    obj, _ = e2e.wait_for(ns, "v2wjob", "from-tree", phase_is("Succeeded", "Failed"), what="a final phase")
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    verdicts = {o["name"]: o for o in status["outputs"]}
    assert verdicts["street.mp4"]["verdict"] == "Passed" and verdicts["street.mp4"]["uri"].endswith("/street.mp4")
    assert verdicts["robbery.mp4"]["verdict"] == "Blocked" and "S1 Violent Crimes" in verdicts["robbery.mp4"]["reason"]
    assert "uri" not in verdicts["robbery.mp4"]

    result = read_result(e2e, obj)
    street = next(v for v in result.videos if v.name == "street.mp4")
    assert street.guardrail_checked and street.guardrail_components == [
        "blocklist", "llama_guard", "video_safety_filter", "face_blur"]
    bucket, key = s3_key(street.files["record"])
    record = json.loads(e2e.minio.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    # The run read the native DiT of the tree, converted in memory, and the tree's own guardrail.
    assert record["model"]["layout"] == "upstream checkpoints/ tree" and record["model"]["upstream_tree"] == upstream_tree
    assert record["model"]["dit_variant"].endswith("model-720p-16fps.pt")
    assert record["settings"]["guardrail"]["checkpoint"] == f"{upstream_tree}/nvidia/Cosmos-Guardrail1"
