"""Where the guardrail's checkpoints are: NVIDIA's `nvidia/Cosmos-Guardrail1` release and Meta's
`meta-llama/Llama-Guard-3-8B`, as upstream's download script lays them out under `checkpoints/`.

The guardrail checkpoint (`--guardrail_checkpoint`, spec `guardrail.checkpoint`) is a local folder, a
`pvc://<claim>/<path>` or an `s3://` prefix holding either
- the Cosmos-Guardrail1 folder itself (`…/checkpoints/nvidia/Cosmos-Guardrail1`), or
- the root of upstream's checkpoint tree (`…/checkpoints`, holding `nvidia/Cosmos-Guardrail1`).

Llama Guard 3 is looked for beside Cosmos-Guardrail1 in the tree (`../../meta-llama/Llama-Guard-3-8B` from
the Cosmos-Guardrail1 folder) and under the given folder (`<checkpoint>/meta-llama/Llama-Guard-3-8B`, which
for a tree root is the same place); when neither holds it the guardrail fails closed naming both.

Every file the guardrail reads is checked before any weight loads, and a missing one is named with the
path where it was looked for. From S3 only what the guardrail reads is downloaded (once per node, through
the checkpoint cache in $V2W_CACHE_DIR): not a Hugging Face cache's `blobs/` (its snapshot files are what is read), nor Llama
Guard's `original/` consolidated weights (upstream's download skips them too).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from v2w_runtime.interfaces import GuardrailError

GUARDRAIL1 = "nvidia/Cosmos-Guardrail1"
LLAMA_GUARD = "meta-llama/Llama-Guard-3-8B"
# What the guardrail reads from a Cosmos-Guardrail1 folder ("<rev>" is the snapshot refs/main names, or the
# only one there is).
BLOCKLIST_DIRS = ("blocklist/custom", "blocklist/whitelist", "blocklist/exact_match", "blocklist/nltk_data")
NLTK_FILES = ("blocklist/nltk_data/corpora/wordnet.zip", "blocklist/nltk_data/tokenizers/punkt_tab/english")
SAFETY_FILTER = "video_content_safety_filter/safety_filter.pt"
SIGLIP_CACHE = "video_content_safety_filter/models--google--siglip-so400m-patch14-384"
SIGLIP_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
RETINAFACE = "face_blur_filter/Resnet50_Final.pth"
GUARDRAIL1_MARKERS = ("blocklist", "video_content_safety_filter", "face_blur_filter")
LLAMA_GUARD_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
SAFETENSORS_INDEX = "model.safetensors.index.json"
# Not downloaded from S3: what the guardrail never reads.
_SKIPPED_PARTS = {"blobs", "original"}


@dataclass(frozen=True)
class GuardrailRelease:
    """The two local folders the guardrail reads, and how they were found."""

    source: str
    layout: Literal["tree", "guardrail1"]
    guardrail_dir: Path
    llama_guard_dir: Path
    llama_guard_source: str
    checked: list[str] = field(default_factory=list)  # every file checked, relative to its folder


# -------------------------------------------------------------------------------- places (local, S3)


class _Place:
    """A folder given as a local path, pvc:// URI or s3:// prefix; `has(rel)` for files and folders."""

    def __init__(self, uri: str) -> None:
        from v2w_runtime import storage

        self.uri = uri.rstrip("/") or uri
        self.s3 = storage.is_s3(uri)
        self._objects: dict[str, tuple[int, str]] | None = None  # S3: key -> (size, ETag), listed once
        self.path = None if self.s3 else storage.local_path(uri)

    def child(self, rel: str) -> "_Place":
        return _Place(self.where(rel))

    def parent(self, levels: int) -> "_Place | None":
        """The folder `levels` up, or None where that leaves the bucket, the volume claim or the file system."""
        from v2w_runtime import storage

        if self.s3:
            loc = storage.parse_s3(self.uri)
            parts = PurePosixPath(loc.key).parts if loc.key else ()
            if len(parts) < levels:
                return None
            key = "/".join(parts[: len(parts) - levels])
            return _Place(f"s3://{loc.bucket}/{key}" if key else f"s3://{loc.bucket}")
        if self.uri.startswith("pvc://"):
            parts = PurePosixPath(self.uri[len("pvc://"):]).parts
            if len(parts) - levels < 1:
                return None
            return _Place("pvc://" + "/".join(parts[: len(parts) - levels]))
        path = Path(self.uri).expanduser().absolute()
        if len(path.parts) <= levels:
            return None
        for _ in range(levels):
            path = path.parent
        return _Place(str(path))

    def objects(self) -> dict[str, tuple[int, str]]:
        from v2w_runtime import storage

        if self._objects is None:
            try:
                self._objects = storage.s3_list_objects(self.uri)
            except storage.StorageError as exc:
                if exc.retryable:  # an endpoint away for now: the run is retried, not refused
                    raise
                raise GuardrailError(f"cannot read the guardrail checkpoint: {exc}") from exc
        return self._objects

    def keys(self) -> list[str]:
        return list(self.objects())

    def has(self, rel: str) -> bool:
        """A file or a non-empty folder at `rel`."""
        if not self.s3:
            return (self.path / rel).exists()
        rel = rel.strip("/")
        return any(k == rel or k.startswith(rel + "/") for k in self.keys())

    def exists(self) -> bool:
        return bool(self.keys()) if self.s3 else self.path.is_dir()

    def read_text(self, rel: str, cache: Path) -> str:
        if not self.s3:
            return (self.path / rel).read_text()
        return self._fetch(rel.strip("/"), cache).read_text()

    def _fetch(self, rel: str, cache: Path) -> Path:
        """The S3 object `rel` through the node's checkpoint cache."""
        from v2w_runtime import storage
        from v2w_runtime.cache import checkpoint_cache

        if ".." in PurePosixPath(rel).parts:
            raise GuardrailError(f"{self.uri}: object key {rel!r} climbs out of the prefix")
        if rel not in self.objects():
            raise GuardrailError(f"cannot read the guardrail checkpoint: {self.where(rel)}: no such object")
        size, etag = self.objects()[rel]
        try:
            return checkpoint_cache(cache).fetch(self.where(rel), size, etag)
        except storage.StorageError as exc:
            if exc.retryable:  # an endpoint away for now: the run is retried, not refused
                raise
            raise GuardrailError(f"cannot read the guardrail checkpoint: {exc}") from exc

    def where(self, rel: str) -> str:
        """The URI or path of `rel` under this place."""
        return f"{self.uri.rstrip('/')}/{rel.strip('/')}"

    def local(self, cache: Path) -> Path:
        """A local folder with what the guardrail reads of this place (S3 through the node's checkpoint cache)."""
        if not self.s3:
            return self.path
        from v2w_runtime.cache import checkpoint_cache

        for rel in self.keys():
            if not _SKIPPED_PARTS & set(PurePosixPath(rel).parts[:-1]):
                self._fetch(rel, cache)
        folder = checkpoint_cache(cache).path_of(self.uri)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _cache_dir() -> Path:
    from v2w_runtime.checkpoints.common import cache_dir

    return cache_dir()


