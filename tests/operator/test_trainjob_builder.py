"""The TrainJob builder and view: names, owner, runtime reference, the trainer's fields, the runtime patch, and
every TrainJob state read back as the status reads a PyTorchJob's.

(That its pods equal the PyTorchJob's is tests/contract/test_backends_run_the_same_pod.py; that the CRD takes
it, tests/cluster/test_trainjob_schema.py.)"""

from __future__ import annotations

import json

import pytest

from tests.api.cases import load_example
from v2w_api import KINDS
from v2w_api.run import RunConfig
from v2w_api.status import Phase, Video2WorldJobStatus
from v2w_operator.backends import child, pytorchjob, trainjob
from v2w_operator.config import OperatorConfig
from v2w_operator.observe import Observation, derive_status

CONFIG = OperatorConfig(checkpoint_2b="s3://models/2b", checkpoint_14b="pvc://model-store/14b",
                        refiner_checkpoint="s3://models/reason1", guardrail_checkpoint="s3://models/guard",
                        s3_endpoint="http://minio.storage:9000", queue_name="default-queue",
                        training_runtime_name="v2w-runtime")


def spec_of(example: str, mutate=None):
    doc = load_example(example)
    if mutate:
        mutate(doc["spec"])
    return doc["kind"], KINDS[doc["kind"]][1].model_validate(doc).spec


def build(example: str, mutate=None, name="job-a", config=CONFIG):
    kind, spec = spec_of(example, mutate)
    return trainjob.build(kind, name, "team-a", "uid-123", spec, config, batch_uri="s3://jobs/team-a/job-a/batch.json")


def pod_patch(tj):
    (patch,) = tj["spec"]["runtimePatches"]
    assert patch["manager"] == "video2world.io/operator"
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    return job["template"]["spec"]["template"]


def test_single_job_names_owner_runtime_and_trainer():
    tj = build("video2world-job.yaml")
    assert (tj["apiVersion"], tj["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert tj["metadata"]["name"] == "v2w-job-a" and tj["metadata"]["namespace"] == "team-a"
    owner = tj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Video2WorldJob", "uid-123", True)
    assert tj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "video2world-operator"
    assert tj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default-queue"
    assert tj["spec"]["runtimeRef"] == {"name": "v2w-runtime", "apiGroup": "trainer.kubeflow.org",
                                        "kind": "ClusterTrainingRuntime"}
    trainer = tj["spec"]["trainer"]
    assert trainer["command"] == ["v2w-launch"] and trainer["image"] == CONFIG.runtime_image
    assert trainer["args"][:3] == ["--module", "v2w_runtime.video2world", "--config"]
    run = RunConfig.from_yaml(trainer["args"][3], "the TrainJob")
    assert run.output.uri == "s3://v2w-results/jobs/team-a/job-a" and run.model.checkpoint == "s3://models/2b"
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (1, 1)
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 1}}
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.storage:9000"} in trainer["env"]
    assert not any(e["name"].startswith("PET_") for e in trainer["env"]), "Trainer's webhook refuses PET_* env"
    assert tj["spec"]["suspend"] is False and "activeDeadlineSeconds" not in tj["spec"]
    assert pod_patch(tj) == {"metadata": {"labels": {"video2world.io/job-name": "job-a",
                                                     "video2world.io/job-kind": "Video2WorldJob",
                                                     "app.kubernetes.io/managed-by": "video2world-operator"}}}


def test_the_same_input_builds_the_same_trainjob():
    assert json.dumps(build("bestofn-job.yaml"), sort_keys=True) == json.dumps(build("bestofn-job.yaml"), sort_keys=True)


