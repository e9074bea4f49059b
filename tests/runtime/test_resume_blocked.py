"""A restarted batch keeps the entries the guardrail blocked: their recorded verdict stands, nothing is made again.

The real guardrail on its tiny checkpoint blocks a prompt by the user's blocklist, or (with a video
classifier that calls everything unsafe) the generated video. A spy around the real `generate` tells
which entries a restart sends through the model and the guardrail again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from v2w_api.manifest import ProgressManifest, ResultManifest
from v2w_runtime.generator import Video2WorldGenerator

from .conftest import read_json

SMALL = ["--height", "64", "--width", "96", "--num_frames", "9", "--num_steps", "2", "--disable_prompt_refiner"]
BLOCKED_PROMPT = "a zeppelin over the harbour"
ALLOWED_PROMPT = "a quiet street at dawn"


@pytest.fixture(scope="module")
def guardrails(tmp_path_factory) -> dict[str, Path]:
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail

    root = tmp_path_factory.mktemp("guard")
    return {
        "safe": write_tiny_guardrail(root / "safe", seed=0),
        "unsafe_video": write_tiny_guardrail(root / "unsafe-video", seed=0, video_marker="any"),
    }


@pytest.fixture
def generated(monkeypatch) -> list[str]:
    """The prompts `Video2WorldGenerator.generate` is called with, in order (the real method still runs)."""
    calls: list[str] = []
    real = Video2WorldGenerator.generate

    def spy(self, input, prompt, seed, **kwargs):
        calls.append(prompt)
        return real(self, input, prompt, seed, **kwargs)

    monkeypatch.setattr(Video2WorldGenerator, "generate", spy)
    return calls


def _batch(image: Path, prompts: dict[str, str]) -> str:
    Path("batch.json").write_text(json.dumps(
        [{"input_video": str(image), "prompt": prompt, "output_video": name} for name, prompt in prompts.items()]))
    return "batch.json"


def test_blocked_prompt_is_kept_on_restart_and_listed_once(cli, media, guardrails, generated, caplog):
    args = ("--batch_input_json", _batch(media["image"], {"blocked.mp4": BLOCKED_PROMPT, "allowed.mp4": ALLOWED_PROMPT}),
            "--guardrail_checkpoint", str(guardrails["safe"]), "--guardrail_blocklist", "zeppelin", *SMALL)
    first = cli(*args, fast=False)
    assert first.code == 0, first.err
    assert generated == [BLOCKED_PROMPT, ALLOWED_PROMPT]
    record, prompts = Path("output/blocked.json"), Path("output/blocked.txt")
    kept = [(p.stat().st_mtime_ns, p.read_bytes()) for p in (record, prompts)]
    assert read_json(record)["status"] == "blocked" and not Path("output/blocked.mp4").exists()

    # The worker was killed after the blocked entry was recorded and before the other's MP4 went out.
    Path("output/allowed.mp4").unlink()
    Path("output/batch.result.json").unlink()
    generated.clear()
    with caplog.at_level(logging.INFO, logger="v2w_runtime"):
        again = cli(*args, fast=False)
    assert again.code == 0, again.err
    assert generated == [ALLOWED_PROMPT]  # the blocked entry went through neither the guardrail nor the model
    assert [(p.stat().st_mtime_ns, p.read_bytes()) for p in (record, prompts)] == kept
    assert "blocked.mp4: blocked by the guardrail in an earlier attempt, kept as blocked" in caplog.text
    assert not Path("output/blocked.mp4").exists() and Path("output/allowed.mp4").stat().st_size > 1000

    result = ResultManifest.model_validate(read_json("output/batch.result.json"))
    assert [(v.name, v.status) for v in result.videos] == [("blocked.mp4", "blocked"), ("allowed.mp4", "succeeded")]
    assert result.succeeded and result.counts() == {"succeeded": 1, "blocked": 1, "failed": 0, "skipped": 0}
    blocked = result.videos[0]
    assert blocked.uri is None and blocked.reason == read_json(record)["reason"]
    assert blocked.reason.startswith("guardrail blocked the prompt (blocklist")
    assert blocked.files == {"prompt": "output/blocked.txt", "record": "output/blocked.json"}
    assert blocked.prompt == BLOCKED_PROMPT and blocked.seed == 0
    progress = ProgressManifest.model_validate(read_json("output/batch.progress.json"))
    assert progress.videos_done == progress.videos_total == 2

    # Without the blocklist term the settings differ: the verdict is not carried over, the entry is made.
    generated.clear()
    other = cli(*[a for a in args if a not in ("--guardrail_blocklist", "zeppelin")], fast=False)
    assert other.code == 0, other.err
    assert generated == [BLOCKED_PROMPT, ALLOWED_PROMPT]
    assert read_json(record)["status"] == "succeeded" and Path("output/blocked.mp4").is_file()


@pytest.mark.s3
def test_prompt_and_video_verdicts_are_kept_on_restart_over_s3(cli, s3_env, media, guardrails, generated):
    bucket = s3_env.make_bucket("v2w")
    client = s3_env.client()
    prefix = "runs/blocked"
    args = ("--batch_input_json", _batch(media["image"], {"words.mp4": BLOCKED_PROMPT, "frames.mp4": ALLOWED_PROMPT}),
            "--output_uri", f"s3://{bucket}/{prefix}", "--guardrail_checkpoint", str(guardrails["unsafe_video"]),
            "--guardrail_blocklist", "zeppelin", *SMALL)
    first = cli(*args, fast=False)
    assert first.code == 0, first.err
    assert generated == [BLOCKED_PROMPT, ALLOWED_PROMPT]

    def objects() -> dict[str, tuple]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        return {item["Key"][len(prefix) + 1 :]: (item["ETag"], item["LastModified"])
                for page in pages for item in page.get("Contents", [])}

    before = objects()
    assert {"words.json", "words.txt", "frames.json", "frames.txt"} <= set(before)
    assert not {"words.mp4", "frames.mp4"} & set(before)

    # Killed before result.json went up: the restart makes nothing and rewrites no record.
    client.delete_object(Bucket=bucket, Key=f"{prefix}/batch.result.json")
    generated.clear()
    again = cli(*args, fast=False)
    assert again.code == 0, again.err
    assert generated == []
    after = objects()
    for name in ("words.json", "words.txt", "frames.json", "frames.txt"):
        assert after[name] == before[name], name
    result = ResultManifest.model_validate_json(
        client.get_object(Bucket=bucket, Key=f"{prefix}/batch.result.json")["Body"].read())
    assert [(v.name, v.status) for v in result.videos] == [("words.mp4", "blocked"), ("frames.mp4", "blocked")]
    assert result.succeeded and result.counts()["blocked"] == 2
    assert "guardrail blocked the prompt" in result.videos[0].reason
    assert "guardrail blocked the video" in result.videos[1].reason
    assert all(v.uri is None for v in result.videos)
    assert result.videos[1].files["record"] == f"s3://{bucket}/{prefix}/frames.json"
