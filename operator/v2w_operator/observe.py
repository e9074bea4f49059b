"""What the job's status should say, derived from what was observed: its child's state (a backend-neutral
`ChildView`, whichever backend made the child) and the runtime's progress.json / result.json. Pure functions on
the status models, so every mapping is unit-tested: `derive_status` reads the child's state and hands over to
one small function per state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable

from v2w_api.manifest import ColdStartFigures, ProgressManifest, ResultManifest, VideoResult
from v2w_api.status import (BestOfNJobStatus, BestStatus, ColdStart, ConditionType, JobStatus, OutputStatus, Phase,
                            Progress, Reason)

from . import kueue
from .backends.base import ChildView
from .conditions import get_condition, set_condition, utcnow

QUEUED, RUNNING, SUSPENDED, SUCCEEDED, FAILED = (ConditionType.QUEUED, ConditionType.RUNNING, ConditionType.SUSPENDED,
                                                 ConditionType.SUCCEEDED, ConditionType.FAILED)
VERDICTS = {"succeeded": "Passed", "blocked": "Blocked", "failed": "Failed", "skipped": "Skipped"}


@dataclass
class Observation:
    generation: int | None
    child: ChildView | None  # the job's child as its backend reads it; None when there is none (any more)
    progress: ProgressManifest | None = None
    result: ResultManifest | None = None
    result_uri: str | None = None
    storage_error: str | None = None
    child_was_created: bool = False  # status.childName was set before
    suspend_requested: bool = False  # the job's spec.suspend
    backoff_limit: int | None = None  # the restarts the child allows (`Backend.backoff_limit`): 0 allows one attempt
    workload: dict[str, Any] | None = None  # the Kueue Workload of the child (`kueue.summary`), if any
    child_kind: str = "PyTorchJob"  # what messages call the child when there is none to ask


def as_observed(child: ChildView, suspend_requested: bool) -> ChildView:
    """The child's state as the job reads it: created suspended, and no controller has said so yet (or none
    runs), it is suspended all the same; "waiting for pods" would undo the Suspended status it got at creation."""
    if child.state == "Created" and suspend_requested:
        return replace(child, state="Suspended")
    return child


def derive_status(status: JobStatus, obs: Observation) -> JobStatus:
    """The status after one observation, as a new model of the same kind (`status` is left as it was)."""
    new = status.model_copy(deep=True, update={"observed_generation": obs.generation})
    now = utcnow()
    if obs.child is None:
        _child_gone(new, obs, now)
        return new
    child = as_observed(obs.child, obs.suspend_requested)
    _record_run(new, obs, child)
    if _held_by_kueue(obs, child):
        _queued(new, obs, child, now)
    elif _started_by_kueue(obs, child):
        _waiting(new, obs, child, now)
    else:
        BY_STATE.get(child.state, _waiting)(new, obs, child, now)
    return new


def _held_by_kueue(obs: Observation, child: ChildView) -> bool:
    """Kueue keeps the child suspended (not admitted yet, or evicted) and the user did not ask for it: the
    job waits in its queue. (A user's suspend reads Suspended, as without Kueue.)"""
    if not child.held_by_kueue or child.state in ("Succeeded", "Failed"):
        return False
    # Suspended by its user: once its Workload is inactive (Kueue can no longer admit it), or has none yet.
    return not obs.suspend_requested or (obs.workload is not None and obs.workload.get("active", True))


def _enter(status: JobStatus, phase: Phase, message: str, now: datetime,
           *conditions: tuple[ConditionType, bool, Reason], completed: datetime | None = None) -> None:
    """Set the phase and message, and each condition (with the same message)."""
    status.phase, status.message = phase, message
    if completed is not None:
        status.completion_time = completed
    for type_, value, reason in conditions:
        status.conditions = set_condition(status.conditions, type_, value, reason, message,
                                          status.observed_generation, now)


def _resumed(status: JobStatus, now: datetime) -> None:
    if get_condition(status.conditions, SUSPENDED):
        status.conditions = set_condition(status.conditions, SUSPENDED, False, Reason.RESUMED, "resumed",
                                          status.observed_generation, now)


def _child_gone(status: JobStatus, obs: Observation, now: datetime) -> None:
    """No child: deleted behind the job's back, unless the job had finished (or never made one)."""
    if not obs.child_was_created or status.is_terminal:
        return
    message = (f"{obs.child_kind} {status.child} was deleted before the job finished; "
               "delete and re-apply the job to run it again")
    _enter(status, Phase.FAILED, message, now, (RUNNING, False, Reason.CHILD_DELETED),
           (FAILED, True, Reason.CHILD_DELETED), completed=now)


def _succeeded(status: JobStatus, obs: Observation, child: ChildView, now: datetime) -> None:
    """Pods done: the job's outcome is what result.json says (and nothing yet without one)."""
    if obs.result is None:
        message = obs.storage_error or "pods finished; waiting for result.json"
        _enter(status, Phase.RUNNING, message, now, (RUNNING, True, Reason.PODS_RUNNING))
    elif obs.result.succeeded:
        _enter(status, Phase.SUCCEEDED, _summary(obs.result), now, (RUNNING, False, Reason.COMPLETED),
               (SUCCEEDED, True, Reason.COMPLETED), (FAILED, False, Reason.COMPLETED),
               completed=child.completion_time or now)
    else:
        message = obs.result.message or _summary(obs.result)
        _enter(status, Phase.FAILED, message, now, (RUNNING, False, Reason.COMPLETED_WITH_FAILURES),
               (FAILED, True, Reason.COMPLETED_WITH_FAILURES), completed=child.completion_time or now)


def _failed(status: JobStatus, obs: Observation, child: ChildView, now: datetime) -> None:
    reason = _failure_reason(obs, child)
    message = f"{child.kind} failed ({child.reason or 'Failed'}): {child.message}".strip()
    if obs.result is not None and obs.result.message:
        message += f"; runtime: {obs.result.message}"
    elif obs.result is None and obs.storage_error:
        # e.g. S3 refused the job's credentials: the runtime could write no result.json either.
        message += f"; no result.json: {obs.storage_error}"
    _enter(status, Phase.FAILED, message, now, (RUNNING, False, reason), (FAILED, True, reason),
           completed=child.completion_time or now)


def _failure_reason(obs: Observation, child: ChildView) -> Reason:
    if child.failure == "DeadlineExceeded":
        return Reason.DEADLINE_EXCEEDED
    if child.failure == "BackoffLimitExceeded":
        # With backoffLimit 0 the training-operator words the first failure "reached the specified backoff
        # limit" before it looks at the exit code, a final one too. Nothing was retried then: when the runtime
        # said why its only attempt failed, that is the job's reason. (Its status keeps no count of restarts,
        # and a Restarting condition is dropped once the replica runs again.)
        only_attempt_explained = obs.backoff_limit == 0 and obs.result is not None and not obs.result.succeeded
        if not only_attempt_explained:
            return Reason.BACKOFF_LIMIT_EXCEEDED
    if obs.result is not None and not obs.result.succeeded and obs.result.videos:
        return Reason.COMPLETED_WITH_FAILURES
    return Reason.RUNTIME_FAILED


def _suspended(status: JobStatus, obs: Observation, child: ChildView, now: datetime) -> None:
    message = "suspended: pods stopped; set spec.suspend to false to resume"
    _enter(status, Phase.SUSPENDED, message, now, (RUNNING, False, Reason.SUSPENDED),
           (SUSPENDED, True, Reason.SUSPENDED))


def _running(status: JobStatus, obs: Observation, child: ChildView, now: datetime) -> None:
    """Running or Restarting (a worker died and the training-operator starts it again)."""
    message = child.status_message or ("running" if child.state == "Running" else f"restarting: {child.message}")
    if obs.storage_error:
        message += f" (progress unavailable: {obs.storage_error})"
    _enter(status, Phase.RUNNING, message, now, (RUNNING, True, Reason.PODS_RUNNING))
    _resumed(status, now)
    _admitted(status, obs, now)


def _waiting(status: JobStatus, obs: Observation, child: ChildView, now: datetime) -> None:
    """Created, and no pod runs yet."""
    _enter(status, Phase.PENDING, child.status_message or "waiting for pods to start", now)
    _resumed(status, now)
    _admitted(status, obs, now)


def _started_by_kueue(obs: Observation, child: ChildView) -> bool:
    """Kueue admitted the job and unsuspended its child; the child's controller has not caught up yet (its
    Suspended condition still stands). Not the user's suspend: the job is starting."""
    return child.state == "Suspended" and not obs.suspend_requested and child.queue is not None and not child.suspended


def _queued(status: JobStatus, obs: Observation, child: ChildView, now: datetime) -> None:
    """Kueue holds the child: the reason and message are the Workload's (e.g. Pending, "couldn't assign
    flavors to pod set master: insufficient quota for nvidia.com/gpu …")."""
    reason, message = kueue.waiting_reason(obs.workload, child.queue or "")
    if obs.suspend_requested:
        message = f"suspending: deactivating Workload {(obs.workload or {}).get('name')}; {message}"
    if reason == kueue.ADMITTED:  # admitted, and Kueue is about to unsuspend the child
        _waiting(status, obs, child, now)
        status.message = message
        return
    _enter(status, Phase.QUEUED, message, now, (QUEUED, True, reason))
    if get_condition(status.conditions, RUNNING):  # evicted (preempted, say) while it ran
        status.conditions = set_condition(status.conditions, RUNNING, False, reason, message,
                                          status.observed_generation, now)
    _resumed(status, now)


def _admitted(status: JobStatus, obs: Observation, now: datetime) -> None:
    """Kueue let the job go: a Queued condition turns False (Admitted)."""
    queued = get_condition(status.conditions, QUEUED)
    if queued is not None and queued.status == "True":
        clusterqueue = (obs.workload or {}).get("admission")
        message = f"admitted by Kueue (ClusterQueue {clusterqueue})" if clusterqueue else "admitted by Kueue"
        status.conditions = set_condition(status.conditions, QUEUED, False, Reason.ADMITTED, message,
                                          status.observed_generation, now)


BY_STATE: dict[str, Callable[[JobStatus, Observation, ChildView, datetime], None]] = {
    "Succeeded": _succeeded,
    "Failed": _failed,
    "Suspended": _suspended,
    "Running": _running,
    "Restarting": _running,
}


def _record_run(status: JobStatus, obs: Observation, child: ChildView) -> None:
    """What every state carries: the pods' start, the runtime's progress and, once the pods are done, its result."""
    if child.start_time and status.start_time is None:
        status.start_time = child.start_time
    if obs.progress is not None:
        status.progress = Progress(stage=obs.progress.stage.value, step=obs.progress.step,
                                   total_steps=obs.progress.total_steps, videos_done=obs.progress.videos_done,
                                   videos_total=obs.progress.videos_total, summary=obs.progress.summary(),
                                   updated_at=obs.progress.updated_at)
        _record_cold_start(status, obs.progress.cold_start)
    if obs.result is not None and child.state in ("Succeeded", "Failed"):
        _record_result(status, obs.result, obs.result_uri)


def _record_cold_start(status: JobStatus, figures: ColdStartFigures | None) -> None:
    """The runtime's cold-start figures (progress.json has them from the first step on, result.json at the end)."""
    if figures is not None:
        status.cold_start = ColdStart(seconds=figures.seconds, download=figures.download, load=figures.load,
                                      compile=figures.compile, other=figures.other)


def _record_result(status: JobStatus, result: ResultManifest, result_uri: str | None) -> None:
    _record_cold_start(status, result.cold_start)
    status.outputs = [_output(video) for video in result.videos]
    status.result_uri = result_uri
    done = len(result.videos)
    status.progress = (status.progress or Progress()).model_copy(
        update={"videos_done": done, "videos_total": done, "summary": _summary(result), "stage": "done"})
    if isinstance(status, BestOfNJobStatus):
        best = result.best_video()
        if best is not None and best.uri and best.score is not None:
            status.best = BestStatus(name=best.name, uri=best.uri, score=best.score, seed=best.seed,
                                     report_uri=best.report_uri or None)
        if result.index_uri:
            status.index_uri = result.index_uri


def verdict_of(video: VideoResult) -> str:
    """The status verdict of a video: a written video the guardrail did not check is NotChecked, not Passed
    (a result without the field, from an older runtime, keeps Passed)."""
    if video.status == "succeeded" and video.guardrail_checked is False:
        return "NotChecked"
    return VERDICTS[video.status]


def _output(video: VideoResult) -> OutputStatus:
    return OutputStatus(name=video.name, verdict=verdict_of(video), uri=video.uri, reason=video.reason,
                        seed=video.seed, score=video.score, report_uri=video.report_uri)


def _summary(result: ResultManifest) -> str:
    counts = result.counts()
    done = counts["succeeded"] + counts["blocked"] + counts["failed"] + counts["skipped"]
    parts = [f"{counts['succeeded']} written"]
    for key in ("blocked", "failed", "skipped"):
        if counts[key]:
            parts.append(f"{counts[key]} {key}")
    return f"{done}/{len(result.videos)} videos: " + ", ".join(parts)
