"""The CLI with the project's real guardrail and prompt refiner, on their tiny checkpoints (the guardrail in
the layout of NVIDIA's release, under an upstream checkpoint tree root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import read_json

SMALL = ["--height", "64", "--width", "96", "--num_frames", "9", "--num_steps", "2"]


@pytest.fixture(scope="module")
def tiny_guardrail(tmp_path_factory) -> Path:
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail

    return write_tiny_guardrail(tmp_path_factory.mktemp("guard") / "checkpoints", seed=0)


@pytest.fixture(scope="module")
def tiny_refiner(tmp_path_factory) -> Path:
    from v2w_runtime.tiny.qwen import write_tiny_qwen

    return write_tiny_qwen(tmp_path_factory.mktemp("reason") / "reason1", seed=0)


def test_real_guardrail_blocks_a_prompt_and_passes_the_other(cli, media, tiny_guardrail):
    batch = [
        {"input_video": str(media["image"]), "prompt": "a zeppelin over the harbour", "output_video": "blocked.mp4"},
        {"input_video": str(media["image"]), "prompt": "a quiet street at dawn", "output_video": "allowed.mp4"},
        {"input_video": str(media["image"]), "prompt": "a masked man commits a robbery", "output_video": "guard.mp4"},
        {"input_video": str(media["image"]), "prompt": "two massacres at dawn", "output_video": "release.mp4"},
    ]
    Path("batch.json").write_text(json.dumps(batch))
    run = cli("--batch_input_json", "batch.json", "--guardrail_checkpoint", str(tiny_guardrail),
              "--guardrail_blocklist", "zeppelin", "--disable_prompt_refiner", *SMALL, fast=False)
    assert run.code == 0, run.err
    result = read_json("output/batch.result.json")
    assert [v["status"] for v in result["videos"]] == ["blocked", "succeeded", "blocked", "blocked"]
    assert not Path("output/blocked.mp4").exists() and Path("output/allowed.mp4").is_file()
    blocked = read_json("output/blocked.json")
    assert blocked["guardrail"][0]["stage"] == "prompt" and blocked["guardrail"][0]["allowed"] is False
    assert blocked["guardrail_components"] == ["blocklist"]
    allowed = read_json("output/allowed.json")
    assert [(v["stage"], v["allowed"]) for v in allowed["guardrail"]] == [("prompt", True), ("video", True)]
    # Every component of the release ran on the written video, in upstream's order.
    assert allowed["guardrail_checked"] is True
    assert allowed["guardrail_components"] == ["blocklist", "llama_guard", "video_safety_filter", "face_blur"]
    assert result["videos"][1]["guardrailComponents"] == allowed["guardrail_components"]
    guard = read_json("output/guard.json")  # Llama Guard 3's verdict, with its category
    assert guard["guardrail"][0]["check"] == "llama_guard" and "S1 Violent Crimes" in guard["reason"]
    release = read_json("output/release.json")  # the release's blocklist, on the lemma of "massacres"
    assert release["guardrail"][0]["check"] == "blocklist" and "release blocklist" in release["reason"]


def test_real_refiner_prompt_is_recorded(cli, media, tiny_refiner):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "output/r.mp4",
              "--refiner_checkpoint", str(tiny_refiner), "--refiner_max_new_tokens", "12", "--disable_guardrail", *SMALL, fast=False)
    assert run.code == 0, run.err
    record = read_json("output/r.json")
    assert record["prompt"] == "a bus" and "refining" in record["timings_s"]
    text = Path("output/r.txt").read_text()
    # the tiny random model writes random but readable words; they are the prompt the sampler saw
    assert record["refined_prompt"] and record["refined_prompt"] != "a bus"
    assert text.startswith(record["refined_prompt"]) and "# Original prompt\na bus" in text
    result = read_json("output/r.result.json")
    assert result["videos"][0]["status"] == "succeeded"
