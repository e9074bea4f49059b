"""What the job's status should say, derived from what was observed: the PyTorchJob's conditions and
the runtime's progress.json / result.json. Pure functions, so every mapping is unit-tested."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .api.manifest import ProgressManifest, ResultManifest
from .api.status import Phase, Reason
from .conditions import get_condition, now_iso, set_condition


@dataclass
class Observation:
    generation: int | None
    pytorchjob: dict[str, Any] | None
    progress: ProgressManifest | None = None
    result: ResultManifest | None = None
    result_uri: str | None = None
    storage_error: str | None = None
    pytorchjob_was_created: bool = False  # status.pytorchJobName was set before
    suspend_requested: bool = False  # the job's spec.suspend
    notes: list[str] = field(default_factory=list)


def pytorchjob_state(pytorchjob: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The PyTorchJob's current state (Succeeded, Failed, Suspended, Restarting, Running, Created) and its condition."""
    conditions = {c.get("type"): c for c in (pytorchjob.get("status") or {}).get("conditions") or []}
    for state in ("Succeeded", "Failed", "Suspended", "Restarting", "Running", "Created"):
        cond = conditions.get(state)
        if cond and cond.get("status") == "True":
            return state, cond
    return "Created", {}


def _outputs(result: ResultManifest) -> list[dict[str, Any]]:
    verdicts = {"succeeded": "Passed", "blocked": "Blocked", "failed": "Failed", "skipped": "Skipped"}
    out = []
    for video in result.videos:
        item = {"name": video.name, "verdict": verdicts[video.status]}
        for key, value in (("uri", video.uri), ("reason", video.reason), ("seed", video.seed),
                           ("score", video.score), ("reportUri", video.report_uri)):
            if value is not None:
                item[key] = value
        out.append(item)
    return out


def _summary(result: ResultManifest) -> str:
    counts = result.counts()
    done = counts["succeeded"] + counts["blocked"] + counts["failed"] + counts["skipped"]
    parts = [f"{counts['succeeded']} written"]
    for key in ("blocked", "failed", "skipped"):
        if counts[key]:
            parts.append(f"{counts[key]} {key}")
    return f"{done}/{len(result.videos)} videos: " + ", ".join(parts)


