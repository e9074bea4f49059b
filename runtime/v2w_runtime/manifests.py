"""progress.json and result.json: the runtime's side of the contract with the operator.

A run started by hand names them after itself (`<record>.progress.json`, `<record>.result.json`, see
`RunOutput.record_name`) and the output target carries the names. Only the global leader (rank 0) writes them. progress.json is rewritten at every stage change and every
few sampler steps (or at most every few seconds); result.json is written once, last.
"""

from __future__ import annotations

import logging
import time

from v2w_api.manifest import (
    ColdStartFigures,
    ProgressManifest,
    ResultManifest,
    Stage,
    VideoResult,
    utcnow,
)

from . import storage
from .coldstart import clock
from .outputs import OutputTarget, write_text

# Rewrite progress.json at most this often during sampling (seconds), and at least every 1/10 of the steps.
STEP_INTERVAL_S = 5.0
# A line in the log (`kubectl logs`) with the step and the time left, this often while sampling (seconds).
STEP_LOG_INTERVAL_S = 10.0

log = logging.getLogger("v2w_runtime")


class ProgressReporter:
    """Keeps progress.json current; does nothing on ranks that are not the global leader."""

    def __init__(self, target: OutputTarget, videos_total: int, total_steps: int, enabled: bool = True) -> None:
        self.target = target
        self.enabled = enabled
        self.state = ProgressManifest(stage=Stage.STARTING, videos_total=videos_total, total_steps=total_steps)
        self._last_step_write = 0.0
        self._sampling_started: float | None = None
        self._last_step_log = 0.0
        self.write()

    def write(self) -> None:
        if not self.enabled:
            return
        self.state.updated_at = utcnow()
        name = self.target.progress_file
        path = self.target.path(name)
        write_text(path, self.state.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n")
        if self.target.uri:
            storage.s3_put_bytes(path.read_bytes(), self.target.uri_of(name))

    def stage(self, stage: Stage, current: str | None = None, message: str | None = None) -> None:
        self.state.stage = stage
        if current is not None:
            self.state.current = current
        self.state.message = message
        if stage != Stage.SAMPLING:
            self.state.step = 0
        else:
            clock().sampling_started()
        self.write()

    def step(self, step: int, total: int) -> None:
        self.state.step, self.state.total_steps = step, total
        now = time.monotonic()
        if step <= 1 or self._sampling_started is None:
            self._sampling_started, self._last_step_log = now - 1e-9, 0.0
        every = max(1, total // 10)
        figures = clock().first_step() if step >= 1 else None
        if figures is not None:
            self.state.cold_start = ColdStartFigures(**figures)
        if figures is not None or step == total or step % every == 0 or now - self._last_step_write >= STEP_INTERVAL_S:
            self._last_step_write = now
            self.write()
        if self.enabled and (step == total or now - self._last_step_log >= STEP_LOG_INTERVAL_S):
            self._last_step_log = now
            per_step = (now - self._sampling_started) / max(step, 1)
            log.info("%s: step %d/%d, %.1f s a step, %s", self.state.current or "sampling", step, total, per_step,
                     "done" if step == total else f"about {per_step * (total - step):.0f} s left")

    def video_done(self, total: int | None = None) -> None:
        """One more video made, or `total` made so far when the count comes from every group."""
        self.state.videos_done = self.state.videos_done + 1 if total is None else total
        self.write()


def summarize(videos: list[VideoResult]) -> tuple[bool, str]:
    """Whether a run of these videos succeeded (a guardrail block is handled, a failure is not) and its summary."""
    counts: dict[str, int] = {}
    for v in videos:
        counts[v.status] = counts.get(v.status, 0) + 1
    ok = all(v.status in ("succeeded", "blocked") for v in videos)
    return ok, ", ".join(f"{n} {status}" for status, n in counts.items()) or "no videos"


def write_result(target: OutputTarget, result: ResultManifest) -> str:
    """Write the run's result file locally and upload it (last of all files); returns its URI or path."""
    path = target.path(target.result_file)
    write_text(path, result.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n")
    if target.uri:
        return storage.s3_put_bytes(path.read_bytes(), target.uri_of(target.result_file))
    return str(path)


__all__ = ["ProgressReporter", "summarize", "write_result"]
