"""Cold start: the seconds from the pod's start to the end of the first sampling step, and where they went.

The clock starts when the container's process started: `v2w-launch` (the pods' command, `launch.py`)
exports its own process start time as `V2W_START_TIME` (seconds since the epoch) before torchrun starts the
workers, who inherit it; a runtime started without the launcher (by hand, or torchrun directly) uses its own
process start time. An earlier `V2W_START_TIME` in the environment (a wrapper of the image that wants its own
start counted) is kept. So the figure covers the interpreter's start, imports, rank setup, downloads,
loading and the first step; it does not cover what happens before the container's command runs (scheduling,
image pull, volume mounts: the pod's events tell those). `/proc/1` was not used: outside a container (and in
the local stack, whose kubelet stand-in runs pods as processes) it is the machine's init.

The parts (each a union of wall-clock intervals, so a wait shared by two threads counts once):
- `download`: time in the node's checkpoint cache (`cache.CheckpointCache.fetch`): S3 listings' HEADs, waits
  on another rank's download, the ranged GETs and the integrity checks; near zero on a warm cache;
- `load`: loading the guardrail, the refiner and the model (`Run.load_generator`), downloads inside it not
  counted again;
- `compile`: from the start of the first video's sampling to the end of its first step: its prompt
  encoding, the conditioning's VAE encode and the first DiT step, with the kernels compiled or taken from
  the compile cache (`$V2W_CACHE_DIR/torch-compile`) on the way;
- `other`: the rest (interpreter and imports, rank setup, reading the input, the text guardrail and refiner).

Rank 0's `ProgressReporter` puts the figures into progress.json once the first step ends, and `Run.result`
into result.json; the operator copies them into `status.coldStart`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("v2w_runtime")

START_ENV = "V2W_START_TIME"
PARTS = ("download", "load", "compile")


def process_start_time(pid: int | str = "self") -> float | None:
    """When a process started, in seconds since the epoch (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5), counted after the ")" that closes the command name
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def export_start_time() -> None:
    """For the launcher: pass its own start time to the workers it starts (an earlier one is kept)."""
    if not os.environ.get(START_ENV):
        start = process_start_time() or time.time()
        os.environ[START_ENV] = f"{start:.3f}"


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _length(spans: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in spans)


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


class ColdStart:
    """The process's cold-start clock: intervals per part, then the figures once the first step ends."""

    def __init__(self, origin: float | None = None) -> None:
        self.origin = origin if origin is not None else self._origin()
        self._spans: dict[str, list[tuple[float, float]]] = {"download": [], "load": []}
        self._lock = threading.Lock()
        self._sampling: float | None = None
        self.figures: dict[str, float] | None = None

    @staticmethod
    def _origin() -> float:
        try:
            return float(os.environ[START_ENV])
        except (KeyError, ValueError):
            return process_start_time() or time.time()

    @contextmanager
    def span(self, part: str) -> Iterator[None]:
        """Count the wall time of the block as `part` (download or load)."""
        start = time.time()
        try:
            yield
        finally:
            with self._lock:
                self._spans[part].append((start, time.time()))

    def sampling_started(self) -> None:
        if self._sampling is None and self.figures is None:
            self._sampling = time.time()

    def first_step(self, now: float | None = None) -> dict[str, float] | None:
        """The figures, computed at the end of the process's first sampling step (None on later calls)."""
        if self.figures is not None:
            return None
        now = now if now is not None else time.time()
        with self._lock:
            download = _union([s for s in self._spans["download"] if s[0] < now])
            loading = _union([s for s in self._spans["load"] if s[0] < now])
        sampling = self._sampling if self._sampling is not None else now
        total = max(0.0, now - self.origin)
        parts = {
            "download": _length(download),
            "load": max(0.0, _length(loading) - _overlap(loading, download)),
            "compile": max(0.0, now - sampling),
        }
        parts["other"] = max(0.0, total - sum(parts.values()))
        self.figures = {"seconds": round(total, 2), **{k: round(v, 2) for k, v in parts.items()}}
        log.info("cold start: %.1f s to the first sampling step (download %.1f s, load %.1f s, compile and first "
                 "step %.1f s, other %.1f s)", total, parts["download"], parts["load"], parts["compile"], parts["other"])
        return self.figures


_clock: ColdStart | None = None


def clock() -> ColdStart:
    """This process's cold-start clock (made at first use; its origin comes from the environment then)."""
    global _clock
    if _clock is None:
        _clock = ColdStart()
    return _clock


def reset(origin: float | None = None) -> ColdStart:
    """A new clock (tests, and a process that runs the runtime more than once)."""
    global _clock
    _clock = ColdStart(origin)
    return _clock


__all__ = ["ColdStart", "START_ENV", "clock", "export_start_time", "process_start_time", "reset"]
