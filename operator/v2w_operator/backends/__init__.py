"""Backends: what kind of child runs a job's pods.

How a new kind of child plugs in:
1. a module here with a class implementing `base.Backend`: `kind/group/version/plural`, `install_hint`,
   `build(...)` (wrap `child.pod_template(...)` with the run configuration of `child.run_config/runtime_args`
   and `child.child_metadata(...)`: same name, labels, owner as every backend), `view(obj) -> ChildView`
   (its state in the vocabulary of `base.State`, reason/message/times, `failure`, Kueue's `queue`/`suspended`)
   and `suspend_patch(bool)`;
2. an entry in `BACKENDS` below.
The handlers create, get, patch and watch the child through the backend; `observe.derive_status` reads only the
`ChildView` (`Observation.child`), so phase, conditions and reasons come out the same for every backend.
"""

from __future__ import annotations

from .base import Backend, ChildView
from .pytorchjob import BACKEND as PYTORCHJOB

BACKENDS: dict[str, Backend] = {"pytorchjob": PYTORCHJOB}


def named(name: str) -> Backend:
    """The backend a configuration names (a clear error for any other name)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}: one of {', '.join(sorted(BACKENDS))}") from None


__all__ = ["BACKENDS", "PYTORCHJOB", "Backend", "ChildView", "named"]