def test_nodes_gpus_resources_deadline_and_placement():
    def mutate(spec):
        spec["parallelism"] = {"gpus": 4, "gpusPerNode": 2}
        spec["scheduling"] = {"cpu": "8", "memory": "64Gi", "nodeSelector": {"pool": "h100"},
                              "priorityClassName": "high", "serviceAccountName": "runner", "queueName": "q"}
        spec["runPolicy"] = {"activeDeadlineSeconds": 600, "backoffLimit": 0}
        spec["model"]["checkpoint"] = "pvc://model-store/2b"

    tj = build("video2world-job.yaml", mutate)
    trainer = tj["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 2)
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 2}, "requests": {"cpu": "8", "memory": "64Gi"}}
    assert tj["spec"]["activeDeadlineSeconds"] == 600
    pod = pod_patch(tj)["spec"]
    assert pod["nodeSelector"] == {"pool": "h100"} and pod["serviceAccountName"] == "runner"
    assert "priorityClassName" not in pod  # no place for it in Trainer v2.2's runtime patch (README)
    assert pod["volumes"] == [{"name": "pvc-0", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}}]
    assert pod["containers"] == [{"name": "node", "volumeMounts": [
        {"name": "pvc-0", "mountPath": "/mnt/pvc/model-store", "readOnly": True}]}]


def test_created_suspended_without_the_queue_label():
    tj = build("video2world-job.yaml", lambda spec: spec.update(suspend=True))
    assert tj["spec"]["suspend"] is True and "kueue.x-k8s.io/queue-name" not in tj["metadata"]["labels"]
    assert trainjob.BACKEND.suspend_patch(False) == {"spec": {"suspend": False}}


def test_a_run_configuration_over_the_trainjob_argument_limit_is_refused():
    """Trainer's CRD holds 64 KiB per argument (a container's is larger): the job fails at once, saying so."""
    def long_blocklist(spec):
        spec["guardrail"] = {"blocklist": ["x" * 200] * 400}  # about 80 KB rendered

    kind, spec = spec_of("video2world-job.yaml", long_blocklist)
    pytorchjob.build(kind, "job-a", "team-a", "uid", spec, CONFIG)  # fits a PyTorchJob
    with pytest.raises(child.RunConfigTooLarge, match="65536"):
        trainjob.build(kind, "job-a", "team-a", "uid", spec, CONFIG)


