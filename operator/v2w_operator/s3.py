"""The operator's S3 access: reading a job's progress.json / result.json and storing its batch.json.

The operator uses the job's own credentials (the Secret the job names, in the job's namespace), so it
can read and write exactly where the job's owner can and nowhere else. Nothing read here is logged.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from v2w_api.manifest import PROGRESS_FILE, RESULT_FILE, ProgressManifest, ResultManifest
from v2w_api.uris import StorageError, parse_s3

# Handlers must not hang on a dead endpoint: fail fast and let the timer come back.
_CLIENT_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"},
                        signature_version="s3v4")  # SigV4: what S3 accepts from new buckets, links included


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never print the values, even by accident
        return "Credentials(***)"


def join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}"


_CLIENTS: dict[tuple[str | None, str | None, Credentials | None], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_MAX_CLIENTS = 256


def _client(endpoint: str | None, region: str | None, credentials: Credentials | None) -> Any:
    """One S3 client per endpoint, region and credentials, shared by every job that uses them.

    Making a client costs tens of milliseconds of CPU and boto3's default session is not safe to make
    clients from in several threads at once (kopf runs handlers in a thread pool); clients themselves are.
    """
    key = (endpoint, region, credentials)
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is not None:
            return found
        kwargs: dict[str, Any] = {"config": _CLIENT_CONFIG}
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if region:
            kwargs["region_name"] = region
        if credentials:
            kwargs["aws_access_key_id"] = credentials.access_key_id
            kwargs["aws_secret_access_key"] = credentials.secret_access_key
        if len(_CLIENTS) >= _MAX_CLIENTS:  # rotated credentials leave old entries behind
            _CLIENTS.pop(next(iter(_CLIENTS)))
        _CLIENTS[key] = boto3.session.Session().client("s3", **kwargs)
        return _CLIENTS[key]


def presign(uri: str, endpoint: str | None, region: str | None, credentials: Credentials | None,
            ttl_seconds: int) -> str:
    """An HTTPS link to the object `uri` through `endpoint` (the one browsers reach), valid `ttl_seconds`.

    Signing is local: no request goes to S3."""
    loc = parse_s3(uri)
    try:
        return _client(endpoint, region, credentials).generate_presigned_url(
            "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=ttl_seconds)
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"cannot sign a link to {uri}: {type(exc).__name__}") from None


class JobStorage:
    """S3 under one job's prefix."""

    def __init__(self, prefix: str, endpoint: str | None, region: str | None, credentials: Credentials | None):
        self.prefix = prefix.rstrip("/")
        self._client = _client(endpoint, region, credentials)

    def uri(self, name: str) -> str:
        return join(self.prefix, name)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The parsed object, or None when it does not exist (yet)."""
        loc = parse_s3(self.uri(name))
        try:
            body = self._client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StorageError(f"reading {self.uri(name)}: {exc.response.get('Error', {}).get('Code', 'error')}") from None
        except BotoCoreError as exc:
            raise StorageError(f"reading {self.uri(name)}: {type(exc).__name__}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise StorageError(f"{self.uri(name)} is not valid JSON") from None

    def write_json(self, name: str, doc: Any) -> str:
        loc = parse_s3(self.uri(name))
        try:
            self._client.put_object(Bucket=loc.bucket, Key=loc.key, Body=json.dumps(doc, indent=2).encode(),
                                    ContentType="application/json")
        except ClientError as exc:
            raise StorageError(f"writing {self.uri(name)}: {exc.response.get('Error', {}).get('Code', 'error')}") from None
        except BotoCoreError as exc:
            raise StorageError(f"writing {self.uri(name)}: {type(exc).__name__}") from None
        return self.uri(name)

    def delete_all(self) -> int:
        """Deletes every object under the prefix (cleanupPolicy: Delete); returns how many."""
        loc = parse_s3(self.prefix)
        prefix = f"{loc.key}/" if loc.key else ""
        deleted = 0
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    self._client.delete_objects(Bucket=loc.bucket, Delete={"Objects": objects, "Quiet": True})
                    deleted += len(objects)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"deleting under {self.prefix}/: {type(exc).__name__}") from None
        return deleted

    def progress(self) -> ProgressManifest | None:
        doc = self.read_json(PROGRESS_FILE)
        return None if doc is None else ProgressManifest.model_validate(doc)

    def result(self) -> ResultManifest | None:
        doc = self.read_json(RESULT_FILE)
        return None if doc is None else ResultManifest.model_validate(doc)