# ---------------------------------------------------------------------------------------- locating


def _siglip_snapshot(place: _Place, cache: Path) -> str | None:
    """The snapshot folder (relative to the Cosmos-Guardrail1 folder) of the SigLIP cache, if one can be told."""
    ref = f"{SIGLIP_CACHE}/refs/main"
    if place.has(ref):
        rev = place.read_text(ref, cache).strip()
        return f"{SIGLIP_CACHE}/snapshots/{rev}"
    if place.s3:
        prefix = f"{SIGLIP_CACHE}/snapshots/"
        revs = sorted({k[len(prefix):].split("/", 1)[0] for k in place.keys() if k.startswith(prefix)})
    else:
        folder = place.path / SIGLIP_CACHE / "snapshots"
        revs = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return f"{SIGLIP_CACHE}/snapshots/{revs[0]}" if len(revs) == 1 else None


def guardrail1_files(place: _Place, cache: Path) -> tuple[list[str], list[str]]:
    """(files the guardrail reads from a Cosmos-Guardrail1 folder, those missing), relative to it."""
    snapshot = _siglip_snapshot(place, cache)
    siglip = [f"{snapshot}/{name}" for name in SIGLIP_FILES] if snapshot else [
        f"{SIGLIP_CACHE}/snapshots/<rev>/{name} (with refs/main naming <rev>)" for name in SIGLIP_FILES]
    wanted = [*BLOCKLIST_DIRS, *NLTK_FILES, SAFETY_FILTER, *siglip, RETINAFACE]
    missing = [rel for rel in wanted if "<rev>" in rel or not place.has(rel)]
    return wanted, missing


