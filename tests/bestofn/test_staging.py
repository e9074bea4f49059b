"""Best-of-N with an S3 save path: its local staging folder goes away however the run ends."""

from __future__ import annotations

import pytest

from v2w_api.manifest import ResultManifest
from v2w_runtime import bestofn
from v2w_runtime.runner import Run

from .conftest import write_video

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_bucket(s3_env, tmp_path, monkeypatch):
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    return s3_env.make_bucket("bonstage")


def test_bad_input_leaves_no_staging(tiny_models, minio, s3_bucket, staging_dir, capsys):
    code = bestofn.main(["--skip_generation", "--save_path", f"s3://{s3_bucket}/runs/empty", "--critic_checkpoint",
                         str(tiny_models["reason"]), "--device", "cpu"])
    assert code == 2
    assert "no MP4 video in" in capsys.readouterr().err
    assert list(staging_dir.iterdir()) == []
    body = minio.client().get_object(Bucket=s3_bucket, Key="runs/empty/result.json")["Body"].read()
    assert not ResultManifest.model_validate_json(body).succeeded


def test_a_run_that_raises_leaves_no_staging(tiny_models, minio, s3_bucket, staging_dir, tmp_path, monkeypatch):
    minio.client().upload_file(str(write_video(tmp_path / "v.mp4", 3)), s3_bucket, "runs/one/take0.mp4")

    def broken_critic(self):
        assert len(list(staging_dir.iterdir())) == 1  # staged while running
        raise RuntimeError("the critic ran out of memory")

    monkeypatch.setattr(Run, "load_critic", broken_critic)
    with pytest.raises(RuntimeError, match="out of memory"):
        bestofn.main(["--skip_generation", "--save_path", f"s3://{s3_bucket}/runs/one", "--critic_checkpoint",
                      str(tiny_models["reason"]), "--critic_max_new_tokens", "8", "--device", "cpu"])
    assert list(staging_dir.iterdir()) == []
