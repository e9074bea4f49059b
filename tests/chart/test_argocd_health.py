"""The Argo CD health check of our two kinds, run in real Lua 5.1 (Argo's dialect) on statuses that the
operator's own status models accept."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import yaml

from lupa import lua51  # the dev extra's lupa embeds Lua 5.1, the dialect of Argo CD's gopher-lua

from v2w_api.status import BestOfNJobStatus, ConditionType, Phase, Reason, Video2WorldJobStatus

from tests.chart.helm import ROOT

ARGOCD = ROOT / "examples" / "gitops" / "argocd"
SCRIPT = (ARGOCD / "health.lua").read_text()
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
ARGO_STATES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def condition(type_: ConditionType, status: str, reason: Reason, message: str = "") -> dict[str, Any]:
    return {"type": type_.value, "status": status, "reason": reason.value, "message": message,
            "lastTransitionTime": NOW, "observedGeneration": 1}


def job(kind: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    if status is not None:
        # Only shapes the operator can write: the samples must pass its status model.
        model = BestOfNJobStatus if kind == "BestOfNJob" else Video2WorldJobStatus
        model.model_validate(status)
    obj = {"apiVersion": "video2world.io/v1alpha1", "kind": kind,
           "metadata": {"name": "clip", "namespace": "team-a", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def health(obj: dict[str, Any], script: str = SCRIPT) -> dict[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    out = {"status": result["status"], "message": result["message"]}
    assert out["status"] in ARGO_STATES
    return out


KINDS = ["Video2WorldJob", "BestOfNJob"]


@pytest.mark.parametrize("kind", KINDS)
def test_new_job_without_status_is_progressing(kind):
    assert health(job(kind, None)) == {"status": "Progressing", "message": "Waiting for the operator to accept the job"}


@pytest.mark.parametrize("kind", KINDS)
def test_pending_job_waiting_for_pods_is_progressing(kind):
    status = {"phase": "Pending", "observedGeneration": 1, "conditions": [
        condition(ConditionType.ACCEPTED, "True", Reason.SPEC_VALID),
        condition(ConditionType.RUNNING, "False", Reason.WAITING_FOR_PODS, "0/2 pods running"),
    ]}
    assert health(job(kind, status)) == {"status": "Progressing", "message": "WaitingForPods: 0/2 pods running"}


def test_running_job_shows_its_progress():
    status = {"phase": "Running", "observedGeneration": 1,
              "conditions": [condition(ConditionType.RUNNING, "True", Reason.PODS_RUNNING)],
              "progress": {"stage": "sampling", "step": 12, "totalSteps": 35, "videosDone": 1, "videosTotal": 3,
                           "summary": "1/3 videos, step 12/35"}}
    assert health(job("Video2WorldJob", status)) == {"status": "Progressing",
                                                     "message": "Running: 1/3 videos, step 12/35"}


@pytest.mark.parametrize("reason", [Reason.INVALID_SPEC, Reason.SECRET_MISSING, Reason.CHILD_CRD_MISSING])
def test_refused_job_is_degraded_with_the_reason(reason):
    status = {"phase": "Pending", "observedGeneration": 1,
              "conditions": [condition(ConditionType.ACCEPTED, "False", reason, "fix the job")]}
    assert health(job("Video2WorldJob", status)) == {"status": "Degraded", "message": f"{reason.value}: fix the job"}


def test_suspended_job_is_suspended():
    status = {"phase": "Suspended", "observedGeneration": 1,
              "conditions": [condition(ConditionType.SUSPENDED, "True", Reason.SUSPENDED, "spec.suspend is true")]}
    assert health(job("Video2WorldJob", status)) == {"status": "Suspended", "message": "Suspended: spec.suspend is true"}


def test_succeeded_best_of_n_is_healthy_with_its_best_score():
    status = {"phase": "Succeeded", "observedGeneration": 1,
              "conditions": [condition(ConditionType.SUCCEEDED, "True", Reason.COMPLETED, "4 videos")],
              "best": {"name": "gen-2", "uri": "s3://b/p/gen-2.mp4", "score": 87}}
    assert health(job("BestOfNJob", status)) == {"status": "Healthy", "message": "Completed: 4 videos (best score 87)"}


def test_succeeded_with_guardrail_blocks_is_still_healthy():
    status = {"phase": "Succeeded", "observedGeneration": 1,
              "conditions": [condition(ConditionType.SUCCEEDED, "True", Reason.COMPLETED_WITH_FAILURES, "1 blocked")]}
    assert health(job("Video2WorldJob", status)) == {"status": "Healthy", "message": "CompletedWithFailures: 1 blocked"}


@pytest.mark.parametrize("kind", KINDS)
def test_failed_job_is_degraded_with_the_failure(kind):
    status = {"phase": "Failed", "observedGeneration": 1, "conditions": [
        condition(ConditionType.RUNNING, "False", Reason.RUNTIME_FAILED),
        condition(ConditionType.FAILED, "True", Reason.BACKOFF_LIMIT_EXCEEDED, "worker-0 exited 1"),
    ]}
    assert health(job(kind, status)) == {"status": "Degraded", "message": "BackoffLimitExceeded: worker-0 exited 1"}


def test_failed_without_conditions_falls_back_to_the_status_message():
    status = {"phase": "Failed", "message": "deadline exceeded"}
    assert health(job("Video2WorldJob", status)) == {"status": "Degraded", "message": "deadline exceeded"}


def test_status_of_an_older_generation_is_progressing():
    status = {"phase": "Succeeded", "observedGeneration": 1,
              "conditions": [condition(ConditionType.SUCCEEDED, "True", Reason.COMPLETED)]}
    assert health(job("Video2WorldJob", status, generation=2))["status"] == "Progressing"


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_has_a_definite_health(phase):
    assert health(job("Video2WorldJob", {"phase": phase.value}))["status"] != "Unknown"


def test_unknown_phase_is_unknown():
    obj = job("Video2WorldJob", None)
    obj["status"] = {"phase": "Exploded"}
    assert health(obj) == {"status": "Unknown", "message": "Unknown phase Exploded"}


def test_argocd_cm_carries_the_same_script_for_both_kinds():
    cm = yaml.safe_load((ARGOCD / "argocd-cm-health.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    keys = {f"resource.customizations.health.video2world.io_{kind}" for kind in KINDS}
    assert set(cm["data"]) == keys
    for key in keys:
        assert cm["data"][key] == SCRIPT, f"{key} differs from health.lua"