def llama_guard_files(place: _Place, cache: Path) -> tuple[list[str], list[str]]:
    """(files read from a Llama Guard folder, those missing): config, tokenizer, and every safetensors shard
    its index names (or one model.safetensors)."""
    wanted = list(LLAMA_GUARD_FILES)
    if place.has(SAFETENSORS_INDEX):
        wanted.append(SAFETENSORS_INDEX)
        try:
            index = json.loads(place.read_text(SAFETENSORS_INDEX, cache))
            shards = sorted(set(index["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GuardrailError(f"{place.where(SAFETENSORS_INDEX)} is not a safetensors index: {exc}") from exc
        wanted += shards
    else:
        wanted.append("model.safetensors (or model.safetensors.index.json and its shards)")
    missing = [rel for rel in wanted if " " in rel or not place.has(rel)]
    return wanted, missing


@dataclass(frozen=True)
class FoundRelease:
    """Where a guardrail checkpoint's two folders are, every file the guardrail reads checked, nothing fetched."""

    source: str
    layout: Literal["tree", "guardrail1"]
    guardrail: "_Place"
    llama_guard: "_Place"
    checked: list[str]


def locate(source: str | os.PathLike) -> GuardrailRelease:
    """Find Cosmos-Guardrail1 and Llama Guard 3 for a guardrail checkpoint, check that every file the guardrail
    reads is there, and return local folders (S3 downloaded). Raises GuardrailError naming what is missing."""
    found = find(source)
    cache = _cache_dir()
    return GuardrailRelease(
        source=found.source, layout=found.layout, guardrail_dir=found.guardrail.local(cache),
        llama_guard_dir=found.llama_guard.local(cache), llama_guard_source=found.llama_guard.uri,
        checked=found.checked)


def find(source: str | os.PathLike) -> FoundRelease:
    """`locate` without fetching any weight (what `--verify_only` and `checkpoints verify` report)."""
    from v2w_runtime import storage

    text = str(source)
    cache = _cache_dir()
    try:
        given = _Place(text)
    except storage.StorageError as exc:
        if exc.retryable:  # an endpoint away for now: the run is retried, not refused
            raise
        raise GuardrailError(f"cannot read the guardrail checkpoint: {exc}") from exc
    if not given.exists():
        raise GuardrailError(f"cannot read the guardrail checkpoint: {text}: no such folder")
    if given.has(GUARDRAIL1):
        layout, guard = "tree", given.child(GUARDRAIL1)
    elif any(given.has(marker) for marker in GUARDRAIL1_MARKERS):
        layout, guard = "guardrail1", given
    else:
        hint = ""
        if given.has("llm_guard") or given.has("video_classifier"):
            hint = (" It holds the project's former guardrail layout (llm_guard/, video_classifier/), which is no "
                    "longer read: use NVIDIA's Cosmos-Guardrail1 release and Llama Guard 3.")
        raise GuardrailError(
            f"{text} is not a guardrail checkpoint: looked for {given.where(GUARDRAIL1)}/ (upstream's checkpoint "
            f"tree) and for {', '.join(given.where(m) + '/' for m in GUARDRAIL1_MARKERS)} (the Cosmos-Guardrail1 "
            f"folder itself).{hint}")
    checked, missing = guardrail1_files(guard, cache)
    if missing:
        raise GuardrailError(f"the Cosmos-Guardrail1 folder {guard.uri} is incomplete: missing "
                             + ", ".join(guard.where(rel) for rel in missing))

    # Llama Guard: beside Cosmos-Guardrail1 in the tree, or under the given folder.
    candidates: list[_Place] = []
    tree = guard.parent(2)
    if tree is not None:
        candidates.append(tree.child(LLAMA_GUARD))
    under = given.child(LLAMA_GUARD)
    if under.uri not in {c.uri for c in candidates}:
        candidates.append(under)
    found = next((c for c in candidates if c.has("config.json")), None)
    if found is None:
        looked = " and ".join(f"{c.uri}/" for c in candidates)
        raise GuardrailError(f"Llama Guard 3 ({LLAMA_GUARD}) not found: looked for {looked} (config.json, "
                             f"tokenizer and safetensors shards, as upstream's download script writes them)")
    lg_checked, lg_missing = llama_guard_files(found, cache)
    if lg_missing:
        raise GuardrailError(f"the Llama Guard 3 folder {found.uri} is incomplete: missing "
                             + ", ".join(found.where(rel) for rel in lg_missing))
    return FoundRelease(
        source=text, layout=layout, guardrail=guard, llama_guard=found,
        checked=[f"{GUARDRAIL1}/{rel}" for rel in checked] + [f"{LLAMA_GUARD}/{rel}" for rel in lg_checked],
    )


__all__ = ["GUARDRAIL1", "LLAMA_GUARD", "FoundRelease", "GuardrailRelease", "RETINAFACE", "SAFETY_FILTER", "SIGLIP_CACHE", "find", "locate"]
