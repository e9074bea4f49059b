"""The seam between the operator and whatever runs a job's pods (its "child"): a `Backend` builds the child,
and reads any child of its kind back as a `ChildView`, the small backend-neutral state the status is derived
from (`observe.derive_status` reads nothing else of the child)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from v2w_api.spec import BestOfNJobSpec, JobSpecCommon, Video2WorldJobSpec

from ..config import OperatorConfig

# A child's state, in the words the status derivation maps (observe.BY_STATE; Created is "no pod runs yet").
State = Literal["Created", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]
STATES: tuple[State, ...] = ("Created", "Running", "Restarting", "Suspended", "Succeeded", "Failed")
# Why a failed child failed, when its controller said it in a way the job's reason names.
Failure = Literal["DeadlineExceeded", "BackoffLimitExceeded"]


@dataclass(frozen=True)
class ChildView:
    """What the operator reads of a job's child, whatever its kind.

    `reason`/`message` are those of the condition (or record) that says the state; `queue` and `suspended` are
    what Kueue acts on: the queue label, and the child's own suspend switch (Kueue holds a suspended child
    with a queue label)."""

    kind: str  # the child's kind, as messages name it ("PyTorchJob")
    name: str
    uid: str | None = None
    state: State = "Created"
    reason: str = ""
    message: str = ""
    start_time: datetime | None = None
    completion_time: datetime | None = None
    failure: Failure | None = None
    queue: str | None = None
    suspended: bool = False
    # What the job's status says while it waits or runs, when the child has words of its own for it (a pooled job:
    # "waiting for a worker of pool P"); None: the derivation's own ("waiting for pods to start", "running").
    status_message: str | None = None

    @property
    def held_by_kueue(self) -> bool:
        """Kueue manages the child and keeps it suspended (queued, not yet admitted, or evicted)."""
        return self.queue is not None and self.suspended


class Backend(Protocol):
    """One kind of child. A new kind plugs in by implementing this (see backends/__init__.py)."""

    kind: str
    group: str
    version: str
    plural: str
    install_hint: str  # what the platform team installs when the child's CRD is not served

    def build(self, kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
              config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
        """The child of a job: owned by it, named `child.child_name(kind, name)`, a pure function of its input."""
        ...

    def view(self, obj: dict[str, Any]) -> ChildView:
        """The child as the status reads it (from the API's object, or the watch's)."""
        ...

    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        """The merge patch that suspends (stops the pods of) or resumes the child."""
        ...

    def backoff_limit(self, spec: JobSpecCommon, config: OperatorConfig) -> int:
        """How often the child restarts the job's pods after a retryable failure."""
        ...


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
