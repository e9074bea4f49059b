"""Best-of-N with an S3 save path: its local staging folder goes away however the run ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from v2w_operator.api.manifest import ResultManifest
from v2w_runtime import bestofn, storage

from .conftest import write_video

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_bucket(minio, tmp_path, monkeypatch):
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    storage.reset_client()
    yield minio.make_bucket("bonstage")
    storage.reset_client()


@pytest.fixture
def staging(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    monkeypatch.setenv("V2W_STAGING_DIR", str(folder))
    return folder


def test_bad_input_leaves_no_staging(tiny_models, minio, s3_bucket, staging, capsys):
    code = bestofn.main(["--skip_generation", "--save_path", f"s3://{s3_bucket}/runs/empty", "--critic_checkpoint",
                         str(tiny_models["reason"]), "--device", "cpu"])
    assert code == 2
    assert "no MP4 video in" in capsys.readouterr().err
    assert list(staging.iterdir()) == []
    body = minio.client().get_object(Bucket=s3_bucket, Key="runs/empty/result.json")["Body"].read()
    assert not ResultManifest.model_validate_json(body).succeeded


def test_a_run_that_raises_leaves_no_staging(tiny_models, minio, s3_bucket, staging, tmp_path, monkeypatch):
    minio.client().upload_file(str(write_video(tmp_path / "v.mp4", 3)), s3_bucket, "runs/one/take0.mp4")

    def broken_critic(*args, **kwargs):
        assert len(list(staging.iterdir())) == 1  # staged while running
        raise RuntimeError("the critic ran out of memory")

    monkeypatch.setattr(bestofn, "Critic", broken_critic)
    with pytest.raises(RuntimeError, match="out of memory"):
        bestofn.main(["--skip_generation", "--save_path", f"s3://{s3_bucket}/runs/one", "--critic_checkpoint",
                      str(tiny_models["reason"]), "--critic_max_new_tokens", "8", "--device", "cpu"])
    assert list(staging.iterdir()) == []
