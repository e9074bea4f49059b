"""Checking checkpoints before any GPU time is spent: what was found, in which layout, what is missing.

Two entry points share the checks:

* `verify_tree` (`python -m v2w_runtime.checkpoints verify DIR`): a whole location: each model size in it,
  every component with its layout, files and size, the DiT variants, the refiner's and guardrail's release
  folders of an upstream tree, optionally the release's MD5 sums;
* `verify_run` (`--verify_only` of both runtime programs): every checkpoint one run would load (the model,
  a `--dit_path` file, the refiner, the critic, the guardrail folder), with the run's own defaults.

Nothing is loaded: files are checked by their headers (a safetensors header against the file's size, a
PyTorch zip's directory, JSON parses), a DiT's size by its config or, for a native file, by its shapes
read memory-mapped. In S3 only the listing is looked at (sizes), unless MD5 sums are asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .common import CheckpointError, describe_architecture, human_size, size_of
from .files import check_file
from .layouts import (
    LAYOUT_UPSTREAM,
    UPSTREAM_GUARDRAIL,
    UPSTREAM_REASON1,
    WHAT,
    ModelSource,
    model_folder,
    resolve_model,
)
from .md5 import UPSTREAM_MD5, md5_of
from .tree import Tree, join_uri

_CHECKED_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".json")
_MODEL_NAME = re.compile(r"Cosmos-Predict2-([0-9.]+B)-Video2World")


@dataclass
class Check:
    """One finding: what was checked, whether it is usable, and where it is or what was looked for."""

    what: str
    ok: bool
    detail: str
    bytes: int | None = None

    def line(self) -> str:
        mark = "ok     " if self.ok else "MISSING" if self.detail.startswith("looked for") else "PROBLEM"
        size = f"  [{human_size(self.bytes)}]" if self.bytes else ""
        return f"  {mark}  {self.what}: {self.detail}{size}"


@dataclass
class Report:
    title: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, what: str, ok: bool, detail: str, size: int | None = None) -> Check:
        check = Check(what, ok, detail, size)
        self.checks.append(check)
        return check

    def text(self) -> str:
        lines = [self.title, *(c.line() for c in self.checks), *(f"  note: {n}" for n in self.notes)]
        bad = [c for c in self.checks if not c.ok]
        lines.append(f"{'OK' if not bad else 'NOT USABLE'}: {len(self.checks) - len(bad)} of {len(self.checks)} "
                     "checks passed" + (f"; {len(bad)} failed" if bad else ""))
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"title": self.title, "ok": self.ok, "notes": self.notes,
                "checks": [c.__dict__ for c in self.checks]}


# ------------------------------------------------------------------------------------------ pieces


def check_model(report: Report, source: ModelSource, label: str, *, read_headers: bool = True) -> None:
    """Every component of a located model: found where and in which layout, or what was looked for; the
    files' headers (local trees); the DiT's size against the model size."""
    for name, found in source.components.items():
        detail = found.describe()
        problems = _header_problems(found.tree, found.files) if read_headers and found.files else []
        report.add(f"{label} {WHAT[name]}", not problems, "; ".join(problems) or detail, found.bytes or None)
    for name, why in source.missing.items():
        report.add(f"{label} {WHAT[name]}", False, why)
    if source.variants:
        report.notes.append(f"{label}: DiT variants in {model_folder(source.model_size)}/: {', '.join(source.variants)}"
                            + (f"; this run uses {source.variant}" if source.variant else ""))
    report.notes += [f"{label}: {note}" for note in source.notes]
    if source.missing or not read_headers or "transformer" not in source.components:
        return
    found = source.components["transformer"]
    if found.kind == "native" and found.tree.is_s3:
        report.notes.append(f"{label}: the DiT's size was not read (the native file is in S3; a run reads it first)")
        return
    try:
        config = source.architecture()
    except CheckpointError as exc:
        report.add(f"{label} DiT size", False, str(exc))
    else:
        known = size_of(config)
        report.add(f"{label} DiT size", True, f"{describe_architecture(config)}"
                   + (f" (the {known} model)" if known else " (not a released size: a test or custom model)"))
    finally:
        source.release_dit()


def check_folder(report: Report, what: str, uri: str, *, needs: tuple[str, ...] = (), weights: bool = False,
                 read_headers: bool = True) -> None:
    """A Hub-style model folder (the refiner's Cosmos-Reason1, the guardrail's release folders): present,
    not empty, with the files `needs` names and, with `weights`, a weight file."""
    try:
        tree = Tree.open(uri)
    except CheckpointError as exc:
        why = "no such folder" if str(exc).endswith("no such folder") else str(exc)
        report.add(what, False, f"looked for the folder {uri} ({why})")
        return
    names = {PurePosixPath(f).name for f in tree.files}
    absent = [n for n in needs if n not in names]
    if weights and not any(n.endswith((".safetensors", ".bin", ".pt", ".pth")) for n in names):
        absent.append("weights (*.safetensors)")
    if absent:
        report.add(what, False, f"looked for {', '.join(absent)} in {uri}")
        return
    problems = _header_problems(tree, sorted(tree.files)) if read_headers else []
    total = sum(e.size for e in tree.files.values())
    report.add(what, not problems, "; ".join(problems) or f"{uri} ({len(tree.files)} file(s))", total)


def _header_problems(tree: Tree, files) -> list[str]:
    if tree.is_s3:
        return []
    problems = []
    for rel in files:
        if rel.endswith(_CHECKED_SUFFIXES):
            problem = check_file(tree.local(rel), tree.uri_of(rel))
            if problem:
                problems.append(f"{tree.uri_of(rel)} {problem}")
    return problems


def check_md5(report: Report, tree: Tree, table: dict[str, str], source_name: str) -> None:
    """The files of `table` the tree has, summed (S3: an object's ETag, where it is one part's MD5)."""
    present = [rel for rel in table if tree.has(rel)]
    for rel in present:
        if tree.is_s3:
            etag = tree.files[rel].etag
            if "-" in etag or not etag:
                report.notes.append(f"MD5 of {rel} not checked: uploaded in parts, its ETag is no MD5")
                continue
            actual = etag.lower()
        else:
            actual = md5_of(tree.local(rel))
        ok = actual == table[rel]
        report.add(f"MD5 {rel}", ok, "matches " + source_name if ok else
                   f"{actual} where {source_name} says {table[rel]}: a damaged or different file")
    absent = len(table) - len(present)
    if absent:
        report.notes.append(f"{absent} file(s) of {source_name} are not in this tree (not needed, or not downloaded)")


# ------------------------------------------------------------------------------------------ a tree


def sizes_in(uri: str) -> list[str]:
    """The model sizes a location holds (an upstream tree's model folders, a cache's repositories)."""
    tree = Tree.open(uri)
    found = {m.group(1) for f in tree.files if (m := _MODEL_NAME.search(f))}
    return [s for s in ("2B", "14B") if s in found]


def verify_tree(uri: str, sizes: list[str] | None = None, resolution: int = 720, fps: int = 16, *,
                md5: dict[str, str] | None = None, md5_source: str = "the given table",
                refiner: bool = True, guardrail: bool = True) -> Report:
    """Everything `uri` holds for Video2World: each model size, and in an upstream tree its refiner's and
    guardrail's folders; with `md5`, the sums of the files that table names."""
    report = Report(f"checkpoint {uri}")
    try:
        tree = Tree.open(uri)
    except CheckpointError as exc:
        report.add("location", False, f"looked for {uri}: {exc}")
        return report
    wanted = sizes or sizes_in(uri) or ["2B"]
    upstream_root = None
    for size in wanted:
        try:
            source = resolve_model(uri, size, resolution, fps)
        except CheckpointError as exc:
            report.add(f"model {size}", False, str(exc))
            continue
        report.title = f"checkpoint {uri}: {source.layout}"
        if source.layout == LAYOUT_UPSTREAM:
            upstream_root = source.upstream_root
        check_model(report, source, f"model {size}")
    if upstream_root is not None:
        if refiner:
            check_folder(report, "prompt refiner and critic (Cosmos-Reason1)", join_uri(upstream_root, UPSTREAM_REASON1),
                         needs=("config.json",), weights=True)
        if guardrail:
            check_guardrail(report, join_uri(upstream_root, UPSTREAM_GUARDRAIL))
    if md5 is not None:
        root_tree = tree if upstream_root in (None, uri) else Tree.open(upstream_root)
        check_md5(report, root_tree, md5, md5_source)
    return report


