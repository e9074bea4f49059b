"""Status derivation: every PyTorchJob state and runtime file maps to the phase, conditions and
fields a user reads."""

from __future__ import annotations

from datetime import datetime, timezone

from v2w_api.manifest import ProgressManifest, ResultManifest, VideoResult
from v2w_api.status import BestOfNJobStatus, ConditionType, Phase, Video2WorldJobStatus
from v2w_operator.backends import pytorchjob
from v2w_operator.observe import Observation as _Observation, derive_status

V2W = Video2WorldJobStatus


def Observation(generation, child, **kw):
    """An observation of a PyTorchJob (as the API returns it), read through its backend's view."""
    return _Observation(generation, pytorchjob.view(child) if child is not None else None, **kw)


def pj(*conds: tuple[str, str, str], **status):
    return {"status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conds],
                       **status}}


def result(ok=True, **kw) -> ResultManifest:
    videos = kw.pop("videos", [VideoResult(name="a.mp4", status="succeeded", uri="s3://b/p/a.mp4", seed=1)])
    return ResultManifest(mode=kw.pop("mode", "video2world"), succeeded=ok, started_at=datetime.now(timezone.utc),
                          videos=videos, **kw)


def conds(status):
    return {c.type.value: (c.status, c.reason) for c in status.conditions}


def test_created_is_pending():
    s = derive_status(V2W(), Observation(3, pj(("Created", "PyTorchJobCreated", ""))))
    assert s.phase == Phase.PENDING and s.observed_generation == 3


def test_running_carries_progress_summary():
    progress = ProgressManifest(stage="sampling", videos_done=1, videos_total=3, step=12, total_steps=35)
    s = derive_status(V2W(), Observation(1, pj(("Running", "PyTorchJobRunning", ""), startTime="2026-01-01T00:00:00Z"),
                                         progress=progress))
    assert s.phase == Phase.RUNNING and conds(s)["Running"] == ("True", "PodsRunning")
    assert s.progress.summary == "1/3 videos, step 12/35" and s.to_wire()["startTime"] == "2026-01-01T00:00:00Z"


def test_succeeded_needs_result_json():
    waiting = derive_status(V2W(), Observation(1, pj(("Succeeded", "PyTorchJobSucceeded", ""))))
    assert waiting.phase == Phase.RUNNING and "result.json" in waiting.message
    done = derive_status(V2W(), Observation(1, pj(("Succeeded", "PyTorchJobSucceeded", "")), result=result(),
                                            result_uri="s3://b/p/result.json"))
    assert done.phase == Phase.SUCCEEDED and conds(done)["Succeeded"] == ("True", "Completed")
    assert done.to_wire()["outputs"] == [{"name": "a.mp4", "verdict": "Passed", "uri": "s3://b/p/a.mp4", "seed": 1}]
    assert done.result_uri == "s3://b/p/result.json" and done.completion_time


def test_best_of_n_best_and_index():
    videos = [VideoResult(name="g0_033.mp4", status="succeeded", uri="s3://b/g0.mp4", score=33, seed=0),
              VideoResult(name="g1_100.mp4", status="succeeded", uri="s3://b/g1.mp4", score=100, seed=1,
                          report_uri="s3://b/g1.html")]
    r = result(mode="bestofn", videos=videos, best="g1_100.mp4", index_uri="s3://b/index.html")
    s = derive_status(BestOfNJobStatus(), Observation(1, pj(("Succeeded", "", "")), result=r))
    assert s.to_wire()["best"] == {"name": "g1_100.mp4", "uri": "s3://b/g1.mp4", "score": 100, "seed": 1,
                                   "reportUri": "s3://b/g1.html"}
    assert s.index_uri == "s3://b/index.html" and [o.score for o in s.outputs] == [33, 100]


def test_guardrail_block_is_a_verdict_not_a_failure():
    videos = [VideoResult(name="a.mp4", status="succeeded", uri="s3://b/a.mp4"),
              VideoResult(name="b.mp4", status="blocked", reason="prompt blocked by blocklist")]
    s = derive_status(V2W(), Observation(1, pj(("Succeeded", "", "")), result=result(videos=videos)))
    assert s.phase == Phase.SUCCEEDED
    assert s.outputs[1].to_wire() == {"name": "b.mp4", "verdict": "Blocked", "reason": "prompt blocked by blocklist"}
    assert "1 blocked" in s.message


