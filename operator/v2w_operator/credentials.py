"""A short-lived in-memory cache of the S3 credentials read from jobs' Secrets."""

from __future__ import annotations

import threading
import time
from typing import Callable

from .s3 import Credentials

Reader = Callable[[str, str, str, str], Credentials]


class CredentialCache:
    """Credentials by (namespace, Secret, keys), each kept for `ttl_seconds` after it was read.

    A rotated Secret is picked up within the TTL, and at once after a caller that saw S3 refuse the old
    credentials `forget`s them. Failed reads (no Secret, no key) are not cached: they are retried.
    """

    def __init__(self, read: Reader, ttl_seconds: float):
        self._read = read
        self._ttl = ttl_seconds
        self._entries: dict[tuple[str, str, str, str], tuple[float, Credentials]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, name: str, id_key: str, secret_key: str) -> Credentials:
        key = (namespace, name, id_key, secret_key)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1]
        credentials = self._read(*key)
        with self._lock:
            self._entries[key] = (time.monotonic(), credentials)
            for stale in [k for k, (at, _) in self._entries.items() if now - at >= self._ttl]:
                del self._entries[stale]
        return credentials

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == namespace and k[1] == name]:
                del self._entries[key]
