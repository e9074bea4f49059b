"""Storage errors with wrong S3 credentials, against a real MinIO: every operation fails with a message that
names the URI and the cause, and never the access key id, the secret key or the server's own wording."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from v2w_runtime import storage

pytestmark = pytest.mark.s3


@pytest.fixture
def wrong_credentials(minio, monkeypatch):
    """Returns a function that sets (access key id, secret key) for the runtime's S3 client."""

    def use(access_key_id: str, secret_key: str) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
        monkeypatch.setenv("AWS_ENDPOINT_URL", minio.endpoint)
        monkeypatch.setenv("AWS_REGION", minio.region)
        monkeypatch.setenv("V2W_S3_MAX_ATTEMPTS", "1")
        storage.reset_client()

    yield use
    storage.reset_client()


def _operations(bucket: str, tmp_path: Path):
    local = tmp_path / "video.mp4"
    local.write_bytes(b"\0" * 64)
    return {
        "read": lambda: storage.fetch_file(f"s3://{bucket}/inputs/in.txt", tmp_path / "cache"),
        "write": lambda: storage.put_file(local, f"s3://{bucket}/out/video.mp4", "video/mp4"),
        "put": lambda: storage.s3_put_bytes(b"{}", f"s3://{bucket}/out/result.json"),
        "list": lambda: storage.s3_list(f"s3://{bucket}/inputs"),
        "reach": lambda: storage.check_s3_access(f"s3://{bucket}/out"),
        "tree": lambda: storage.fetch_tree(f"s3://{bucket}/inputs", tmp_path / "tree"),
    }


@pytest.mark.parametrize("known_key_id", [False, True], ids=["unknown-key-id", "wrong-secret"])
def test_wrong_credentials_fail_without_echoing_them(minio, wrong_credentials, tmp_path, known_key_id):
    bucket = minio.make_bucket("creds")
    minio.client().put_object(Bucket=bucket, Key="inputs/in.txt", Body=b"hello")
    key_id = minio.access_key if known_key_id else f"AKIA{uuid.uuid4().hex[:16].upper()}"
    secret = f"planted-{uuid.uuid4().hex}"
    wrong_credentials(key_id, secret)

    for name, operation in _operations(bucket, tmp_path).items():
        with pytest.raises(storage.StorageError) as caught:
            operation()
        message = str(caught.value)
        assert f"s3://{bucket}/" in message, (name, message)
        assert secret not in message and key_id not in message, (name, message)
        # Our words, not the server's (which differ between S3 implementations and may quote the request).
        assert "in our records" not in message and "signature we calculated" not in message, (name, message)
        assert str(tmp_path) not in message, (name, message)  # nor the local staging path
        hint = ("access denied", "not known to the endpoint", "does not match the access key")
        assert any(h in message for h in hint), (name, message)
    # Nothing was written with the wrong credentials.
    listed = minio.client().list_objects_v2(Bucket=bucket, Prefix="out/")
    assert listed.get("KeyCount", 0) == 0


def test_messages_we_do_not_build_are_scrubbed_of_credential_values(monkeypatch):
    secret = f"planted-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPLANTEDKEYID0001")
    error = storage._explain(RuntimeError(f"odd failure with AKIAPLANTEDKEYID0001 and {secret}"), "s3://b/k", "read")
    assert secret not in str(error) and "AKIAPLANTEDKEYID0001" not in str(error)
    assert str(error).startswith("cannot read s3://b/k: RuntimeError: odd failure with *** and ***")