def test_the_runtime_holds_what_every_job_shares():
    rt = trainjob.runtime(CONFIG.model_copy(update={"cache_host_path": "/var/cache/v2w-nodes"}))
    assert rt["kind"] == "ClusterTrainingRuntime" and rt["metadata"]["name"] == "v2w-runtime"
    assert rt["spec"]["mlPolicy"] == {"numNodes": 1, "torch": {}}
    (job,) = rt["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node" and job["template"]["metadata"]["labels"] == {
        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    assert job["template"]["spec"]["backoffLimit"] == 0
    assert job["template"]["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [1, 2, 3]
    pod = job["template"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == child.POD_SECURITY_CONTEXT
    assert {"name": "cache", "hostPath": {"path": "/var/cache/v2w-nodes", "type": "Directory"}} in pod["volumes"]
    (container,) = pod["containers"]
    assert container["name"] == "node" and container["securityContext"] == child.CONTAINER_SECURITY_CONTEXT
    assert rt["spec"]["template"]["spec"]["failurePolicy"]["maxRestarts"] == CONFIG.training_runtime_max_restarts


# --- the view: every TrainJob state, as the status reads it ------------------------------------------------------

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "2026-01-01T00:01:00Z"


def trainjob_obj(*conditions, jobs=None, suspend=False, queue=None):
    meta = {"name": "v2w-a", "uid": "tj-uid", "creationTimestamp": T0, "labels": {}}
    if queue:
        meta["labels"]["kueue.x-k8s.io/queue-name"] = queue
    status = {"conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": at}
                             for t, s, r, m, at in conditions]}
    if jobs is not None:
        status["jobsStatus"] = [{"name": "node", "ready": 0, "succeeded": 0, "failed": 0, "active": 0, "suspended": 0,
                                 **jobs}]
    return {"metadata": meta, "spec": {"suspend": suspend}, "status": status}


@pytest.mark.parametrize("obj, state, failure", [
    (trainjob_obj(), "Created", None),
    (trainjob_obj(jobs={"active": 1}), "Created", None),  # pods pending: not running yet
    (trainjob_obj(jobs={"active": 1, "ready": 1}), "Running", None),
    (trainjob_obj(("Suspended", "True", "Suspended", "TrainJob is suspended", T1), suspend=True), "Suspended", None),
    (trainjob_obj(("Complete", "True", "AllJobsCompleted", "jobset completed successfully", T2)), "Succeeded", None),
    (trainjob_obj(("Failed", "True", "DeadlineExceeded", "deadline exceeded", T2)), "Failed", "DeadlineExceeded"),
    (trainjob_obj(("Failed", "True", "ReachedMaxRestarts", "jobset failed due to reaching max number of restarts",
                   T2)), "Failed", "BackoffLimitExceeded"),
    (trainjob_obj(("Failed", "True", "FailJobSetFailurePolicyAction", "applying FailJobSet failure policy action",
                   T2)), "Failed", None),
], ids=["created", "pending", "running", "suspended", "complete", "deadline", "max-restarts", "exit-code"])
def test_each_trainjob_state_reads_as_the_status_reads_it(obj, state, failure):
    seen = trainjob.view(obj)
    assert (seen.kind, seen.name, seen.uid, seen.state, seen.failure) == ("TrainJob", "v2w-a", "tj-uid", state, failure)
    if state in ("Succeeded", "Failed"):
        assert seen.completion_time.isoformat() == "2026-01-01T00:01:00+00:00"
    assert seen.start_time is None if state == "Suspended" else seen.start_time.isoformat() == "2026-01-01T00:00:00+00:00"


def test_a_resumed_trainjob_starts_at_its_resume_and_kueue_holds_a_suspended_labelled_one():
    resumed = trainjob.view(trainjob_obj(("Suspended", "False", "Resumed", "", T1), jobs={"ready": 1}))
    assert resumed.state == "Running" and resumed.start_time.isoformat() == "2026-01-01T00:00:05+00:00"
    held = trainjob.view(trainjob_obj(("Suspended", "True", "Suspended", "", T1), suspend=True, queue="gpus"))
    assert held.held_by_kueue and held.queue == "gpus"
    assert not trainjob.view(trainjob_obj(suspend=True)).held_by_kueue


@pytest.mark.parametrize("pj_conditions, tj, phase", [
    ([("Created", "PyTorchJobCreated")], trainjob_obj(), Phase.PENDING),
    ([("Running", "PyTorchJobRunning")], trainjob_obj(jobs={"ready": 1}), Phase.RUNNING),
    ([("Suspended", "PyTorchJobSuspended")], trainjob_obj(("Suspended", "True", "Suspended", "", T1), suspend=True),
     Phase.SUSPENDED),
    ([("Failed", "DeadlineExceeded")], trainjob_obj(("Failed", "True", "DeadlineExceeded", "", T2)), Phase.FAILED),
])
def test_both_backends_give_the_same_phase_and_conditions(pj_conditions, tj, phase):
    pj = {"status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": ""}
                                    for t, r in pj_conditions]}, "spec": {"runPolicy": {"suspend": phase == Phase.SUSPENDED}}}
    suspend = phase == Phase.SUSPENDED
    from_pj = derive_status(Video2WorldJobStatus(), Observation(1, pytorchjob.view(pj), suspend_requested=suspend))
    from_tj = derive_status(Video2WorldJobStatus(), Observation(1, trainjob.view(tj), suspend_requested=suspend))
    assert from_pj.phase == from_tj.phase == phase
    assert [(c.type, c.status, c.reason) for c in from_pj.conditions] == \
        [(c.type, c.status, c.reason) for c in from_tj.conditions]
