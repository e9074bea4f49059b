"""A checkpoint location as a listing: every file under a local folder, a `pvc://` path or an `s3://` prefix.

The listing is taken once (an S3 prefix is listed, nothing downloaded), so a layout can be recognised and
checked before any file is read. Files are then fetched one by one as a loader needs them: an S3 object
goes through the checkpoint cache (`v2w_runtime.cache`), downloaded once for every rank, pod and job that
shares it, so a run that reads the 2B model from an upstream tree in S3 downloads the 2B files and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import storage
from ..cache import checkpoint_cache
from .common import CheckpointError, cache_dir


@dataclass(frozen=True)
class Entry:
    size: int
    etag: str = ""  # S3 only: the MD5 of an object uploaded in one part


def join_uri(base: str, rel: str) -> str:
    """`rel` under a folder, `pvc://` path or `s3://` prefix, spelled the way `base` is."""
    rel = rel.strip("/")
    if not rel:
        return base
    return f"{base.rstrip('/')}/{rel}" if base.rstrip("/") else rel


def parent_uri(uri: str, levels: int = 1) -> str | None:
    """The folder `levels` above `uri` (None when that climbs past a bucket, a claim or the filesystem root)."""
    scheme, sep, rest = uri.rstrip("/").partition("://")
    if not sep:
        path = Path(uri).expanduser().absolute()
        for _ in range(levels):
            if path.parent == path:
                return None
            path = path.parent
        return str(path)
    parts = rest.split("/")
    if len(parts) - levels < 1:
        return None
    return f"{scheme}://{'/'.join(parts[:-levels])}"


class Tree:
    """The files under one location, relative to it, with their sizes."""

    def __init__(self, uri: str, files: dict[str, Entry], local_root: Path | None, cache: Path | None = None,
                 broken: tuple[str, ...] = ()) -> None:
        self.uri = uri
        self.files = files
        self.local_root = local_root  # None for S3
        self.cache = cache or cache_dir()
        self.broken = broken  # local links that point nowhere (an interrupted Hub download)

    @classmethod
    def open(cls, uri: str, cache: Path | None = None) -> "Tree":
        """List `uri`; CheckpointError when there is no such folder or prefix."""
        try:
            if storage.is_s3(uri):
                listing = storage.s3_list_objects(uri)
                if not listing:
                    raise CheckpointError(f"{uri}: no objects under this prefix")
                files = {rel: Entry(size, etag) for rel, (size, etag) in listing.items()}
                return cls(uri, files, None, cache)
            root = storage.local_path(uri)
        except storage.StorageError as exc:
            if exc.retryable:  # an unreachable or busy endpoint: retried, not bad input
                raise
            raise CheckpointError(str(exc)) from None
        if not root.is_dir():
            raise CheckpointError(f"{uri}: no such folder" if not root.exists() else f"{uri}: not a folder")
        files, broken = {}, []
        for folder, dirs, names in os.walk(root, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                if name.startswith("."):
                    continue
                full = Path(folder) / name
                rel = full.relative_to(root).as_posix()
                try:
                    files[rel] = Entry(full.stat().st_size)
                except OSError:
                    broken.append(rel)
        return cls(uri, files, root, cache, broken=tuple(sorted(broken)))

    # --------------------------------------------------------------------------------------- looking

    @property
    def is_s3(self) -> bool:
        return self.local_root is None

    def has(self, rel: str) -> bool:
        return rel in self.files

    def is_dir(self, rel: str) -> bool:
        head = rel.strip("/") + "/"
        return any(k.startswith(head) for k in self.files)

    def under(self, rel: str) -> list[str]:
        """Every file below the folder `rel` (tree-relative paths, sorted)."""
        head = rel.strip("/") + "/" if rel.strip("/") else ""
        return sorted(k for k in self.files if k.startswith(head))

    def size(self, rel: str) -> int:
        return self.files[rel].size

    def uri_of(self, rel: str) -> str:
        return join_uri(self.uri, rel)

    def sub(self, rel: str) -> "Tree":
        """The folder `rel` of this tree as a tree of its own (same listing, no new request)."""
        rel = rel.strip("/")
        if not rel:
            return self
        head = rel + "/"
        files = {k[len(head):]: v for k, v in self.files.items() if k.startswith(head)}
        broken = tuple(k[len(head):] for k in self.broken if k.startswith(head))
        return Tree(self.uri_of(rel), files, self.local_root / rel if self.local_root else None, self.cache,
                    broken=broken)

    # ------------------------------------------------------------------------------------- fetching

    def local(self, rel: str) -> Path:
        """A local path holding the file `rel` (from S3 through the node's checkpoint cache, downloaded once)."""
        if rel not in self.files:
            raise CheckpointError(f"{self.uri_of(rel)}: no such file")
        if self.local_root is not None:
            return self.local_root / rel
        entry = self.files[rel]
        try:
            return checkpoint_cache(self.cache).fetch(self.uri_of(rel), entry.size, entry.etag)
        except storage.StorageError as exc:
            if exc.retryable:  # an unreachable or busy endpoint: retried, not bad input
                raise
            raise CheckpointError(str(exc)) from None

    def local_dir(self, rel: str, keep: Callable[[str], bool] | None = None) -> Path:
        """A local folder holding the files under `rel` (those `keep` accepts, by name within `rel`)."""
        rel = rel.strip("/")
        head = rel + "/" if rel else ""
        chosen = [k for k in self.under(rel) if keep is None or keep(k[len(head):])]
        for key in chosen:
            self.local(key)
        if self.local_root is not None:
            return self.local_root / rel
        return checkpoint_cache(self.cache).path_of(self.uri_of(rel))

    def read_text(self, rel: str) -> str:
        try:
            return self.local(rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{self.uri_of(rel)}: cannot be read ({exc})") from None


__all__ = ["Entry", "Tree", "join_uri", "parent_uri"]
