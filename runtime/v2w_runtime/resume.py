"""Resuming a run: the entries an earlier attempt of the same command already finished.

A restarted pod (or a user re-running a command) starts the same run again. An entry whose run record
names the same input, prompts, seed and settings was finished by an earlier attempt and is not made
again: with the same seed and settings it would come out the same. A succeeded entry also needs its MP4
(published last, after the record); a blocked entry has none, and its record with the guardrail's
verdict is all there is: it is kept as blocked rather than sent through the guardrail a second time,
which costs GPU time and could answer differently. Anything else is made again.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from v2w_api.manifest import VideoResult

from . import storage
from .outputs import OutputTarget, side_file_names

if TYPE_CHECKING:
    from .jobs import Job

log = logging.getLogger("v2w_runtime")

FINISHED = ("succeeded", "blocked")  # record statuses of a finished entry; failures write no record


def _read_record(target: OutputTarget, name: str) -> dict | None:
    try:
        if target.uri:
            with tempfile.TemporaryDirectory(prefix="v2w-resume-") as tmp:
                raw = storage.read_bytes(target.uri_of(name), Path(tmp))
        else:
            raw = target.path(name).read_bytes()
        record = json.loads(raw.decode("utf-8"))
    except (OSError, storage.StorageError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("cannot read %s, the entry is made again: %s", name, exc)
        return None
    return record if isinstance(record, dict) else None


def _same_run(record: dict, job: "Job", settings: dict) -> bool:
    # The record holds the settings as written to JSON: compare them in that form.
    as_written = json.loads(json.dumps(settings, default=str))
    return (
        record.get("status") in FINISHED
        and record.get("video") == job.name
        and record.get("input") == job.input
        and record.get("prompt") == job.prompt
        and record.get("negative_prompt") == job.negative_prompt
        and record.get("seed") == job.seed
        and record.get("settings") == as_written
    )


def finished_entries(target: OutputTarget, jobs: list["Job"], settings: dict) -> dict[int, VideoResult]:
    """The results of the entries already finished by an earlier attempt, by entry index."""
    names = target.names()
    done: dict[int, VideoResult] = {}
    for job in jobs:
        files = side_file_names(job.name)
        if job.error or files["record"] not in names:
            continue
        record = _read_record(target, files["record"])
        if record is None or not _same_run(record, job, settings):
            continue
        blocked = record["status"] == "blocked"
        if not blocked and job.name not in names:
            continue  # the record went up, the MP4 did not: the attempt died in between
        done[job.index] = VideoResult(
            name=PurePosixPath(job.name).name, status=record["status"], input=job.input, seed=job.seed,
            prompt=job.prompt, refined_prompt=record.get("refined_prompt"),
            uri=None if blocked else target.uri_of(job.name),
            reason=record.get("reason") if blocked else None,
            guardrail_checked=record.get("guardrail_checked"),
            guardrail_components=record.get("guardrail_components") or [],
            files={role: target.uri_of(name) for role, name in files.items()},
            timings=record.get("timings_s") or {}, warnings=record.get("warnings") or [],
        )
        if blocked:
            log.info("video %s: blocked by the guardrail in an earlier attempt, kept as blocked (%s)",
                     job.name, record.get("reason"))
        else:
            log.info("video %s: already made by an earlier attempt, not made again", job.name)
    return done


__all__ = ["finished_entries"]
