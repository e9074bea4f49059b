"""S3 in and out: checkpoint, inputs and batch file from MinIO, every output uploaded back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from v2w_api.manifest import ProgressManifest, ResultManifest

from .conftest import FAST, read_video

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_SESSION_TOKEN",
            "AWS_PROFILE", "AWS_DEFAULT_REGION")


def upload_tree(client, bucket: str, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def keys(client, bucket: str, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return {item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", [])}


@pytest.fixture
def bucket(minio, tiny_checkpoint, media):
    name = minio.make_bucket("v2w")
    client = minio.client()
    upload_tree(client, name, tiny_checkpoint, "models/tiny")
    client.upload_file(str(media["image"]), name, "inputs/still.png")
    client.upload_file(str(media["video"]), name, "inputs/clip.mp4")
    return name


@pytest.mark.s3
def test_batch_from_s3_to_s3(cli, s3_env, bucket, tmp_path):
    client = s3_env.client()
    batch = [
        {"input_video": f"s3://{bucket}/inputs/still.png", "prompt": "a bus", "output_video": "output/first.mp4"},
        {"input_video": f"s3://{bucket}/inputs/clip.mp4", "prompt": "a tram", "output_video": "second.mp4"},
        {"input_video": f"s3://{bucket}/inputs/absent.png", "prompt": "a car", "output_video": "third.mp4"},
    ]
    client.put_object(Bucket=bucket, Key="jobs/batch.json", Body=json.dumps(batch).encode())
    prefix = "runs/default/demo"
    run = cli("--batch_input_json", f"s3://{bucket}/jobs/batch.json", "--output_uri", f"s3://{bucket}/{prefix}",
              checkpoint=f"s3://{bucket}/models/tiny")
    assert run.code == 1, run.err  # the third input does not exist
    assert keys(client, bucket, prefix) == {
        "first.mp4", "first.txt", "first.json", "second.mp4", "second.txt", "second.json", "batch.progress.json",
        "batch.result.json",
    }
    client.download_file(bucket, f"{prefix}/second.mp4", str(tmp_path / "second.mp4"))
    frames, meta = read_video(tmp_path / "second.mp4")
    assert frames.shape == (9, 64, 96, 3) and meta["fps"] == 16

    body = client.get_object(Bucket=bucket, Key=f"{prefix}/batch.result.json")["Body"].read().decode()
    assert s3_env.secret_key not in body
    result = ResultManifest.model_validate_json(body)
    assert [v.status for v in result.videos] == ["succeeded", "succeeded", "failed"]
    assert result.videos[0].uri == f"s3://{bucket}/{prefix}/first.mp4"
    assert result.videos[0].files == {"prompt": f"s3://{bucket}/{prefix}/first.txt",
                                      "record": f"s3://{bucket}/{prefix}/first.json"}
    assert "absent.png" in result.videos[2].reason
    progress = ProgressManifest.model_validate_json(
        client.get_object(Bucket=bucket, Key=f"{prefix}/batch.progress.json")["Body"].read())
    assert progress.videos_done == progress.videos_total == 3
    record = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/first.json")["Body"].read())
    assert s3_env.secret_key not in json.dumps(record) and record["input"] == f"s3://{bucket}/inputs/still.png"
    # the checkpoint's files were downloaded into the cache, where the next run finds them (see
    # test_checkpoint_layouts: an S3 tree is fetched file by file, only what the run needs)
    assert (Path(os.environ["V2W_CACHE_DIR"]) / "checkpoints" / "s3" / bucket / "models" / "tiny" / "transformer" /
            "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.s3
def test_console_entry_point_with_s3_save_path(s3_env, bucket, tmp_path):
    """The real program in its own process, as torchrun starts it, saving straight to S3."""
    env = {**os.environ, **s3_env.env(), "OMP_NUM_THREADS": "1", "V2W_CACHE_DIR": str(tmp_path / "cache")}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(var, None)
    argv = [sys.executable, "-m", "v2w_runtime.video2world", "--checkpoint_dir", f"s3://{bucket}/models/tiny",
            "--input_path", f"s3://{bucket}/inputs/clip.mp4", "--num_conditional_frames", "5",
            "--prompt", "traffic at a crossing", "--save_path", f"s3://{bucket}/single/five.mp4", *FAST]
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = s3_env.client()
    assert {"five.mp4", "five.txt", "five.json", "five.progress.json", "five.result.json"} <= keys(client, bucket, "single")
    assert f"s3://{bucket}/single/five.mp4" in proc.stdout


def _no_aws(monkeypatch, tmp_path):
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_s3_without_credentials(cli, monkeypatch, tmp_path):
    _no_aws(monkeypatch, tmp_path)
    run = cli("--input_path", "s3://some-bucket/inputs/still.png", "--prompt", "a bus")
    assert run.code == 2
    assert "s3://some-bucket/inputs/still.png" in run.err and "no S3 credentials" in run.err
    run = cli("--input_path", "whatever.png", "--prompt", "a bus", "--output_uri", "s3://some-bucket/out")
    assert run.code == 2 and "s3://some-bucket/out" in run.err and "no S3 credentials" in run.err


def _unreachable_s3(monkeypatch, tmp_path) -> None:
    """Credentials that would work, for an endpoint where nothing listens (the discard port), tried once."""
    _no_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-user")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-value")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("V2W_S3_MAX_ATTEMPTS", "1")


def test_s3_endpoint_unreachable(cli, monkeypatch, tmp_path):
    _unreachable_s3(monkeypatch, tmp_path)
    run = cli("--input_path", "s3://some-bucket/inputs/still.png", "--prompt", "a bus")
    assert run.code == 138  # worth another try: the training-operator's ExitCode policy restarts the pod
    assert "s3://some-bucket/inputs/still.png" in run.err and "unreachable" in run.err
    assert "not-a-real-secret-value" not in run.err
    run = cli("--batch_input_json", "s3://some-bucket/batch.json", "--output_uri", "s3://some-bucket/out")
    assert run.code == 138 and "s3://some-bucket/out" in run.err and "unreachable" in run.err


def test_checkpoints_behind_an_unreachable_endpoint_are_retried_not_refused(cli, media, monkeypatch, tmp_path):
    """The model's tree and the guardrail's release in S3 while S3 is away: exit 138 (another try), never
    2 (bad input) or 3 (guardrail refused), and nothing generated."""
    _unreachable_s3(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "out/a.mp4",
              checkpoint="s3://some-bucket/checkpoints")
    assert run.code == 138 and "unreachable" in run.err, run.err
    guarded = [a for a in FAST if a != "--disable_guardrail"]
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "out/b.mp4",
              "--guardrail_checkpoint", "s3://some-bucket/checkpoints/nvidia/Cosmos-Guardrail1", *guarded, fast=False)
    assert run.code == 138 and "unreachable" in run.err and "not-a-real-secret-value" not in run.err, run.err
    assert not list(Path("out").glob("*.mp4"))


@pytest.mark.s3
def test_large_files_go_up_and_down_in_parts(s3_env, monkeypatch, tmp_path):
    from v2w_runtime import storage

    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(storage, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    bucket = s3_env.make_bucket("v2w-mp")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (45 * 1024))  # 11.25 MiB: three parts
    uri = storage.put_file(big, f"s3://{bucket}/blobs/big.bin", "application/octet-stream")
    head = s3_env.client().head_object(Bucket=bucket, Key="blobs/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a multipart upload
    back = storage.fetch_file(uri, tmp_path / "cache")
    assert back.read_bytes() == big.read_bytes()


def test_uri_vocabulary(monkeypatch, tmp_path):
    from v2w_runtime import storage

    monkeypatch.setenv("V2W_PVC_ROOT", str(tmp_path))
    assert storage.local_path("pvc://models/cosmos/2b") == tmp_path / "models" / "cosmos" / "2b"
    assert storage.parse_s3("s3://bucket/a/b/") == storage.S3Location("bucket", "a/b")
    assert storage.join("s3://bucket/runs/ns/job", "x.mp4") == "s3://bucket/runs/ns/job/x.mp4"
    for bad in ("pvc://claim/../etc", "s3://bucket/a/../../b", "ftp://host/file"):
        with pytest.raises(storage.StorageError, match="'\\.\\.'|unsupported"):
            storage.local_path(bad) if not bad.startswith("s3") else storage.parse_s3(bad)
    with pytest.raises(storage.StorageError):
        storage.join("s3://bucket/p", "../x")
