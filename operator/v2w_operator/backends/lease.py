"""The Lease "backend": a job that names a pool (`spec.poolRef`) gets a `coordination.k8s.io/v1` Lease instead of a
PyTorchJob, and an idle worker of the pool runs it (`v2w_api.lease` is the contract with the workers).

The Lease carries the job's runtime arguments exactly as a PyTorchJob's container gets them
(`child.runtime_args`), so a worker runs the same program on the same run configuration; it is read back as a
`ChildView` like any child, so the job's phase, conditions and events come out as for a PyTorchJob.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from v2w_api.lease import (ANNOTATION_MESSAGE, ANNOTATION_OUTCOME, ANNOTATION_RUN_ARGS, ANNOTATION_SUSPEND, LABEL_POOL,
                           LEASE_DURATION_SECONDS, LEASE_GROUP, LEASE_VERSION, LeaseState)
from v2w_api.spec import BestOfNJobSpec, JobSpecCommon, Video2WorldJobSpec

from ..config import OperatorConfig
from .base import ChildView
from .child import child_name, labels, output_prefix, owner_reference, run_config, runtime_args

KIND = "Lease"
PLURAL = "leases"
BACKOFF_MESSAGE = "backoff limit reached"
BACKOFF_REASON = "BackoffLimitExceeded"


class LeaseBackend:
    kind = KIND
    group = LEASE_GROUP
    version = LEASE_VERSION
    plural = PLURAL
    install_hint = "coordination.k8s.io/v1 Leases are not served by this API server"

    def build(self, kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
              config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
        return build(kind, name, namespace, uid, spec, config, batch_uri)

    def view(self, obj: dict[str, Any]) -> ChildView:
        return view(obj, datetime.now(timezone.utc))

    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        # A merge patch: null removes the annotation (resumed: claimable again).
        return {"metadata": {"annotations": {ANNOTATION_SUSPEND: "true" if suspend else None}}}

    def backoff_limit(self, spec: JobSpecCommon, config: OperatorConfig) -> int:
        return spec.run_policy.backoff_limit  # claims beyond the first that a job allows (the operator counts them)


def build(kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
          config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
    """The job's Lease, free (no holder), owned by the job and labelled with its pool."""
    if spec.pool_ref is None:
        raise ValueError("only a job with spec.poolRef is run through a Lease")
    run = run_config(kind, name, spec, config, output_prefix(spec, namespace, name), batch_uri)
    annotations = {ANNOTATION_RUN_ARGS: json.dumps(runtime_args(kind, run, config))}
    if spec.suspend:
        annotations[ANNOTATION_SUSPEND] = "true"
    # No Kueue label: the pool's workers, not Kueue, decide when a pooled job runs.
    return {
        "apiVersion": f"{LEASE_GROUP}/{LEASE_VERSION}",
        "kind": KIND,
        "metadata": {"name": child_name(kind, name), "namespace": namespace,
                     "labels": {**labels(kind, name), LABEL_POOL: spec.pool_ref},
                     "annotations": annotations, "ownerReferences": [owner_reference(kind, name, uid)]},
        "spec": {"leaseDurationSeconds": LEASE_DURATION_SECONDS},
    }


def view(obj: dict[str, Any], now: datetime) -> ChildView:
    """A job's Lease as the status reads it (the contract's states: waiting, suspended, held, expired, outcome)."""
    lease = LeaseState.of(obj)
    meta = obj.get("metadata") or {}
    common = dict(kind=KIND, name=lease.name, uid=meta.get("uid"), start_time=lease.started)
    pool = lease.pool or "?"
    if lease.outcome == "Succeeded":
        return ChildView(**common, state="Succeeded", reason="Completed", message=lease.message or "",
                         completion_time=lease.renew_time)
    if lease.outcome == "Failed":
        backoff = lease.message == BACKOFF_MESSAGE
        code = f"exit code {lease.exit_code}: " if lease.exit_code is not None else ""
        return ChildView(**common, state="Failed", reason=BACKOFF_REASON if backoff else "WorkerFailed",
                         message=f"{code}{lease.message or ''}".strip(), completion_time=lease.renew_time,
                         failure="BackoffLimitExceeded" if backoff else None)
    if lease.suspended and not lease.held(now):
        return ChildView(**common, state="Suspended", reason="Suspended", message="suspended", suspended=True)
    if lease.held(now):
        message = f"running on worker {lease.holder} of pool {pool}"
        return ChildView(**common, state="Running", reason="Claimed", message=message, suspended=lease.suspended,
                         status_message=message)
    if lease.expired(now):
        message = (f"worker {lease.holder} of pool {pool} stopped renewing its claim; waiting for another worker "
                   f"(attempt {lease.transitions + 1})")
        return ChildView(**common, state="Restarting", reason="ClaimExpired", message=message, status_message=message)
    attempt = f" (attempt {lease.transitions + 1})" if lease.transitions else ""
    message = f"waiting for a worker of pool {pool}{attempt}"
    return ChildView(**common, state="Created", reason="WaitingForWorker", message=message, status_message=message)


def backoff_exhausted(obj: dict[str, Any], backoff_limit: int, now: datetime) -> bool:
    """Free again after as many claims as the job allows (backoffLimit + 1 attempts), without an outcome: the
    operator writes the outcome (the workers do not know the job's limit)."""
    lease = LeaseState.of(obj)
    return lease.outcome is None and not lease.held(now) and lease.transitions > backoff_limit


def backoff_patch(obj: dict[str, Any]) -> dict[str, Any]:
    """The outcome the operator writes then, guarded by the resourceVersion it read (a claim in between wins)."""
    meta = obj.get("metadata") or {}
    return {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                         "annotations": {ANNOTATION_OUTCOME: "Failed", ANNOTATION_MESSAGE: BACKOFF_MESSAGE}},
            "spec": {"holderIdentity": None}}


BACKEND = LeaseBackend()
