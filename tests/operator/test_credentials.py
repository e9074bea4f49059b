"""The Secret-read cache: one read per Secret and TTL, a new read once forgotten, failures not kept."""

from __future__ import annotations

import pytest

from v2w_operator.credentials import CredentialCache
from v2w_operator.s3 import Credentials


class Secrets:
    """A reader over a dict of Secrets that counts its reads."""

    def __init__(self):
        self.values = {("ns", "s3"): Credentials("id-1", "key-1")}
        self.reads = 0

    def __call__(self, namespace: str, name: str, id_key: str, secret_key: str) -> Credentials:
        self.reads += 1
        if (namespace, name) not in self.values:
            raise KeyError(f"Secret {name} not found")
        return self.values[(namespace, name)]


def test_reads_once_within_the_ttl():
    secrets = Secrets()
    cache = CredentialCache(secrets, ttl_seconds=60)
    for _ in range(5):
        assert cache.get("ns", "s3", "a", "b") == Credentials("id-1", "key-1")
    assert secrets.reads == 1


def test_expired_forgotten_and_fresh_entries_are_read_again():
    secrets = Secrets()
    cache = CredentialCache(secrets, ttl_seconds=0)
    cache.get("ns", "s3", "a", "b")
    cache.get("ns", "s3", "a", "b")
    assert secrets.reads == 2

    cache = CredentialCache(secrets, ttl_seconds=60)
    cache.get("ns", "s3", "a", "b")
    secrets.values[("ns", "s3")] = Credentials("id-2", "key-2")  # rotated
    cache.forget("ns", "s3")
    assert cache.get("ns", "s3", "a", "b").access_key_id == "id-2"
    secrets.values[("ns", "s3")] = Credentials("id-3", "key-3")
    assert cache.get("ns", "s3", "a", "b").access_key_id == "id-2"  # cached until forgotten or expired
    cache.forget("ns", "s3")
    assert cache.get("ns", "s3", "a", "b").access_key_id == "id-3"


def test_failures_are_not_cached_and_namespaces_do_not_share():
    secrets = Secrets()
    cache = CredentialCache(secrets, ttl_seconds=60)
    with pytest.raises(KeyError):
        cache.get("other", "s3", "a", "b")
    secrets.values[("other", "s3")] = Credentials("other-id", "other-key")
    assert cache.get("other", "s3", "a", "b").access_key_id == "other-id"
    assert cache.get("ns", "s3", "a", "b").access_key_id == "id-1"


def test_credentials_never_print_their_values():
    assert "key-1" not in repr(Credentials("id-1", "key-1")) and "id-1" not in repr(Credentials("id-1", "key-1"))
