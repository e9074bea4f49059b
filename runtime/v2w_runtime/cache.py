"""The checkpoint cache: each S3 object downloaded once per node, shared by every rank, pod and job there.

Every S3 checkpoint fetch goes through `CheckpointCache.fetch`. The cache lives in `<cache dir>/checkpoints`
($V2W_CACHE_DIR; the chart mounts a node's hostPath or a shared claim there):

    objects/<digest>/data       the object's bytes, present only once complete and checked
    objects/<digest>/meta.json  what they are: URI, ETag, VersionId, size, when and how fast downloaded
    objects/<digest>/used       its mtime is when a process last asked for the entry (least recently used)
    objects/<digest>.lock       flock: shared while the entry is used or filled, exclusive only to evict it
    objects/<digest>.fill       flock: exclusive while one process downloads the entry (its users wait here)
    s3/<bucket>/<key>           a hard link to the entry the key resolved to last (loaders read folders; a
                                hard link because some, NLTK's zip reader, look at the name a symlink resolves to)
    downloads.log               one JSON line per download
    evict.lock                  one eviction pass at a time

<digest> hashes bucket, key, ETag and size (and a VersionId the caller pins), so an object replaced in S3
is a new entry and never mistaken for the old one. A download is written to a temporary name in the entry's
folder and renamed to `data` only after its size (and, for a single-part upload, its MD5) matched: a
download killed half-way leaves a file nobody reads, removed by the next one that fills the entry.

Two locks per entry, because a process keeps its shared lock on an entry until it exits (the files must not
be evicted under it): waiting for an exclusive lock on that same file would wait for every process that
already uses the entry, which may in turn wait for this one (ranks meeting at a barrier). So waiting for a
download happens on the `.fill` lock, held only while bytes arrive, and eviction never blocks on anything.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from . import storage
from .storage import StorageError

log = logging.getLogger(__name__)

SIZE_LIMIT_ENV = "V2W_CACHE_SIZE_LIMIT"
CHUNK_ENV = "V2W_S3_CHUNK_SIZE"
CONCURRENCY_ENV = "V2W_S3_MAX_CONCURRENCY"
DEFAULT_CHUNK = 32 * 1024 * 1024
# Below botocore's default connection pool (10), so parallel ranges never wait for a connection.
DEFAULT_CONCURRENCY = 8

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]i?|[kmgtpe]|)\s*$")
_FACTORS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
# Server-side encryption whose ETag is not the MD5 of the bytes.
_OPAQUE_ETAG_ENCRYPTION = {"aws:kms", "aws:kms:dsse", "SSE-C"}


class CacheFullError(StorageError):
    """The cache cannot hold an object: its size limit or its disk is too small for what is in use."""


def parse_size(text: str | int | None) -> int | None:
    """Bytes of a Kubernetes quantity ("200Gi", "500G", "1073741824"); None for empty."""
    if text is None or str(text).strip() == "":
        return None
    match = _QUANTITY.match(str(text))
    if not match:
        raise ValueError(f"{SIZE_LIMIT_ENV}={text!r} is not a size (e.g. 500Gi, 200G or a number of bytes)")
    return int(float(match.group(1)) * _FACTORS[match.group(2)])


def human(num_bytes: int) -> str:
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def transfer_config():
    """Ranged, parallel GETs for large objects ($V2W_S3_CHUNK_SIZE, $V2W_S3_MAX_CONCURRENCY)."""
    from boto3.s3.transfer import TransferConfig

    chunk = parse_size(os.environ.get(CHUNK_ENV)) or DEFAULT_CHUNK
    concurrency = int(os.environ.get(CONCURRENCY_ENV) or DEFAULT_CONCURRENCY)
    return TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=concurrency)


@dataclass(frozen=True)
class Entry:
    digest: str
    size: int  # bytes on disk, a leftover partial download included
    used: float  # last use (seconds since the epoch)


class CheckpointCache:
    """Content-keyed S3 objects under `root`, shared by processes through file locks.

    An instance holds a shared lock on every entry it handed out until `release()` or the process ends,
    so no other process evicts a file this one may still read (weights are memory-mapped).
    """

    def __init__(self, root: Path, size_limit: int | None = None) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.size_limit = size_limit
        self._held: dict[str, int] = {}  # digest -> fd of its lock file, locked shared

    # ------------------------------------------------------------------------------------- fetching

    def fetch(self, uri: str, size: int | None = None, etag: str | None = None,
              version_id: str | None = None) -> Path:
        """A local path (named like the key) holding the object at `uri`, downloaded at most once.

        `size` and `etag` come from a listing; without them a HEAD request asks for them. A `version_id` the
        caller pins is part of the key; one S3 merely reports is not (same ETag and size, same bytes), so a
        file reached by a listing and by its URI is one entry.
        """
        from .coldstart import clock

        with clock().span("download"):
            return self._fetch(uri, size, etag, version_id)

    def _fetch(self, uri: str, size: int | None, etag: str | None, version_id: str | None) -> Path:
        loc = storage.parse_s3(uri)
        if size is None or not etag:
            head = storage.s3_head(uri, version_id)
            size, etag = head.size, head.etag
        etag = etag.strip('"')
        digest = self._digest(loc, size, etag, version_id)
        if digest not in self._held:
            fd = self._open_lock(digest)
            try:
                self._use(fd, uri, digest, size, etag, version_id)
            except BaseException:
                os.close(fd)
                raise
            self._held[digest] = fd
        (self.objects / digest / "used").touch()
        return self._link(loc, digest)

    def _use(self, fd: int, uri: str, digest: str, size: int, etag: str, version_id: str | None) -> None:
        """Leave `fd` locked shared on a complete entry, filling it first if no other process has.

        The shared lock is taken first and kept: it alone keeps evictions off while the entry is filled."""
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while an eviction removes the entry
        if self._complete(digest, size):
            return
        fill = self._open_lock(digest, ".fill")
        try:
            fcntl.flock(fill, fcntl.LOCK_EX)  # waits while another rank, pod or job downloads it
            if not self._complete(digest, size):
                self._fill(uri, digest, size, etag, version_id)
        finally:
            os.close(fill)

    def path_of(self, uri: str) -> Path:
        """Where `fetch` puts the file at `uri` (a folder of a prefix's files lies under it too)."""
        loc = storage.parse_s3(uri)
        parts = PurePosixPath(loc.key).parts
        if ".." in parts or loc.key.startswith("/"):
            raise StorageError(f"{uri}: object key climbs out of its bucket")
        return self.root / "s3" / loc.bucket / loc.key

    def release(self) -> None:
        """Let other processes evict what this one fetched (it must not read those files any more)."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()

    # -------------------------------------------------------------------------------------- filling

    def _fill(self, uri: str, digest: str, size: int, etag: str, version_id: str | None) -> None:
        folder = self.objects / digest
        if folder.exists():  # a download killed half-way: never read, removed under the exclusive lock
            shutil.rmtree(folder)
        self._make_room(uri, size)
        head = storage.s3_head(uri, version_id)
        if (head.size, head.etag) != (size, etag):
            raise StorageError(f"{uri} changed in S3 since it was listed (ETag {etag}, now {head.etag}): run again",
                               retryable=True)
        folder.mkdir(parents=True)
        partial = folder / f"data.{os.getpid()}.partial"
        try:
            started = time.monotonic()
            with open(partial, "wb") as out:
                storage.s3_download_into(uri, out, transfer_config(), head.version_id)
            seconds = time.monotonic() - started
            self._check(uri, partial, head)
            meta = {"uri": uri, "etag": etag, "versionId": head.version_id, "size": size,
                    "downloadedAt": time.time(), "seconds": round(seconds, 3), "host": socket.gethostname(),
                    "pid": os.getpid()}
            (folder / "meta.json").write_text(json.dumps(meta) + "\n")
            os.replace(partial, folder / "data")
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if exc.errno == errno.ENOSPC:
                raise CacheFullError(f"no space left in the checkpoint cache at {self.objects} while downloading "
                                     f"{uri} ({size} bytes, {human(size)})") from None
            raise StorageError(f"cannot write {uri} into the checkpoint cache at {self.objects}: {exc}") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        rate = size / seconds / 1e6 if seconds > 0 else 0.0
        log.info("downloaded %s (%s in %.1f s, %.0f MB/s) into the checkpoint cache", uri, human(size), seconds, rate)
        with open(self.root / "downloads.log", "a", encoding="utf-8") as out:
            out.write(json.dumps(meta) + "\n")

    def _check(self, uri: str, path: Path, head: storage.S3Object) -> None:
        """The downloaded bytes are the object's: its size, and its MD5 where the ETag is one."""
        got = path.stat().st_size
        if got != head.size:
            raise StorageError(f"{uri}: downloaded {got} bytes of {head.size}: run again", retryable=True)
        if _MD5_ETAG.match(head.etag) and head.encryption not in _OPAQUE_ETAG_ENCRYPTION:
            digest = hashlib.md5(usedforsecurity=False)
            with open(path, "rb") as data:
                while block := data.read(8 * 1024 * 1024):
                    digest.update(block)
            if digest.hexdigest() != head.etag:
                raise StorageError(f"{uri}: the downloaded bytes do not match the object's MD5 ETag {head.etag} "
                                   "(damaged in transit): run again", retryable=True)
        elif head.version_id is None:
            # A multipart ETag cannot be recomputed; without a version to pin, make sure the object did not
            # change between the ranged GETs.
            after = storage.s3_head(uri)
            if (after.size, after.etag) != (head.size, head.etag):
                raise StorageError(f"{uri} changed in S3 while it was downloaded: run again", retryable=True)

    # ------------------------------------------------------------------------------------- eviction

    def _make_room(self, uri: str, need: int) -> None:
        """Evict least recently used entries no process holds until `need` more bytes fit the limit and disk."""
        limit = self.size_limit
        if limit is not None and need > limit:
            raise CacheFullError(
                f"{uri} needs {need} bytes ({human(need)}), more than the checkpoint cache's size limit of {limit} "
                f"bytes ({human(limit)}) at {self.objects}: raise the limit ({SIZE_LIMIT_ENV}, the chart's "
                "cache.sizeLimit)")
        self.objects.mkdir(parents=True, exist_ok=True)
        with self._exclusive(self.root / "evict.lock"):
            entries = sorted(self.entries(), key=lambda e: e.used)
            total = sum(e.size for e in entries)
            free = shutil.disk_usage(self.objects).free
            for entry in entries:
                over = limit is not None and total + need > limit
                if not over and free >= need:
                    break
                if entry.digest not in self._held and self._evict(entry):
                    total -= entry.size
                    free += entry.size
            if limit is not None and total + need > limit:
                raise CacheFullError(
                    f"the checkpoint cache at {self.objects} is full: {uri} needs {need} bytes ({human(need)}) and "
                    f"the {total} bytes ({human(total)}) of its {limit}-byte limit are in use by running jobs")
            free = shutil.disk_usage(self.objects).free
            if free < need:
                raise CacheFullError(
                    f"not enough disk space for the checkpoint cache at {self.objects}: {uri} needs {need} bytes "
                    f"({human(need)}), {free} bytes ({human(free)}) are free and the rest is in use by running jobs")

    def entries(self) -> list[Entry]:
        """Every entry on disk, complete or left over, with its size and last use."""
        found = []
        if not self.objects.is_dir():
            return found
        for folder in self.objects.iterdir():
            if not folder.is_dir():
                continue
            try:
                files = [p.stat() for p in folder.iterdir()]
                used = (folder / "used").stat().st_mtime if (folder / "used").exists() else folder.stat().st_mtime
            except FileNotFoundError:  # evicted meanwhile
                continue
            found.append(Entry(folder.name, sum(st.st_size for st in files), used))
        return found

    def _evict(self, entry: Entry) -> bool:
        """Remove an entry unless a process holds or fills it (its lock is then taken)."""
        fd = self._open_lock(entry.digest)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            self._unlink_view(entry.digest)
            shutil.rmtree(self.objects / entry.digest, ignore_errors=True)
            log.info("evicted %s (%s) from the checkpoint cache", entry.digest, human(entry.size))
        finally:
            os.close(fd)  # the lock file stays: a process may have it open, waiting (a new one would split them)
        return True

    # ---------------------------------------------------------------------------------------- small

    @staticmethod
    def _digest(loc: storage.S3Location, size: int, etag: str, version_id: str | None) -> str:
        text = json.dumps([loc.bucket, loc.key, etag, size, version_id or ""])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _complete(self, digest: str, size: int) -> bool:
        data = self.objects / digest / "data"
        try:
            return data.stat().st_size == size
        except FileNotFoundError:
            return False

    def _open_lock(self, digest: str, suffix: str = ".lock") -> int:
        try:
            self.objects.mkdir(parents=True, exist_ok=True)
            return os.open(self.objects / f"{digest}{suffix}", os.O_RDWR | os.O_CREAT, 0o664)
        except OSError as exc:
            raise StorageError(f"cannot use the checkpoint cache at {self.objects}: {exc.strerror}") from None

    @contextmanager
    def _exclusive(self, path: Path) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _link(self, loc: storage.S3Location, digest: str) -> Path:
        """The key's path under s3/: a hard link to the entry's data."""
        view = self.path_of(loc.uri)
        data = self.objects / digest / "data"
        try:
            if os.path.samefile(view, data):
                return view
        except FileNotFoundError:
            pass
        view.parent.mkdir(parents=True, exist_ok=True)
        temp = view.with_name(f".{view.name}.{uuid.uuid4().hex}.link")  # pods sharing the cache share pids
        os.link(data, temp)
        os.replace(temp, view)  # a job reading the previous version keeps its open file
        return view

    def _unlink_view(self, digest: str) -> None:
        """Drop the key's hard link to an evicted entry, so that its space is really freed."""
        folder = self.objects / digest
        try:
            view = self.path_of(json.loads((folder / "meta.json").read_text())["uri"])
            if os.path.samefile(view, folder / "data"):
                view.unlink()
        except (FileNotFoundError, ValueError, KeyError, StorageError):
            pass  # a leftover without meta.json or data, or a view already pointing elsewhere


_caches: dict[Path, CheckpointCache] = {}


def checkpoint_cache(cache_dir: Path) -> CheckpointCache:
    """This process's cache under `cache_dir` ($V2W_CACHE_DIR), its size limit from $V2W_CACHE_SIZE_LIMIT."""
    root = (Path(cache_dir) / "checkpoints").absolute()
    if root not in _caches:
        _caches[root] = CheckpointCache(root, parse_size(os.environ.get(SIZE_LIMIT_ENV)))
    return _caches[root]


def fetch_checkpoint_file(uri: str, cache_dir: Path) -> Path:
    """A local path holding one checkpoint file: S3 through the cache, anything else as `storage.fetch_file`."""
    if storage.is_s3(uri):
        return checkpoint_cache(cache_dir).fetch(uri)
    return storage.fetch_file(uri, cache_dir)


__all__ = ["CacheFullError", "CheckpointCache", "checkpoint_cache", "fetch_checkpoint_file", "parse_size",
           "transfer_config"]
