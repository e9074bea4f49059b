"""Kueue (`kueue.x-k8s.io`): what the operator reads of a child that Kueue manages, and of its Workload.

Written for the PyTorchJob; the same holds for every backend's child (its `ChildView.queue`/`suspended`):

A PyTorchJob with the label `kueue.x-k8s.io/queue-name` is Kueue's to start and stop: Kueue's webhook creates it
suspended, Kueue makes a Workload for it (owned by the PyTorchJob), admits that Workload when its ClusterQueue has
quota, and only then sets the PyTorchJob's `runPolicy.suspend` to false; it evicts (and suspends) it again when
the Workload is preempted or deactivated. So the operator never writes that field while Kueue manages the job:
- a held PyTorchJob (suspended, not by the user) makes the job `Queued`, with the reason and message of the
  Workload's own conditions (QuotaReserved, Admitted, Evicted);
- the user's `spec.suspend: true` deactivates the Workload (`spec.active: false`, Kueue's way to stop a job it
  manages: it evicts the Workload and suspends the PyTorchJob itself), and `false` activates it again (Kueue
  queues it anew). Suspending the PyTorchJob instead would be undone: Kueue unsuspends an admitted job.
- a job created suspended gets its PyTorchJob without the queue label (Kueue would admit it at once and start
  it); its resume adds the label, and Kueue takes the still-suspended PyTorchJob from there.

The operator runs as well without Kueue: no Workload CRD, no Workloads; nothing here is called then.
"""

from __future__ import annotations

from typing import Any

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # on a Workload: the uid of the job it was made for
WORKLOAD_GROUP = "kueue.x-k8s.io"
WORKLOAD_PLURAL = "workloads"
WAITING_FOR_WORKLOAD = "WaitingForWorkload"
ADMITTED = "Admitted"


def owner_child(workload: dict[str, Any], kind: str, group: str) -> str | None:
    """The name of the child (of this kind) a Workload was made for (its controller owner), else None."""
    for owner in (workload.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == kind and str(owner.get("apiVersion", "")).startswith(f"{group}/"):
            return owner.get("name")
    return None


def summary(workload: dict[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a Workload: enough to patch it and to say why its job waits."""
    meta = workload.get("metadata") or {}
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    return {"apiVersion": workload.get("apiVersion"), "name": meta.get("name"),
            "created": meta.get("creationTimestamp"), "deleting": bool(meta.get("deletionTimestamp")),
            "active": spec.get("active", True) is not False, "queueName": spec.get("queueName"),
            "conditions": list(status.get("conditions") or []),
            "admission": (status.get("admission") or {}).get("clusterQueue")}


def current(workloads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Workload that counts among those of one child (summaries): the newest not being deleted (Kueue
    replaces a Workload whose job changed; for a moment both exist), else the newest."""
    if not workloads:
        return None
    return max(workloads, key=lambda w: (not w.get("deleting"), str(w.get("created") or "")))


def _condition(workload: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in workload.get("conditions") or [] if c.get("type") == type_), None)


def _true(condition: dict[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def waiting_reason(workload: dict[str, Any] | None, queue: str) -> tuple[str, str]:
    """Why a held job waits, in Kueue's words: (reason, message) from its Workload's conditions."""
    if workload is None:
        return WAITING_FOR_WORKLOAD, f"queued in LocalQueue {queue}: waiting for Kueue to create its Workload"
    name = workload.get("name")
    admitted, evicted = _condition(workload, "Admitted"), _condition(workload, "Evicted")
    reserved = _condition(workload, "QuotaReserved")
    if _true(admitted):
        return ADMITTED, f"Workload {name} admitted by ClusterQueue {workload.get('admission')}; starting"
    if _true(evicted):
        cond = evicted
    elif not workload.get("active", True):
        return "Inactive", f"Workload {name} is deactivated (spec.active is false): Kueue will not admit it"
    elif reserved is not None and not _true(reserved):
        cond = reserved
    elif _true(reserved):  # quota reserved, admission checks pending
        cond = admitted or reserved
    else:
        return "Pending", f"queued in LocalQueue {queue} (Workload {name}): not yet considered by Kueue"
    reason = str(cond.get("reason") or "Pending")
    message = str(cond.get("message") or "").strip()
    return reason, f"queued in LocalQueue {queue} (Workload {name}): {message}" if message else \
        f"queued in LocalQueue {queue} (Workload {name})"