def test_a_video_written_without_the_guardrail_is_not_checked_not_passed():
    """Status tells the truth about safety: the runtime's record says the guardrail did not run."""
    videos = [VideoResult(name="a.mp4", status="succeeded", uri="s3://b/a.mp4", guardrail_checked=False),
              VideoResult(name="b.mp4", status="succeeded", uri="s3://b/b.mp4", guardrail_checked=True,
                          guardrail_components=["blocklist", "llama_guard", "video_safety_filter", "face_blur"]),
              VideoResult(name="c.mp4", status="succeeded", uri="s3://b/c.mp4"),  # a runtime before the field
              VideoResult(name="d.mp4", status="failed", reason="input missing", guardrail_checked=False)]
    s = derive_status(V2W(), Observation(1, pj(("Succeeded", "", "")), result=result(videos=videos)))
    assert [o.verdict for o in s.outputs] == ["NotChecked", "Passed", "Passed", "Failed"]
    assert s.outputs[0].to_wire() == {"name": "a.mp4", "verdict": "NotChecked", "uri": "s3://b/a.mp4"}


def test_failures_carry_reason_and_runtime_message():
    backoff = ("Failed", "PyTorchJobFailed", "Job v2w-x has failed because it has reached the specified backoff limit")
    failed = pj(backoff)
    r = result(ok=False, videos=[], message="input s3://b/missing.jpg: not found")
    s = derive_status(V2W(), Observation(1, failed, result=r, backoff_limit=3))
    assert s.phase == Phase.FAILED and conds(s)["Failed"] == ("True", "BackoffLimitExceeded")
    assert "backoff limit" in s.message and "s3://b/missing.jpg" in s.message
    # backoffLimit 0: the training-operator says "backoff limit" for a first and only attempt, whatever its exit
    # code; the runtime's own account of it gives the reason.
    s = derive_status(V2W(), Observation(1, pj(backoff), result=r, backoff_limit=0))
    assert conds(s)["Failed"] == ("True", "RuntimeFailed") and "s3://b/missing.jpg" in s.message
    nothing_said = Observation(1, pj(backoff), backoff_limit=0)
    assert conds(derive_status(V2W(), nothing_said))["Failed"][1] == "BackoffLimitExceeded"
    deadline = pj(("Failed", "PyTorchJobFailed", "Job x has failed because it was active longer than specified deadline"))
    assert conds(derive_status(V2W(), Observation(1, deadline)))["Failed"][1] == "DeadlineExceeded"


def test_a_failure_without_result_json_says_why_it_could_not_be_read():
    failed = pj(("Failed", "PyTorchJobFailed", "Job v2w-x has failed because it has reached the specified backoff limit"))
    error = "reading s3://b/p/ns/x/result.json: InvalidAccessKeyId"
    s = derive_status(V2W(), Observation(1, failed, storage_error=error))
    assert s.phase == Phase.FAILED and s.message.endswith(f"; no result.json: {error}")


def test_suspend_and_resume_conditions():
    s = derive_status(V2W(), Observation(1, pj(("Suspended", "PyTorchJobSuspended", ""))))
    assert s.phase == Phase.SUSPENDED and conds(s)["Suspended"] == ("True", "Suspended")
    resumed = derive_status(s, Observation(2, pj(("Running", "", ""))))
    assert resumed.phase == Phase.RUNNING and conds(resumed)["Suspended"] == ("False", "Resumed")


