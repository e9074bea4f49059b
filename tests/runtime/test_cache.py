"""The checkpoint cache against a real MinIO: one download per node, content-keyed, never a half file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v2w_runtime import cache as cache_mod
from v2w_runtime import storage
from v2w_runtime.cache import CacheFullError, CheckpointCache, checkpoint_cache
from v2w_runtime.checkpoints import CheckpointError
from v2w_runtime.checkpoints.tree import Tree

MiB = 1024 * 1024

# A process that fetches one object through the cache and reports the GET requests it sent.
CHILD = r"""
import json, os, sys, time
from pathlib import Path
from v2w_runtime import storage
from v2w_runtime.cache import checkpoint_cache

cache_dir, uri, go, delay = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
gets = []
def count(**_):
    gets.append(1)
    time.sleep(delay)
storage.s3_client().meta.events.register("before-call.s3.GetObject", count)
while not go.exists():
    time.sleep(0.005)
path = checkpoint_cache(cache_dir).fetch(uri)
print(json.dumps({"path": str(path), "bytes": path.stat().st_size, "gets": len(gets)}))
"""


def payload(size: int, seed: int) -> bytes:
    block = bytes((i * 31 + seed) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def count_gets() -> list[int]:
    gets: list[int] = []
    storage.s3_client().meta.events.register("before-call.s3.GetObject", lambda **_: gets.append(1))
    return gets


def downloads(root: Path) -> list[dict]:
    log = root / "checkpoints" / "downloads.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def child(cache_dir: Path, uri: str, go: Path, delay: float = 0.0, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cache_dir), uri, str(go), str(delay)],
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env}, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def bucket(s3_env):
    return s3_env.make_bucket("cache")


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache_mod._caches.clear()  # each test's cache dir gets its own instance (and its held locks)
    yield
    for instance in cache_mod._caches.values():
        instance.release()
    cache_mod._caches.clear()


@pytest.mark.s3
def test_four_processes_one_download(s3_env, bucket, tmp_path):
    """Four ranks ask at once: one downloads (in ranged parts), three wait on its lock and read its file."""
    data = payload(24 * MiB, 1)
    s3_env.client().put_object(Bucket=bucket, Key="ckpt/model.pt", Body=data)
    uri, go = f"s3://{bucket}/ckpt/model.pt", tmp_path / "go"
    ranks = [child(tmp_path / "cache", uri, go, V2W_S3_CHUNK_SIZE="8Mi") for _ in range(4)]
    time.sleep(1.0)  # every rank imported and waiting
    go.touch()
    reports = [json.loads(rank.communicate(timeout=120)[0]) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0] * 4
    assert {r["path"] for r in reports} == {str(checkpoint_cache(tmp_path / "cache").path_of(uri))}
    assert all(r["bytes"] == len(data) for r in reports)
    assert sum(r["gets"] for r in reports) == 3  # 24 MiB in 8 MiB ranges, once for the node
    assert [d["uri"] for d in downloads(tmp_path / "cache")] == [uri]
    assert Path(reports[0]["path"]).read_bytes() == data
    # the next job on the node sends no GET at all
    gets = count_gets()
    assert checkpoint_cache(tmp_path / "cache").fetch(uri).read_bytes() == data and gets == []


@pytest.mark.s3
def test_a_rank_waiting_for_a_download_is_not_held_up_by_ranks_that_use_the_entry(s3_env, bucket, tmp_path):
    """The rank that downloaded keeps using the entry (its shared lock until it exits) and may wait for the
    others at a barrier: a rank that was already waiting for that download must still get the file."""
    import fcntl

    data = payload(2 * MiB, 3)
    s3_env.client().put_object(Bucket=bucket, Key="ckpt/t5.bin", Body=data)
    uri, go = f"s3://{bucket}/ckpt/t5.bin", tmp_path / "go"
    cache = checkpoint_cache(tmp_path / "cache")
    head = storage.s3_head(uri)
    digest = cache._digest(storage.parse_s3(uri), head.size, head.etag.strip('"'), None)
    # This process is the first rank: it uses the entry and is downloading it.
    use, fill = cache._open_lock(digest), cache._open_lock(digest, ".fill")
    fcntl.flock(use, fcntl.LOCK_SH)
    fcntl.flock(fill, fcntl.LOCK_EX)
    go.touch()
    waiting = child(tmp_path / "cache", uri, go)  # the second rank asks meanwhile
    time.sleep(1.5)
    assert waiting.poll() is None  # it waits for the download
    cache._fill(uri, digest, head.size, head.etag.strip('"'), None)
    fcntl.flock(fill, fcntl.LOCK_UN)  # downloaded; this rank goes on using it (shared lock kept)
    try:
        report = json.loads(waiting.communicate(timeout=30)[0])
    finally:
        waiting.kill()
        os.close(fill)
        os.close(use)
    assert report["bytes"] == len(data) and report["gets"] == 0 and len(downloads(tmp_path / "cache")) == 1


@pytest.mark.s3
def test_an_object_replaced_in_s3_is_fetched_again(s3_env, bucket, tmp_path):
    client = s3_env.client()
    client.put_object(Bucket=bucket, Key="ckpt/config.json", Body=b'{"v": 1}')
    first = Tree.open(f"s3://{bucket}/ckpt", tmp_path / "cache")
    assert first.local("config.json").read_bytes() == b'{"v": 1}'
    client.put_object(Bucket=bucket, Key="ckpt/config.json", Body=b'{"v": 2}')  # same size, other ETag
    second = Tree.open(f"s3://{bucket}/ckpt", tmp_path / "cache")
    assert second.local("config.json").read_bytes() == b'{"v": 2}'
    assert second.local_dir("") == first.local("config.json").parent
    assert len(downloads(tmp_path / "cache")) == 2
    assert len(checkpoint_cache(tmp_path / "cache").entries()) == 2  # content-keyed: the old one is its own entry
    # a listing older than the object cannot fill an entry with the new bytes
    cache = CheckpointCache(tmp_path / "other")
    with pytest.raises(storage.StorageError, match="changed in S3 since it was listed") as caught:
        cache.fetch(f"s3://{bucket}/ckpt/config.json", 8, first.files["config.json"].etag)
    assert caught.value.retryable and not any((tmp_path / "other" / "objects").glob("*/data"))


@pytest.mark.s3
def test_a_killed_download_is_never_read(s3_env, bucket, tmp_path):
    data = payload(8 * MiB, 2)
    s3_env.client().put_object(Bucket=bucket, Key="ckpt/vae.pth", Body=data)
    uri, go = f"s3://{bucket}/ckpt/vae.pth", tmp_path / "go"
    go.touch()
    slow = child(tmp_path / "cache", uri, go, 0.3, V2W_S3_CHUNK_SIZE="1Mi", V2W_S3_MAX_CONCURRENCY="1")
    objects = tmp_path / "cache" / "checkpoints" / "objects"
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 0 for p in objects.glob("*/data.*.partial")):
        assert time.monotonic() < deadline and slow.poll() is None
        time.sleep(0.05)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    [partial] = objects.glob("*/data.*.partial")
    assert 0 < partial.stat().st_size < len(data) or partial.read_bytes() != data
    assert not list(objects.glob("*/data")) and downloads(tmp_path / "cache") == []
    # the next rank takes the (released) lock, throws the leftover away and downloads the whole file
    gets = count_gets()
    path = checkpoint_cache(tmp_path / "cache").fetch(uri)
    assert path.read_bytes() == data and gets
    assert not list(objects.glob("*/data.*.partial"))


@pytest.mark.s3
def test_damaged_bytes_never_reach_the_final_name(s3_env, bucket, tmp_path, monkeypatch):
    s3_env.client().put_object(Bucket=bucket, Key="ckpt/t5.bin", Body=payload(MiB, 3))
    real = storage.s3_download_into

    def flip_a_byte(uri, out, config, version_id=None):
        real(uri, out, config, version_id)
        out.seek(100)
        out.write(b"\0")

    monkeypatch.setattr(storage, "s3_download_into", flip_a_byte)
    cache = CheckpointCache(tmp_path / "cache")
    with pytest.raises(storage.StorageError, match="do not match the object's MD5 ETag") as caught:
        cache.fetch(f"s3://{bucket}/ckpt/t5.bin")
    assert caught.value.retryable
    assert not list((tmp_path / "cache" / "objects").glob("*/*"))


@pytest.mark.s3
def test_eviction_keeps_the_most_recently_used(s3_env, bucket, tmp_path):
    client = s3_env.client()
    for i, name in enumerate("abc"):
        client.put_object(Bucket=bucket, Key=f"ckpt/{name}", Body=payload(MiB, i))
    uri = {name: f"s3://{bucket}/ckpt/{name}" for name in "abc"}
    root = tmp_path / "cache"
    job = CheckpointCache(root, size_limit=int(2.5 * MiB))
    for name in "ab":
        job.fetch(uri[name])
        time.sleep(0.02)
    job.fetch(uri["a"])  # a used after b
    job.release()
    gets = count_gets()
    later = CheckpointCache(root, size_limit=int(2.5 * MiB))
    assert later.fetch(uri["c"]).read_bytes() == payload(MiB, 2)
    assert later.fetch(uri["a"]).read_bytes() == payload(MiB, 0)
    assert len(gets) == 1  # c downloaded, a still there: b (least recently used) went
    kept = {json.loads((root / "objects" / e.digest / "meta.json").read_text())["uri"] for e in later.entries()}
    assert kept == {uri["a"], uri["c"]}
    assert not later.path_of(uri["b"]).exists()  # its link dangles until b is fetched again

    # a and c are in use by `later` (a running job): b cannot evict them
    third = CheckpointCache(root, size_limit=int(2.5 * MiB))
    with pytest.raises(CacheFullError) as caught:
        third.fetch(uri["b"])
    message = str(caught.value)
    assert str(root / "objects") in message and f"needs {MiB} bytes" in message and "in use" in message
    later.release()
    assert third.fetch(uri["b"]).read_bytes() == payload(MiB, 1)


@pytest.mark.s3
def test_a_full_disk_is_named(s3_env, bucket, tmp_path, monkeypatch):
    s3_env.client().put_object(Bucket=bucket, Key="ckpt/dit.pt", Body=payload(2 * MiB, 4))
    real = cache_mod.shutil.disk_usage
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=MiB))
    tree = Tree.open(f"s3://{bucket}/ckpt", tmp_path / "cache")
    with pytest.raises(CheckpointError) as caught:
        tree.local("dit.pt")
    message = str(caught.value)
    assert "not enough disk space for the checkpoint cache" in message
    assert str(tmp_path / "cache" / "checkpoints" / "objects") in message and f"needs {2 * MiB} bytes" in message
    # and an object larger than the size limit itself
    small = CheckpointCache(tmp_path / "small", size_limit=MiB)
    with pytest.raises(CacheFullError, match=f"needs {2 * MiB} bytes .* more than the checkpoint cache's size limit"):
        small.fetch(f"s3://{bucket}/ckpt/dit.pt")


def test_size_limits_read_like_kubernetes_quantities():
    assert cache_mod.parse_size("200Gi") == 200 * 2**30
    assert cache_mod.parse_size("500G") == 500 * 10**9
    assert cache_mod.parse_size("1048576") == MiB
    assert cache_mod.parse_size("") is None
    with pytest.raises(ValueError, match="V2W_CACHE_SIZE_LIMIT"):
        cache_mod.parse_size("lots")


@pytest.mark.s3
def test_a_single_file_by_uri_keeps_its_name(s3_env, bucket, tmp_path):
    """--dit_path s3://… : a HEAD gives size and ETag; loaders see the key's own file name (its suffix)."""
    from v2w_runtime.cache import fetch_checkpoint_file

    s3_env.client().put_object(Bucket=bucket, Key="post-trained/dit.pt", Body=payload(MiB, 5))
    path = fetch_checkpoint_file(f"s3://{bucket}/post-trained/dit.pt", tmp_path / "cache")
    assert path.name == "dit.pt" and path.read_bytes() == payload(MiB, 5) and path.stat().st_nlink == 2
    local = tmp_path / "local.pt"
    local.write_bytes(b"x")
    assert fetch_checkpoint_file(str(local), tmp_path / "cache") == local  # read in place
    with pytest.raises(storage.StorageError, match="no such object"):
        fetch_checkpoint_file(f"s3://{bucket}/post-trained/absent.pt", tmp_path / "cache")
