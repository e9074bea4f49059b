"""Stopping a run from outside it: a pool worker's claim ends (the job was deleted or suspended, or another
worker took it) while the run is still sampling.

The worker's renewing thread calls `request(reason)`; the run calls `check()` between sampler steps and between
videos, which raises `Cancelled` once a stop was asked for. A run started on its own never asks, so for it
`check()` is a flag read and nothing else. Whatever the run wrote before it stopped stays: a job that runs
again keeps its finished videos (resume.py).
"""

from __future__ import annotations

import threading

_requested = threading.Event()
_reason = ""


class Cancelled(Exception):
    """The run was asked to stop; the message says why."""


def request(reason: str) -> None:
    global _reason
    if not _requested.is_set():
        _reason = reason
        _requested.set()


def clear() -> None:
    """Before a worker's next run: no stop asked for."""
    global _reason
    _requested.clear()
    _reason = ""


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raises Cancelled when a stop was asked for."""
    if _requested.is_set():
        raise Cancelled(_reason or "stopped")


__all__ = ["Cancelled", "check", "clear", "request", "requested"]