def upstream_table() -> tuple[dict[str, str], str]:
    return dict(UPSTREAM_MD5), "upstream's MD5 table (cosmos-predict2 scripts/download_checkpoints.py)"


# ------------------------------------------------------------------------------------------- a run


def verify_run(config, mode: str, source: ModelSource | None = None) -> Report:
    """Every checkpoint the run of `config` would load, with its defaults (an upstream tree's refiner and
    guardrail folders included). No weight is loaded and nothing is written."""
    report = Report(f"checkpoints of this {mode} run")
    generating = not (config.best_of_n is not None and config.best_of_n.skip_generation)
    if generating:
        try:
            source = source or resolve_model(config.checkpoint, config.model.size, config.generation.resolution,
                                              config.generation.fps)
        except CheckpointError as exc:
            report.add("model", False, str(exc))
        else:
            report.title += f" (model: {source.layout})"
            check_model(report, source, f"model {config.model.size}")
        if config.model.dit_path:
            _check_dit_path(report, config.model.dit_path)
    if generating and config.prompt_refiner.enabled:
        check_folder(report, "prompt refiner", config.refiner_checkpoint, needs=("config.json",), weights=True)
    if config.best_of_n is not None:
        check_folder(report, "critic", config.critic_checkpoint, needs=("config.json",), weights=True)
    if generating and config.guardrail.enabled:
        check_guardrail(report, config.guardrail_checkpoint)
    return report


def check_guardrail(report: Report, uri: str) -> None:
    """The guardrail's release folders, checked file by file as the guardrail will read them (no weight fetched)."""
    from ..guardrail.release import find
    from ..interfaces import GuardrailError

    from .. import storage

    try:
        found = find(uri)
    except (GuardrailError, storage.StorageError) as exc:
        report.add("guardrail", False, f"looked for NVIDIA's release at {uri}: {exc}")
        return
    report.add("guardrail", True, f"{found.guardrail.uri} (Cosmos-Guardrail1, {found.layout} layout) with Llama Guard 3 "
               f"at {found.llama_guard.uri}: {len(found.checked)} files the guardrail reads, all present")


def _check_dit_path(report: Report, uri: str) -> None:
    from .. import storage
    from ..cache import fetch_checkpoint_file
    from .common import cache_dir

    try:
        path = fetch_checkpoint_file(uri, cache_dir())
    except storage.StorageError as exc:
        report.add("--dit_path", False, f"looked for {uri} ({exc})")
        return
    problem = check_file(path, uri)
    report.add("--dit_path", problem is None, problem and f"{uri} {problem}" or uri, path.stat().st_size)


def dumps(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2)


__all__ = ["Check", "Report", "check_folder", "check_md5", "check_model", "dumps", "sizes_in", "upstream_table",
           "verify_run", "verify_tree"]