def test_a_job_created_suspended_stays_suspended_before_the_training_operator_answers():
    # As ensure() leaves it at creation; the PyTorchJob has no condition yet (or no training-operator runs).
    created = V2W.model_validate({"phase": "Suspended", "conditions": [
        {"type": "Suspended", "status": "True", "reason": "Suspended", "message": "",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    s = derive_status(created, Observation(1, pj(), suspend_requested=True))
    assert s.phase == Phase.SUSPENDED and conds(s)["Suspended"] == ("True", "Suspended")
    assert derive_status(s, Observation(1, pj(), suspend_requested=True)).to_wire() == s.to_wire()  # nothing to write
    resumed = derive_status(s, Observation(2, pj()))
    assert resumed.phase == Phase.PENDING and conds(resumed)["Suspended"] == ("False", "Resumed")
    # The PyTorchJob's own conditions win: resumed in the spec but still suspended by the training-operator.
    still = derive_status(s, Observation(2, pj(("Suspended", "PyTorchJobSuspended", ""))))
    assert still.phase == Phase.SUSPENDED


def test_deleted_pytorchjob_fails_the_job():
    s = derive_status(V2W(phase=Phase.RUNNING, pytorch_job_name="v2w-x"),
                      Observation(1, None, child_was_created=True))
    assert s.phase == Phase.FAILED and conds(s)["Failed"] == ("True", "ChildDeleted")


def test_transition_time_moves_only_on_change():
    first = derive_status(V2W(), Observation(1, pj(("Running", "", ""))))
    t0 = next(c for c in first.conditions if c.type == ConditionType.RUNNING).last_transition_time
    again = derive_status(first, Observation(1, pj(("Running", "", ""))))
    assert next(c for c in again.conditions if c.type == ConditionType.RUNNING).last_transition_time == t0


# --- Kueue: a PyTorchJob with the queue label that Kueue keeps suspended --------------------------------------

def kueue_pj(*conds, suspend=True):
    job = pj(*conds)
    job["metadata"] = {"name": "v2w-a", "labels": {"kueue.x-k8s.io/queue-name": "gpus"}}
    job["spec"] = {"runPolicy": {"suspend": suspend}}
    return job


PENDING_WORKLOAD = {"name": "pytorchjob-v2w-a-1", "active": True, "admission": None, "conditions": [
    {"type": "QuotaReserved", "status": "False", "reason": "Pending",
     "message": "couldn't assign flavors to pod set master: insufficient unused quota for nvidia.com/gpu in flavor "
                "gpu, 1 more needed"}]}


def test_held_by_kueue_is_queued_with_the_workloads_reason():
    held = kueue_pj(("Created", "PyTorchJobCreated", ""), ("Suspended", "PyTorchJobSuspended", "suspended"))
    s = derive_status(V2W(), Observation(1, held, workload=PENDING_WORKLOAD))
    assert s.phase == Phase.QUEUED and conds(s)["Queued"] == ("True", "Pending")
    assert "insufficient unused quota for nvidia.com/gpu" in s.message and "LocalQueue gpus" in s.message
    assert "spec.suspend" not in s.message and "Suspended" not in conds(s)


def test_held_before_kueue_made_its_workload_is_queued():
    s = derive_status(V2W(), Observation(1, kueue_pj(("Created", "PyTorchJobCreated", ""))))
    assert s.phase == Phase.QUEUED and conds(s)["Queued"] == ("True", "WaitingForWorkload")


def test_admitted_job_turns_its_queued_condition_false():
    queued = derive_status(V2W(), Observation(1, kueue_pj(("Created", "", "")), workload=PENDING_WORKLOAD))
    admitted = {**PENDING_WORKLOAD, "admission": "team", "conditions": [
        {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": ""},
        {"type": "Admitted", "status": "True", "reason": "Admitted", "message": ""}]}
    running = kueue_pj(("Created", "", ""), ("Running", "PyTorchJobRunning", ""), suspend=False)
    s = derive_status(queued, Observation(1, running, workload=admitted))
    assert s.phase == Phase.RUNNING and conds(s)["Queued"] == ("False", "Admitted")
    assert "ClusterQueue team" in next(c.message for c in s.conditions if c.type == ConditionType.QUEUED)


def test_evicted_workload_gives_its_reason():
    evicted = {**PENDING_WORKLOAD, "conditions": [
        {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "Preempted to accommodate a job"}]}
    running = derive_status(V2W(), Observation(1, kueue_pj(("Running", "", ""), suspend=False)))
    s = derive_status(running, Observation(1, kueue_pj(("Suspended", "", "")), workload=evicted))
    assert s.phase == Phase.QUEUED and conds(s)["Queued"] == ("True", "Preempted")
    assert conds(s)["Running"] == ("False", "Preempted")


def test_users_suspend_of_a_kueue_job_reads_suspended():
    s = derive_status(V2W(), Observation(1, kueue_pj(("Suspended", "PyTorchJobSuspended", "")),
                                         suspend_requested=True, workload={**PENDING_WORKLOAD, "active": False}))
    assert s.phase == Phase.SUSPENDED and "Queued" not in conds(s)


def test_without_the_queue_label_a_suspended_pytorchjob_is_the_users_suspend():
    s = derive_status(V2W(), Observation(1, pj(("Suspended", "PyTorchJobSuspended", "")), suspend_requested=True))
    assert s.phase == Phase.SUSPENDED


def test_users_suspend_reads_suspended_only_once_the_workload_is_inactive():
    """Until the operator has deactivated the Workload, Kueue may still admit the job: it is not Suspended yet."""
    s = derive_status(V2W(), Observation(1, kueue_pj(("Suspended", "", "")), suspend_requested=True,
                                         workload=PENDING_WORKLOAD))
    assert s.phase == Phase.QUEUED and s.message.startswith("suspending: deactivating Workload pytorchjob-v2w-a-1")


def test_a_pytorchjob_kueue_just_unsuspended_is_starting_not_suspended():
    """Admitted: Kueue set suspend to false and the training-operator's Suspended condition is still there."""
    queued = derive_status(V2W(), Observation(1, kueue_pj(("Suspended", "", "")), workload=PENDING_WORKLOAD))
    s = derive_status(queued, Observation(1, kueue_pj(("Suspended", "PyTorchJobSuspended", ""), suspend=False)))
    assert s.phase == Phase.PENDING and "Suspended" not in conds(s) and conds(s)["Queued"] == ("False", "Admitted")
