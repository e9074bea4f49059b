"""Backends: what kind of child runs a job's pods.

How a new kind of child plugs in:
1. a module here with a class implementing `base.Backend`: `kind/group/version/plural`, `install_hint`,
   `build(...)` (wrap `child.pod_template(...)` with the run configuration of `child.run_config/runtime_args`
   and `child.child_metadata(...)`: same name, labels, owner as every backend), `view(obj) -> ChildView`
   (its state in the vocabulary of `base.State`, reason/message/times, `failure`, Kueue's `queue`/`suspended`)
   `suspend_patch(bool)` and `backoff_limit(spec, config)` (the restarts its child allows);
2. an entry in `BACKENDS` below.
The handlers create, get, patch and watch the child through the backend; `observe.derive_status` reads only the
`ChildView` (`Observation.child`), so phase, conditions and reasons come out the same for every backend.
"""

from __future__ import annotations

from typing import Callable

from .base import Backend, ChildView
from .pytorchjob import BACKEND as PYTORCHJOB
from .trainjob import BACKEND as TRAINJOB

BACKENDS: dict[str, Backend] = {"pytorchjob": PYTORCHJOB, "trainjob": TRAINJOB}


def resolve(name: str, served: Callable[[Backend], bool]) -> Backend:
    """The backend a configuration names; for `auto`, the first whose child kind is served (PyTorchJob first),
    else PyTorchJob (its jobs then wait, naming the missing CRD, until the operator restarts with one)."""
    if name != "auto":
        return named(name)
    return next((backend for backend in (PYTORCHJOB, TRAINJOB) if served(backend)), PYTORCHJOB)


def named(name: str) -> Backend:
    """The backend a configuration names (a clear error for any other name)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}: one of {', '.join(sorted(BACKENDS))}") from None


__all__ = ["BACKENDS", "PYTORCHJOB", "TRAINJOB", "Backend", "ChildView", "named", "resolve"]
