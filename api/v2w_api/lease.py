"""The claim of a pooled job: one `coordination.k8s.io/v1` Lease per job, the contract between the operator,
which makes it, and a pool's workers, which claim, renew and release it.

The operator creates the Lease (named as the job's child would be, owned by the job, labelled with its pool)
holding the job's runtime arguments exactly as a PyTorchJob's container gets them. A worker claims a free one
by writing itself as the holder with the resourceVersion it read (a 409 means another worker won), renews it
while it runs the job, and at the end writes the outcome and lets go. The operator alone writes the job's
status; it reads the Lease and the runtime's progress.json / result.json as it reads a PyTorchJob.

    free (no holder, no outcome) --claim--> held (holder, renewed) --release--> outcome Succeeded | Failed
    held, not renewed for leaseDurationSeconds --> expired: free again for any worker (another attempt)
    suspend annotation set --> the holder stops the run and lets go without an outcome; no worker claims it
    job deleted --> the Lease is garbage-collected; the holder's next renew gets 404 and it stops the run
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from .base import GROUP

LEASE_GROUP = "coordination.k8s.io"
LEASE_VERSION = "v1"

LABEL_POOL = f"{GROUP}/pool"  # on a job's Lease: the pool whose workers may claim it
ANNOTATION_RUN_ARGS = f"{GROUP}/run-args"  # JSON list: the runtime's arguments (`--module M --config YAML ...`)
ANNOTATION_SUSPEND = f"{GROUP}/suspend"  # "true": the job's spec.suspend; the holder stops, nobody claims it
ANNOTATION_OUTCOME = f"{GROUP}/outcome"  # written once at release: Succeeded | Failed
ANNOTATION_EXIT_CODE = f"{GROUP}/exit-code"  # the run's exit code with the outcome (runner.py's codes)
ANNOTATION_MESSAGE = f"{GROUP}/message"  # why, with the outcome or a release without one (one line, no secrets)
ANNOTATION_STARTED = f"{GROUP}/started"  # RFC 3339 time of the first claim (the job's start time)

LEASE_DURATION_SECONDS = 20  # a holder that has not renewed for this long has lost its claim
RENEW_EVERY_SECONDS = 5.0

Outcome = Literal["Succeeded", "Failed"]
OUTCOMES: tuple[str, ...] = ("Succeeded", "Failed")

# MicroTime, as the API server writes it (and accepts it)
_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def micro_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime(_MICRO_TIME)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class LeaseState:
    """What a Lease says about its job, read from the object as the API returns it (a dict)."""

    name: str
    pool: str | None
    holder: str | None
    renew_time: datetime | None
    duration_seconds: int
    transitions: int  # claims so far (each claim, first or after an expiry, counts one)
    outcome: str | None
    exit_code: int | None
    message: str | None
    suspended: bool
    started: datetime | None
    created: datetime | None
    run_args: list[str] | None

    @classmethod
    def of(cls, lease: dict[str, Any]) -> LeaseState:
        meta = lease.get("metadata") or {}
        spec = lease.get("spec") or {}
        notes = meta.get("annotations") or {}
        code = notes.get(ANNOTATION_EXIT_CODE)
        args = notes.get(ANNOTATION_RUN_ARGS)
        return cls(
            name=meta.get("name", ""),
            pool=(meta.get("labels") or {}).get(LABEL_POOL),
            holder=spec.get("holderIdentity") or None,
            renew_time=parse_time(spec.get("renewTime") or spec.get("acquireTime")),
            duration_seconds=int(spec.get("leaseDurationSeconds") or LEASE_DURATION_SECONDS),
            transitions=int(spec.get("leaseTransitions") or 0),
            outcome=notes.get(ANNOTATION_OUTCOME) if notes.get(ANNOTATION_OUTCOME) in OUTCOMES else None,
            exit_code=int(code) if code is not None and str(code).lstrip("-").isdigit() else None,
            message=notes.get(ANNOTATION_MESSAGE),
            suspended=notes.get(ANNOTATION_SUSPEND) == "true",
            started=parse_time(notes.get(ANNOTATION_STARTED)),
            created=parse_time(meta.get("creationTimestamp")),
            run_args=json.loads(args) if args else None,
        )

    def expired(self, now: datetime) -> bool:
        """Held, but not renewed within its duration: the holder is gone (or cut off) and has lost the claim."""
        if self.holder is None:
            return False
        if self.renew_time is None:
            return True
        return now - self.renew_time > timedelta(seconds=self.duration_seconds)

    def held(self, now: datetime) -> bool:
        return self.holder is not None and not self.expired(now)

    def claimable(self, now: datetime) -> bool:
        """A worker may claim it: not finished, not suspended, and nobody holds it (or the holder's claim ran out)."""
        return self.outcome is None and not self.suspended and not self.held(now)
