"""Warming the node while the workers start: the model's files fetched and read into the page cache.

A pod's workers spend 15-20 s starting (the interpreter, torch, diffusers, transformers, FlashAttention-4)
before they read a byte of checkpoint, and the load then waits on the disk (t5-11b's encoder alone is 18 GiB
in float32: 13 s at 1.4 GB/s) or on S3. The launcher (`launch.py`) starts first and afterwards only waits
for its workers, so it uses that time: it locates the run's model as the runner will and, in a background
thread, fetches its files into the node's checkpoint cache (from S3: the one download of the node, which the
workers then wait for as they would for another rank's) and reads them once, so that the workers' load
finds them in memory. Only what the load reads is read (of t5-11b, the encoder's byte ranges).

Best effort: whatever goes wrong here is logged and left to the runner, which finds it again and reports it
as it always does. It is skipped when the files would not fit in the memory the pod may use for them (the
reads would only push each other out), and with `V2W_PREFETCH=0`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("v2w_runtime.prefetch")

ENV = "V2W_PREFETCH"
PROGRAMS = {"v2w_runtime.video2world": "video2world", "v2w_runtime.bestofn": "bestofn"}
# At most this share of the memory available to the pod goes to prefetched files (the rest is the workers').
MEMORY_SHARE = 0.5


def start(module: str, program_args: list[str]) -> threading.Thread | None:
    """For the launcher: warm the node for the run `module program_args` describes, in a daemon thread."""
    program = PROGRAMS.get(module)
    if program is None or os.environ.get(ENV, "1") == "0":
        return None
    if not log.hasHandlers():  # the launcher configures no logging: its lines go to the pod's log as the workers' do
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    thread = threading.Thread(target=_run, args=(program, program_args), name="v2w-prefetch", daemon=True)
    thread.start()
    return thread


def _run(program: str, program_args: list[str]) -> None:
    try:
        warm(_config(program, program_args))
    except Exception as exc:  # noqa: BLE001 - best effort: the runner meets the same problem and reports it
        log.info("prefetch: skipped (%s: %s)", type(exc).__name__, str(exc)[:300])


def _config(program: str, program_args: list[str]):
    from .cli import parse

    return parse(program, program_args)


def warm(config) -> dict[str, float]:
    """Fetch and read the files of the run's model; returns what was read (bytes, seconds)."""
    from .checkpoints import resolve_model
    from .checkpoints.load import fetch_components, read_ranges, weight_ranges

    clock = time.perf_counter()
    source = resolve_model(config.checkpoint, config.model.size, config.generation.resolution, config.generation.fps)
    found = source.require().components
    fetch_components(found)
    fetched = time.perf_counter() - clock
    ranges = [r for name in ("transformer", "vae", "text_encoder")
              for r in weight_ranges(found[name], encoder_only=name == "text_encoder")]
    total = sum(end - start for _, start, end in ranges)
    budget = memory_budget()
    if budget is not None and total > budget * MEMORY_SHARE:
        log.info("prefetch: %.1f GiB of checkpoint would not fit beside the workers (%.1f GiB available): "
                 "not read ahead", total / 2**30, budget / 2**30)
        return {"bytes": 0, "fetch_s": round(fetched, 3), "read_s": 0.0}
    clock = time.perf_counter()
    read = read_ranges(ranges)
    seconds = time.perf_counter() - clock
    log.info("prefetch: %.1f GiB of the model read ahead in %.1f s (files fetched in %.1f s)",
             read / 2**30, seconds, fetched)
    return {"bytes": read, "fetch_s": round(fetched, 3), "read_s": round(seconds, 3)}


def memory_budget() -> int | None:
    """The bytes the pod may still fill: the smaller of the node's available memory and the cgroup's room."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = dict(line.split(":", 1) for line in fh)
        limits.append(int(info["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        pass
    try:  # cgroup v2: the container's limit less what it uses
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


__all__ = ["ENV", "memory_budget", "start", "warm"]