def derive_status(status: dict[str, Any], obs: Observation, kind: str) -> dict[str, Any]:
    """The new status (a full replacement of the fields the operator owns) for one observation."""
    now = now_iso()
    gen = obs.generation
    conditions = list(status.get("conditions") or [])
    new: dict[str, Any] = {"observedGeneration": gen}

    def cond(type_: str, value: bool, reason: Reason | str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, str(getattr(reason, "value", reason)), message, gen, now)

    if obs.pytorchjob is None:
        if obs.pytorchjob_was_created and not Phase(status.get("phase", "Pending")).is_terminal:
            message = (f"PyTorchJob {status.get('pytorchJobName')} was deleted before the job finished; "
                       "delete and re-apply the job to run it again")
            new.update(phase=Phase.FAILED.value, message=message, completionTime=now)
            cond("Running", False, Reason.PYTORCHJOB_DELETED, message)
            cond("Failed", True, Reason.PYTORCHJOB_DELETED, message)
        new["conditions"] = conditions
        return new

    state, pj_cond = pytorchjob_state(obs.pytorchjob)
    if state == "Created" and obs.suspend_requested:
        # Created suspended, and no training-operator has said so yet (or none runs): the job is suspended
        # all the same; "waiting for pods" would undo the Suspended status it got at creation.
        state = "Suspended"
    pj_status = obs.pytorchjob.get("status") or {}
    pj_message = pj_cond.get("message", "")
    if pj_status.get("startTime") and not status.get("startTime"):
        new["startTime"] = pj_status["startTime"]

    if obs.progress is not None:
        new["progress"] = {
            "stage": obs.progress.stage.value,
            "step": obs.progress.step,
            "totalSteps": obs.progress.total_steps,
            "videosDone": obs.progress.videos_done,
            "videosTotal": obs.progress.videos_total,
            "summary": obs.progress.summary(),
            "updatedAt": obs.progress.updated_at.isoformat().replace("+00:00", "Z"),
        }

    if obs.result is not None and state in ("Succeeded", "Failed"):
        result = obs.result
        new["outputs"] = _outputs(result)
        new["resultUri"] = obs.result_uri
        summary = _summary(result)
        progress = dict(new.get("progress") or status.get("progress") or {})
        progress.update(videosDone=len(result.videos), videosTotal=len(result.videos), summary=summary, stage="done")
        new["progress"] = progress
        best = result.best_video()
        if best is not None and best.uri and best.score is not None:
            new["best"] = {"name": best.name, "uri": best.uri, "score": best.score}
            if best.seed is not None:
                new["best"]["seed"] = best.seed
            if best.report_uri:
                new["best"]["reportUri"] = best.report_uri
        if result.index_uri:
            new["indexUri"] = result.index_uri

    if state == "Succeeded":
        if obs.result is None:
            message = obs.storage_error or "pods finished; waiting for result.json"
            new.update(phase=Phase.RUNNING.value, message=message)
            cond("Running", True, Reason.PODS_RUNNING, message)
        elif obs.result.succeeded:
            message = _summary(obs.result)
            new.update(phase=Phase.SUCCEEDED.value, message=message, completionTime=pj_status.get("completionTime") or now)
            cond("Running", False, Reason.COMPLETED, message)
            cond("Succeeded", True, Reason.COMPLETED, message)
            cond("Failed", False, Reason.COMPLETED, message)
        else:
            message = obs.result.message or _summary(obs.result)
            new.update(phase=Phase.FAILED.value, message=message, completionTime=pj_status.get("completionTime") or now)
            cond("Running", False, Reason.COMPLETED_WITH_FAILURES, message)
            cond("Failed", True, Reason.COMPLETED_WITH_FAILURES, message)
    elif state == "Failed":
        reason = pj_cond.get("reason") or ""
        if "Deadline" in reason or "deadline" in pj_message:
            our_reason = Reason.DEADLINE_EXCEEDED
        elif "BackoffLimit" in reason or "backoff" in pj_message.lower():
            our_reason = Reason.BACKOFF_LIMIT_EXCEEDED
        elif obs.result is not None and not obs.result.succeeded and obs.result.videos:
            our_reason = Reason.COMPLETED_WITH_FAILURES
        else:
            our_reason = Reason.RUNTIME_FAILED
        message = f"PyTorchJob failed ({reason or 'Failed'}): {pj_message}".strip()
        if obs.result is not None and obs.result.message:
            message += f"; runtime: {obs.result.message}"
        elif obs.result is None and obs.storage_error:
            # e.g. S3 refused the job's credentials: the runtime could write no result.json either.
            message += f"; no result.json: {obs.storage_error}"
        new.update(phase=Phase.FAILED.value, message=message, completionTime=pj_status.get("completionTime") or now)
        cond("Running", False, our_reason, message)
        cond("Failed", True, our_reason, message)
    elif state == "Suspended":
        message = "suspended: pods stopped; set spec.suspend to false to resume"
        new.update(phase=Phase.SUSPENDED.value, message=message)
        cond("Running", False, Reason.SUSPENDED, message)
        cond("Suspended", True, Reason.SUSPENDED, message)
    elif state in ("Running", "Restarting"):
        message = "running" if state == "Running" else f"restarting: {pj_message}"
        if obs.storage_error:
            message += f" (progress unavailable: {obs.storage_error})"
        new.update(phase=Phase.RUNNING.value, message=message)
        cond("Running", True, Reason.PODS_RUNNING, message)
        if get_condition(conditions, "Suspended"):
            cond("Suspended", False, Reason.RESUMED, "resumed")
    else:
        message = "waiting for pods to start"
        new.update(phase=Phase.PENDING.value, message=message)
        if get_condition(conditions, "Suspended"):
            cond("Suspended", False, Reason.RESUMED, "resumed")
    new["conditions"] = conditions
    return new
