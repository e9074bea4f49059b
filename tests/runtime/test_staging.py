"""The local staging folder of an S3 output goes away however the run ends; a local output folder stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2w_runtime import runner
from v2w_runtime.generator import Video2WorldGenerator
from v2w_runtime.interfaces import GuardrailError


@pytest.fixture
def s3_out(s3_env):
    """An empty bucket the runtime can write to, and its name."""
    return s3_env.make_bucket("stage")


def _keys(minio, bucket: str) -> set[str]:
    return {item["Key"] for item in minio.client().list_objects_v2(Bucket=bucket).get("Contents", [])}


def _fail_generation(monkeypatch, on_call=None) -> None:
    def broken(self, *args, **kwargs):
        if on_call is not None:
            on_call()
        raise RuntimeError("the accelerator fell over")

    monkeypatch.setattr(Video2WorldGenerator, "generate", broken)


@pytest.mark.s3
def test_staging_removed_when_a_run_raises(cli, media, minio, s3_out, staging_dir, monkeypatch):
    seen: list[list[Path]] = []
    _fail_generation(monkeypatch, on_call=lambda: seen.append(list(staging_dir.iterdir())))
    with pytest.raises(RuntimeError, match="fell over"):
        cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", f"s3://{s3_out}/run/a.mp4")
    assert len(seen) == 1 and len(seen[0]) == 1  # it was staged in a folder of its own while running
    assert list(staging_dir.iterdir()) == []
    assert "run/a.progress.json" in _keys(minio, s3_out)  # what reached the prefix stays there


@pytest.mark.s3
def test_staging_removed_when_the_upload_fails(cli, media, minio, s3_out, staging_dir, monkeypatch):
    real = Video2WorldGenerator.generate

    def bucket_goes_away(self, *args, **kwargs):
        client = minio.client()
        for key in _keys(minio, s3_out):
            client.delete_object(Bucket=s3_out, Key=key)
        client.delete_bucket(Bucket=s3_out)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Video2WorldGenerator, "generate", bucket_goes_away)
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", f"s3://{s3_out}/run/a.mp4")
    assert run.code != 0
    assert f"cannot write s3://{s3_out}/run/a.result.json: no such bucket" in run.err
    assert list(staging_dir.iterdir()) == []


@pytest.mark.s3
def test_staging_removed_when_the_guardrail_fails_closed(cli, media, minio, s3_out, staging_dir, monkeypatch):
    def no_guardrail(config, device=None):
        raise GuardrailError("the video classifier weights are unreadable")

    monkeypatch.setattr(runner, "build_guardrail", no_guardrail)
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", f"s3://{s3_out}/run/a.mp4")
    assert run.code == runner.EXIT_GUARDRAIL, run.err
    assert list(staging_dir.iterdir()) == []
    result = json.loads(minio.client().get_object(Bucket=s3_out, Key="run/a.result.json")["Body"].read())
    assert result["succeeded"] is False and "unreadable" in result["message"]


@pytest.mark.s3
def test_staging_removed_after_a_successful_run(cli, media, minio, s3_out, staging_dir):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", f"s3://{s3_out}/run/a.mp4")
    assert run.code == 0, run.err
    assert list(staging_dir.iterdir()) == []
    assert {"run/a.mp4", "run/a.result.json"} <= _keys(minio, s3_out)


def test_local_output_folder_kept_when_a_run_raises(cli, media, staging_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.mp4").write_bytes(b"kept")
    _fail_generation(monkeypatch)
    with pytest.raises(RuntimeError, match="fell over"):
        cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", str(out / "a.mp4"))
    assert (out / "earlier.mp4").read_bytes() == b"kept"
    assert (out / "a.progress.json").is_file()
    assert list(staging_dir.iterdir()) == []  # a local run stages nothing


def test_local_output_folder_kept_when_the_guardrail_fails_closed(cli, media, tmp_path, monkeypatch):
    def no_guardrail(config, device=None):
        raise GuardrailError("the video classifier weights are unreadable")

    monkeypatch.setattr(runner, "build_guardrail", no_guardrail)
    out = tmp_path / "out"
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", str(out / "a.mp4"))
    assert run.code == runner.EXIT_GUARDRAIL
    assert json.loads((out / "a.result.json").read_text())["succeeded"] is False
