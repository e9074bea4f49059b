"""Where files live: local paths, `pvc://<claim>/<path>` and `s3://<bucket>/<key>`, one vocabulary.

S3 settings come from the standard AWS_* environment variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION), read by boto3 itself. Errors name the URI and say
what to fix; they never carry a secret.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from v2w_api.policy import InputHostPolicy
from v2w_api.uris import S3Location, StorageError, is_s3, parse_s3

PVC_ROOT_ENV = "V2W_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/pvc"

# Files above this size go up and down in parts (boto3 multipart), several parts at once.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 64 * 1024 * 1024


def _has_dot_dot(path: str) -> bool:
    return ".." in PurePosixPath(path).parts


def local_path(uri: str | os.PathLike) -> Path:
    """The local path of a plain path or a `pvc://<claim>/<path>` URI (mounted under $V2W_PVC_ROOT)."""
    text = str(uri)
    if text.startswith("pvc://"):
        rest = text[len("pvc://") :]
        if not rest.split("/", 1)[0]:
            raise StorageError(f"{text!r} names no volume claim (expected pvc://<claim>/<path>)")
        if _has_dot_dot(rest):
            raise StorageError(f"{text!r} must not contain a '..' path segment")
        return Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT)) / rest
    if "://" in text:
        raise StorageError(f"{text!r}: unsupported URI scheme (use a local path, pvc://, s3:// or, for inputs, https://)")
    return Path(text).expanduser()


# ---------------------------------------------------------------------------------------------- S3


@lru_cache(maxsize=None)
def _client():
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise StorageError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a "
            "non-AWS endpoint) in the environment"
        )
    config = Config(
        retries={"max_attempts": int(os.environ.get("V2W_S3_MAX_ATTEMPTS", "5")), "mode": "standard"},
        connect_timeout=float(os.environ.get("V2W_S3_CONNECT_TIMEOUT", "10")),
        read_timeout=120,
        s3={"addressing_style": "path"},
    )
    return session.client("s3", config=config)


def s3_client():
    """The shared boto3 S3 client; raises StorageError when no credentials are configured."""
    return _client()


def reset_client() -> None:
    """Forget the cached client (after the environment changed, e.g. in tests)."""
    _client.cache_clear()


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4
    )


# Environment variables whose values must never appear in an error message.
_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def _scrub(text: str) -> str:
    """`text` with the configured S3 credential values masked (a last guard for messages we do not build)."""
    for var in _CREDENTIAL_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _explain(exc: BaseException, uri: str, action: str) -> StorageError:
    """A StorageError that says what went wrong with `uri`, without echoing credentials."""
    described = _describe(exc, uri, action)
    return StorageError(_scrub(str(described)), retryable=described.retryable)


def _describe(exc: BaseException, uri: str, action: str) -> StorageError:
    from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, (S3UploadFailedError, S3TransferFailedError)):
        # boto3's transfer wrappers paste the server's whole message (and the local file's path) into their own;
        # the ClientError underneath carries just the code.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (ClientError, EndpointConnectionError, NoCredentialsError)):
            exc = cause
        else:
            return StorageError(f"cannot {action} {uri}: {type(exc).__name__}")
    if isinstance(exc, StorageError):
        return StorageError(f"cannot {action} {uri}: {exc}", retryable=exc.retryable)
    if isinstance(exc, NoCredentialsError):
        return StorageError(f"cannot {action} {uri}: no S3 credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"cannot {action} {uri}: S3 endpoint unreachable ({exc})", retryable=True)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        hints = {
            "404": "no such object",
            "NoSuchKey": "no such object",
            "NoSuchBucket": "no such bucket",
            "403": "access denied (check the credentials and the bucket policy)",
            "AccessDenied": "access denied (check the credentials and the bucket policy)",
            "InvalidAccessKeyId": "the access key is not known to the endpoint",
            "SignatureDoesNotMatch": "the secret key does not match the access key",
        }
        if action == "reach" and code in ("404", "NoSuchBucket"):
            return StorageError(f"cannot reach {uri}: no such bucket")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        busy = code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout") or status >= 500
        return StorageError(f"cannot {action} {uri}: {hints.get(code, code)}", retryable=busy)
    name = type(exc).__name__
    if "Connect" in name or "Timeout" in name:
        return StorageError(f"cannot {action} {uri}: S3 endpoint unreachable ({name})", retryable=True)
    return StorageError(f"cannot {action} {uri}: {name}: {exc}")


def _s3_call(uri: str, action: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # botocore raises many unrelated types; each is explained by _explain
        raise _explain(exc, uri, action) from None


def s3_download_file(uri: str, dest: Path) -> Path:
    loc = parse_s3(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")  # ranks of one node may share the cache
    client = _s3_call(uri, "read", s3_client)
    _s3_call(uri, "read", client.download_file, loc.bucket, loc.key, str(partial), Config=_transfer_config())
    partial.replace(dest)
    return dest


@dataclass(frozen=True)
class S3Object:
    """What a HEAD request says about one object."""

    size: int
    etag: str  # quotes removed; the MD5 of the bytes for a single-part upload without KMS or customer keys
    version_id: str | None = None
    encryption: str | None = None  # ServerSideEncryption, or "SSE-C" for a customer-provided key


def s3_head(uri: str, version_id: str | None = None) -> S3Object:
    loc = parse_s3(uri)
    client = _s3_call(uri, "read", s3_client)
    extra = {"VersionId": version_id} if version_id else {}
    head = _s3_call(uri, "read", client.head_object, Bucket=loc.bucket, Key=loc.key, **extra)
    version = head.get("VersionId")
    return S3Object(
        size=int(head.get("ContentLength", 0)), etag=str(head.get("ETag", "")).strip('"'),
        version_id=version if version and version != "null" else None,
        encryption="SSE-C" if head.get("SSECustomerAlgorithm") else head.get("ServerSideEncryption"),
    )


def s3_download_into(uri: str, out: BinaryIO, config, version_id: str | None = None) -> None:
    """Write the object at `uri` into an open, seekable file (ranged GETs in parallel per `config`, a boto3
    TransferConfig); `version_id` pins every range to one version."""
    loc = parse_s3(uri)
    client = _s3_call(uri, "read", s3_client)
    extra = {"VersionId": version_id} if version_id else None
    _s3_call(uri, "read", client.download_fileobj, loc.bucket, loc.key, out, ExtraArgs=extra, Config=config)


def s3_list(uri: str) -> list[str]:
    """Keys under a prefix (recursive), relative to it."""
    loc = parse_s3(uri)
    prefix = loc.key.rstrip("/") + "/" if loc.key else ""
    client = _s3_call(uri, "list", s3_client)
    paginator = client.get_paginator("list_objects_v2")
    keys: list[str] = []

    def walk() -> None:
        for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                rel = item["Key"][len(prefix) :]
                if rel and not rel.endswith("/"):
                    keys.append(rel)

    _s3_call(uri, "list", walk)
    return keys


def s3_list_objects(uri: str) -> dict[str, tuple[int, str]]:
    """Objects under a prefix (recursive), relative to it: size in bytes and ETag (quotes removed)."""
    loc = parse_s3(uri)
    prefix = loc.key.rstrip("/") + "/" if loc.key else ""
    client = _s3_call(uri, "list", s3_client)
    found: dict[str, tuple[int, str]] = {}

    def walk() -> None:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                rel = item["Key"][len(prefix) :]
                if rel and not rel.endswith("/"):
                    found[rel] = (int(item.get("Size", 0)), str(item.get("ETag", "")).strip('"'))

    _s3_call(uri, "list", walk)
    return found


def s3_upload_file(path: Path, uri: str, content_type: str | None = None) -> str:
    loc = parse_s3(uri)
    client = _s3_call(uri, "write", s3_client)
    extra = {"ContentType": content_type} if content_type else None
    _s3_call(
        uri, "write", client.upload_file, str(path), loc.bucket, loc.key, ExtraArgs=extra, Config=_transfer_config()
    )
    return uri


def s3_delete(uri: str) -> None:
    loc = parse_s3(uri)
    client = _s3_call(uri, "delete", s3_client)
    _s3_call(uri, "delete", client.delete_object, Bucket=loc.bucket, Key=loc.key)


def s3_put_bytes(data: bytes, uri: str, content_type: str = "application/json") -> str:
    loc = parse_s3(uri)
    client = _s3_call(uri, "write", s3_client)
    _s3_call(uri, "write", client.put_object, Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type)
    return uri


def check_s3_access(uri: str) -> None:
    """Fail early (before any weight is loaded) when the bucket of `uri` cannot be reached."""
    loc = parse_s3(uri)
    client = _s3_call(uri, "reach", s3_client)
    _s3_call(uri, "reach", client.head_bucket, Bucket=loc.bucket)


# ------------------------------------------------------------------------------------ any location


def is_http(uri: str | os.PathLike) -> bool:
    return str(uri).startswith(("http://", "https://"))


# The platform's policy on http(s) inputs, from the run configuration (None: a run started by hand, any host).
_input_hosts: InputHostPolicy | None = None


def use_input_hosts(policy: InputHostPolicy | None) -> None:
    """Fetch every http(s) input of this process under `policy` (set once, from the run configuration)."""
    global _input_hosts
    _input_hosts = policy


def http_download_file(uri: str, dest: Path, timeout: float = 60.0) -> Path:
    """Download an http(s) URL (inputs only; nothing is ever sent but the request), under the input policy."""
    import urllib.error
    import urllib.request

    from .http_inputs import InputHostRefused, opener

    policy = _input_hosts
    if policy is not None:
        reason = policy.uri_refusal(uri)
        if reason is not None:
            raise StorageError(f"cannot read {uri}: refused by the platform's input policy: {reason}")
    open_url = urllib.request.urlopen if policy is None else opener(policy).open
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")  # ranks of one node may share the cache
    try:
        with open_url(uri, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1024 * 1024)
    except InputHostRefused as exc:  # on the first connection or a redirect's (a ValueError: urllib lets it through)
        raise StorageError(f"cannot read {uri}: refused by the platform's input policy: {exc}") from None
    except urllib.error.HTTPError as exc:
        raise StorageError(f"cannot read {uri}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise StorageError(f"cannot read {uri}: unreachable ({exc.reason})") from None
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read {uri}: unreachable ({exc})") from None
    partial.replace(dest)
    return dest


def fetch_file(uri: str, cache_dir: Path) -> Path:
    """A local path holding the file at `uri` (downloaded into `cache_dir` from S3 or http(s))."""
    if is_s3(uri):
        loc = parse_s3(uri)
        return s3_download_file(uri, cache_dir / loc.bucket / loc.key)
    if is_http(uri):
        import hashlib

        url_path = PurePosixPath(uri.split("?", 1)[0].split("://", 1)[1])
        folder = hashlib.sha256(uri.encode()).hexdigest()[:16]
        return http_download_file(uri, cache_dir / "http" / folder / (url_path.name or "download"))
    path = local_path(uri)
    if not path.is_file():
        raise StorageError(f"{uri}: no such file" if not path.exists() else f"{uri}: not a regular file")
    if not os.access(path, os.R_OK):
        raise StorageError(f"{uri}: not readable")
    return path


def read_bytes(uri: str, cache_dir: Path) -> bytes:
    return fetch_file(uri, cache_dir).read_bytes()


def fetch_tree(uri: str, cache_dir: Path) -> Path:
    """A local folder holding everything under `uri`; an S3 prefix is downloaded once and reused."""
    if not is_s3(uri):
        path = local_path(uri)
        if not path.is_dir():
            raise StorageError(f"{uri}: no such folder")
        return path
    loc = parse_s3(uri)
    dest = cache_dir / loc.bucket / loc.key
    done = dest / ".v2w-complete"
    if done.exists():
        return dest
    keys = s3_list(uri)
    if not keys:
        raise StorageError(f"{uri}: no objects under this prefix")
    for rel in keys:
        if _has_dot_dot(rel):
            raise StorageError(f"{uri}: object key {rel!r} climbs out of the prefix")
        s3_download_file(loc.child(rel).uri, dest / rel)
    done.write_text("downloaded\n")
    return dest


def put_file(path: Path, uri: str, content_type: str | None = None) -> str:
    """Copy a finished local file to `uri` (S3 upload or local copy); returns the URI."""
    if is_s3(uri):
        return s3_upload_file(path, uri, content_type)
    dest = local_path(uri)
    if dest.resolve() != path.resolve():
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")  # ranks of one node may share the cache
        shutil.copyfile(path, partial)
        partial.replace(dest)
    return str(dest)


def join(base: str, name: str) -> str:
    """`name` (a relative path without '..') under the folder or prefix `base`."""
    if _has_dot_dot(name) or name.startswith("/"):
        raise StorageError(f"{name!r} must be a relative path inside {base}")
    if is_s3(base):
        return parse_s3(base).child(name).uri
    return str(PurePosixPath(str(base)) / name)


__all__ = [
    "S3Location",
    "S3Object",
    "StorageError",
    "check_s3_access",
    "fetch_file",
    "fetch_tree",
    "is_s3",
    "join",
    "local_path",
    "parse_s3",
    "put_file",
    "read_bytes",
    "reset_client",
    "s3_client",
    "s3_delete",
    "s3_download_file",
    "s3_download_into",
    "s3_head",
    "s3_list_objects",
    "s3_put_bytes",
]
