"""Where files live, as both sides spell it: the URI types of the API and the one S3 URI parser.

A job spec names storage by URI only (`s3://`, `pvc://<claim>/<path>`, and `http(s)://` for inputs): a
local path means nothing inside a pod. The runtime's run configuration reuses the same groups, and there
a local path is what a user of the seed's command line writes (`assets/input0.jpg`, `checkpoints/...`).
So each URI type takes a validation context: validated with `LOCAL_PATHS` in the context, it also
accepts a plain path. One type, one rule, two audiences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import AfterValidator, ValidationInfo, WrapValidator

from .base import DOT_DOT_SEGMENT, INPUT_URI, S3_URI, STORAGE_URI, cel, has_dot_dot_segment, matching

# Validation context key: `Model.model_validate(data, context={LOCAL_PATHS: True})` admits plain paths.
LOCAL_PATHS = "local_paths"


class StorageError(RuntimeError):
    """A file or object could not be read or written; the message names the URI, never a credential.

    `retryable`: the store was unreachable or busy (trying again later may work), not a missing object or
    refused credentials (trying again cannot)."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # no leading or trailing slash; "" for the bucket root

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def child(self, name: str) -> "S3Location":
        key = f"{self.key}/{name}" if self.key else name
        return S3Location(self.bucket, key)


def is_s3(uri: object) -> bool:
    return str(uri).startswith("s3://")


def parse_s3(uri: str) -> S3Location:
    """`s3://bucket/key` as its bucket and key; StorageError names the URI when it is not one."""
    if not is_s3(uri):
        raise StorageError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} names no bucket (expected s3://<bucket>/<key>)")
    if ".." in PurePosixPath(key).parts:
        raise StorageError(f"{uri!r} must not contain a '..' path segment")
    return S3Location(bucket, key.strip("/"))


def _no_dot_dot(value: str | None) -> str | None:
    if value is not None and has_dot_dot_segment(value):
        raise ValueError(f"{value!r} must not contain a '..' path segment")
    return value


def _or_local_path(value: Any, handler, info: ValidationInfo) -> Any:
    # A plain path (no scheme) passes only where the context allows it: the runtime's configuration.
    if (info.context or {}).get(LOCAL_PATHS) and isinstance(value, str) and value.strip() and "://" not in value:
        return value
    return handler(value)


NO_DOT_DOT = cel(f"!self.matches(r'{DOT_DOT_SEGMENT}')", "must not contain a '..' path segment")


def _uri_type(pattern: str, max_length: int, message: str):
    # _or_local_path last, so outermost: it decides before the URI rules run.
    return matching(pattern, message, max_length, AfterValidator(_no_dot_dot), WrapValidator(_or_local_path),
                    rules=[NO_DOT_DOT])


_NO_SPACES = "with no spaces or control characters"
# A checkpoint, a weights file or a folder of videos: on a PVC or in S3.
StorageURI = _uri_type(STORAGE_URI, 1024, "must be pvc://<claim>/<path> (claim: a lower-case DNS label) or "
                       f"s3://<bucket>/<prefix> (bucket: 3-63 of a-z, 0-9, '.', '-'), {_NO_SPACES}")
# A conditioning input or a batch file: also over HTTP(S).
_INPUT_MESSAGE = f"must be an s3://<bucket>/<key>, pvc://<claim>/<path> or http(s):// URI {_NO_SPACES}"
InputURI = _uri_type(INPUT_URI, 2048, _INPUT_MESSAGE)
# A batch entry's input: the same, at most 1024 characters (the API server bounds the cost of the rule on
# each of up to 256 entries by the longest URI it may meet).
BatchInputURI = _uri_type(INPUT_URI, 1024, _INPUT_MESSAGE)
# Results: S3 only (the operator reads them back from there).
S3URI = _uri_type(S3_URI, 1024, "must be an s3:// URI with a bucket: s3://<bucket>/<prefix> (bucket: 3-63 of "
                  f"a-z, 0-9, '.', '-'), {_NO_SPACES}")

__all__ = [
    "LOCAL_PATHS",
    "BatchInputURI",
    "InputURI",
    "S3Location",
    "S3URI",
    "StorageError",
    "StorageURI",
    "is_s3",
    "parse_s3",
]
