"""The kopf handlers without a cluster: validate → stage → create, the status written as the keys that changed
(none when nothing did), an unreadable status replaced, and S3 read under the recorded output prefix."""

from __future__ import annotations

import copy
import logging
from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from tests.api.cases import BATCH, SINGLE, load_example
from v2w_api.status import Video2WorldJobStatus
from v2w_operator import backends, handlers
from v2w_operator.backends import child, pytorchjob
from v2w_operator.s3 import Credentials

LOGGER = logging.getLogger("test-handlers")
NAMESPACE = "team-a"


class FakeCustomObjects:
    """The PyTorchJobs of a fake API server: create (409 when taken) and get (404 when absent)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.creates = 0
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}  # our jobs, for their status subresource
        self.status_patches: list[tuple[str, str, dict[str, Any]]] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.creates += 1
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409)
        self.objects[key] = body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if (namespace, name) not in self.objects:
            raise ApiException(status=404)
        return self.objects[(namespace, name)]

    def patch_namespaced_custom_object_status(self, group, version, namespace, plural, name, body):
        """A job's status subresource: a merge patch of the top-level keys; the object with a new version."""
        self.status_patches.append((plural, name, body["status"]))
        job = self.jobs[(namespace, name)]
        job["status"] = applied(job, body["status"])["status"]
        job["metadata"]["resourceVersion"] = str(int(job["metadata"].get("resourceVersion") or 0) + 1)
        return copy.deepcopy(job)


class FakeCore:
    """The PersistentVolumeClaims of a fake API server: get (404 when absent)."""

    def __init__(self) -> None:
        self.claims: set[tuple[str, str]] = set()
        self.reads: list[tuple[str, str]] = []

    def read_namespaced_persistent_volume_claim(self, name, namespace):
        self.reads.append((namespace, name))
        if (namespace, name) not in self.claims:
            raise ApiException(status=404)
        return {"metadata": {"name": name, "namespace": namespace}}


class FakeStorage:
    def __init__(self, prefix: str, reads: dict[str, Any]) -> None:
        self.prefix, self.reads = prefix.rstrip("/"), reads

    def uri(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def write_json(self, name: str, doc: Any) -> str:
        self.reads.setdefault("written", []).append((self.uri(name), doc))
        return self.uri(name)

    def progress(self):
        self.reads.setdefault("progress_reads", []).append(self.prefix)
        return None

    def result(self):
        return None


CORE = FakeCore()


@pytest.fixture
def cluster(monkeypatch):
    api = FakeCustomObjects()
    events: list[tuple[str, str, str]] = []
    storage: dict[str, Any] = {"prefixes": []}

    def storage_for(spec, prefix, credentials):
        storage["prefixes"].append(prefix)
        return FakeStorage(prefix, storage)

    monkeypatch.setattr(handlers, "custom_objects", lambda: api)
    monkeypatch.setattr(handlers, "core", lambda: CORE)
    CORE.claims.clear()
    CORE.reads.clear()
    monkeypatch.setattr(handlers, "_credentials", lambda spec, namespace: Credentials("id", "secret"))
    monkeypatch.setattr(handlers, "_storage", storage_for)
    monkeypatch.setattr(kopf, "info", lambda body, reason, message: events.append(("Normal", reason, message)))
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: events.append(("Warning", reason, message)))
    return api, events, storage


def job(example: str = SINGLE, status: dict | None = None, name: str = "job-a", mutate=None) -> dict[str, Any]:
    doc = load_example(example)
    doc["metadata"] = {"name": name, "namespace": NAMESPACE, "uid": "uid-1", "generation": 1,
                       "creationTimestamp": "2026-01-01T00:00:00Z"}
    if mutate:
        mutate(doc["spec"])
    if status is not None:
        doc["status"] = status
    return doc


def ensure(doc: dict[str, Any], retry: int = 0) -> dict[str, Any]:
    """Run the create handler once; the status keys it patched."""
    body, patch = kopf.Body(doc), kopf.Patch()
    try:
        handlers.ensure(body=body, meta=body.meta, status=body.status, name=doc["metadata"]["name"],
                        namespace=NAMESPACE, uid="uid-1", patch=patch, retry=retry, logger=LOGGER, extra=True)
    finally:
        doc["_patch"] = dict(patch.get("status") or {})
    return doc["_patch"]


def sync(doc: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """One pass of a follower that starts afresh (with the child as the watch saw it); the status keys it would
    patch."""
    done = handlers.sync(kopf.Body(doc), dict(doc.get("status") or {}), doc["metadata"]["name"], NAMESPACE, LOGGER,
                         handlers.BACKEND.view(child))
    return done.patch if done else {}


def applied(doc: dict[str, Any], status_patch: dict[str, Any]) -> dict[str, Any]:
    """The job as the API server keeps it after a merge patch of its status."""
    out = copy.deepcopy({k: v for k, v in doc.items() if k != "_patch"})
    status = out.setdefault("status", {})
    for key, value in status_patch.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    return out


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


def test_a_new_job_gets_one_pytorchjob_and_a_second_run_writes_nothing(cluster):
    api, events, _ = cluster
    doc = job()
    written = ensure(doc)
    assert api.creates == 1 and (NAMESPACE, "v2w-job-a") in api.objects
    assert written["phase"] == "Pending" and written["pytorchJobName"] == "v2w-job-a"
    assert (written["childKind"], written["childName"]) == ("PyTorchJob", "v2w-job-a")
    assert written["outputPrefix"] == f"s3://v2w-results/jobs/{NAMESPACE}/job-a/"
    assert written["observedGeneration"] == 1 and conditions(written) == {"Accepted": ("True", "ChildCreated")}
    assert ("Normal", "ChildCreated", "created PyTorchJob v2w-job-a") in events
    assert ensure(applied(doc, written)) == {} and api.creates == 1  # resumed after a restart: nothing to do


def test_with_the_trainjob_backend_a_job_gets_one_trainjob_and_its_status_reads_the_same(cluster, monkeypatch):
    """The same job, the other backend: one TrainJob; the neutral status fields, no pytorchJobName; and a
    TrainJob that runs, then completes, gives the phases a PyTorchJob gives."""
    api, events, _ = cluster
    monkeypatch.setattr(handlers, "BACKEND", backends.TRAINJOB)
    doc = job()
    written = ensure(doc)
    made = api.objects[(NAMESPACE, "v2w-job-a")]
    assert made["kind"] == "TrainJob" and made["spec"]["runtimeRef"]["name"] == handlers.CONFIG.training_runtime_name
    assert (written["childKind"], written["childName"]) == ("TrainJob", "v2w-job-a") and "pytorchJobName" not in written
    assert conditions(written) == {"Accepted": ("True", "ChildCreated")}
    assert ("Normal", "ChildCreated", "created TrainJob v2w-job-a") in events
    doc = applied(doc, written)
    made["metadata"]["creationTimestamp"] = "2026-01-01T00:00:01Z"
    made["status"] = {"jobsStatus": [{"name": "node", "ready": 1, "succeeded": 0, "failed": 0, "active": 1,
                                      "suspended": 0}]}
    running = sync(doc, made)
    assert running["phase"] == "Running" and running["startTime"] == "2026-01-01T00:00:01Z"


def test_a_job_another_backend_made_is_left_alone(cluster, monkeypatch):
    """An operator switched to another backend neither follows nor fails the children of the one before."""
    api, _, _ = cluster
    doc = applied(job(), ensure(job()))  # a PyTorchJob
    monkeypatch.setattr(handlers, "BACKEND", backends.TRAINJOB)
    assert handlers.sync(kopf.Body(doc), dict(doc["status"]), "job-a", NAMESPACE, LOGGER) is None


def test_auto_picks_the_served_backend_pytorchjob_first():
    def serving(*kinds):
        return lambda backend: backend.kind in kinds

    assert backends.resolve("auto", serving("PyTorchJob", "TrainJob")) is backends.PYTORCHJOB
    assert backends.resolve("auto", serving("TrainJob")) is backends.TRAINJOB
    assert backends.resolve("auto", serving()) is backends.PYTORCHJOB  # jobs then name the missing CRD
    assert backends.resolve("trainjob", serving()) is backends.TRAINJOB
    with pytest.raises(ValueError, match="unknown backend 'mpijob'"):
        backends.named("mpijob")


def test_a_job_created_suspended_is_suspended(cluster):
    written = ensure(job(mutate=lambda spec: spec.update(suspend=True)))
    assert written["phase"] == "Suspended" and conditions(written)["Suspended"] == ("True", "Suspended")
    assert "set spec.suspend to false" in written["message"]


def test_an_invalid_spec_fails_the_job_for_good(cluster):
    api, events, _ = cluster
    doc = job(mutate=lambda spec: spec["generation"].update(guidance="lots"))
    with pytest.raises(kopf.PermanentError, match="invalid spec: spec.generation.guidance"):
        ensure(doc)
    written = doc["_patch"]
    assert written["phase"] == "Failed" and written["message"].startswith("invalid spec: spec.generation.guidance")
    assert conditions(written) == {"Accepted": ("False", "InvalidSpec"), "Failed": ("True", "InvalidSpec")}
    assert events[-1][:2] == ("Warning", "InvalidSpec") and api.creates == 0


def test_a_run_configuration_too_large_for_its_argument_is_an_invalid_spec(cluster, monkeypatch):
    api, events, _ = cluster
    message = "the run configuration is 300000 bytes, more than the 131072 one container argument holds"

    def too_large(*args, **kwargs):
        raise child.RunConfigTooLarge(message)

    monkeypatch.setattr(pytorchjob, "build", too_large)
    doc = job()
    with pytest.raises(kopf.PermanentError, match="300000 bytes"):
        ensure(doc)
    written = doc["_patch"]
    assert written["phase"] == "Failed" and written["message"] == message
    assert conditions(written) == {"Accepted": ("False", "InvalidSpec"), "Failed": ("True", "InvalidSpec")}
    assert events[-1] == ("Warning", "InvalidSpec", message) and api.creates == 0


def test_a_missing_secret_waits_and_each_retry_writes_only_what_changed(cluster, monkeypatch):
    api, events, _ = cluster

    def no_secret(spec, namespace):
        raise ApiException(status=404)

    monkeypatch.setattr(handlers, "_credentials", no_secret)
    doc = job()
    with pytest.raises(kopf.TemporaryError, match="Secret v2w-s3 not found in namespace team-a"):
        ensure(doc)
    written = doc["_patch"]
    assert written["phase"] == "Pending" and conditions(written) == {"Accepted": ("False", "SecretMissing")}
    again = applied(doc, written)
    with pytest.raises(kopf.TemporaryError):
        ensure(again, retry=1)
    assert again["_patch"] == {} and api.creates == 0  # the same status: no write


def test_a_missing_claim_is_named_in_the_condition_and_the_job_goes_on_once_it_exists(cluster):
    """A pvc:// URI whose claim is not in the job's namespace: Pending with Accepted=False/ClaimMissing naming
    the claim, no PyTorchJob (its pods would only wait unscheduled), retried with backoff."""
    api, events, _ = cluster
    doc = job("video2world-5frame-job.yaml")  # pvc://checkpoints and pvc://inputs/…
    CORE.claims.add((NAMESPACE, "inputs"))
    with pytest.raises(kopf.TemporaryError, match="PersistentVolumeClaim checkpoints not found in namespace team-a"):
        ensure(doc)
    written = doc["_patch"]
    assert written["phase"] == "Pending" and conditions(written) == {"Accepted": ("False", "ClaimMissing")}
    assert "checkpoints" in written["message"] and "inputs" not in written["message"]
    assert events[-1][:2] == ("Warning", "ClaimMissing") and api.creates == 0
    assert set(CORE.reads) == {(NAMESPACE, "inputs"), (NAMESPACE, "checkpoints")}  # its own namespace only

    CORE.claims.add((NAMESPACE, "checkpoints"))
    again = applied(doc, written)
    written = ensure(again, retry=1)
    assert conditions(written)["Accepted"] == ("True", "ChildCreated") and api.creates == 1


def test_a_default_checkpoint_on_a_claim_is_checked_and_mounted(cluster, monkeypatch):
    api, _, _ = cluster
    monkeypatch.setattr(handlers, "CONFIG", handlers.CONFIG.model_copy(update={"checkpoint_2b": "pvc://ckpt/2b"}))
    doc = job()
    with pytest.raises(kopf.TemporaryError, match="PersistentVolumeClaim ckpt not found"):
        ensure(doc)
    CORE.claims.add((NAMESPACE, "ckpt"))
    ensure(applied(doc, doc["_patch"]), retry=1)
    pod = api.objects[(NAMESPACE, "v2w-job-a")]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v] == ["ckpt"]


def test_the_inline_batch_is_staged_under_the_recorded_output_prefix(cluster):
    api, _, storage = cluster
    written = ensure(job(BATCH, status={"outputPrefix": "s3://elsewhere/recorded/"}))
    [(uri, entries)] = storage["written"]
    assert uri == "s3://elsewhere/recorded/batch.json" and len(entries) == 3
    assert "outputPrefix" not in written  # kept as it was
    args = api.objects[(NAMESPACE, "v2w-job-a")]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert "s3://elsewhere/recorded/batch.json" in " ".join(args["containers"][0]["args"])


def test_an_unreadable_status_is_read_as_empty_and_replaced(cluster, caplog):
    doc = job(status={"phase": "Pending", "leftover": {"from": "someone"}, "pytorchJobName": 7})
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        written = ensure(doc)
    assert "unreadable status" in caplog.text
    assert written["leftover"] is None and written["pytorchJobName"] == "v2w-job-a"
    assert "phase" not in written  # Pending, as stored


RUNNING_PJ = {"metadata": {"name": "v2w-job-a"}, "status": {"conditions": [
    {"type": "Running", "status": "True", "reason": "PyTorchJobRunning", "message": ""}],
    "startTime": "2026-01-01T00:00:05Z"}}


def test_a_pass_reads_s3_under_the_recorded_prefix_and_writes_nothing_when_nothing_changed(cluster):
    _, events, storage = cluster
    doc = applied(job(), ensure(job()))
    doc["status"]["outputPrefix"] = "s3://elsewhere/recorded/"
    written = sync(doc, RUNNING_PJ)
    assert storage["prefixes"][-1] == "s3://elsewhere/recorded/"
    assert written["phase"] == "Running" and written["startTime"] == "2026-01-01T00:00:05Z"
    assert set(written) == {"phase", "message", "conditions", "startTime"}
    assert sync(applied(doc, written), RUNNING_PJ) == {}


def accepted_job(api) -> dict[str, Any]:
    doc = applied(job(), ensure(job()))
    doc["metadata"]["resourceVersion"] = "10"
    api.jobs[(NAMESPACE, "job-a")] = copy.deepcopy(doc)
    return doc


def test_the_follower_writes_once_and_announces_a_phase_once_while_the_watch_lags(cluster):
    api, events, _ = cluster
    stale = accepted_job(api)  # what the watch shows: its own write has not come back yet
    follower = handlers.Follower("Video2WorldJob", "job-a", NAMESPACE, handlers.Files())
    first = follower.step(copy.deepcopy(stale), pytorchjob.view(RUNNING_PJ), LOGGER)
    assert first.announce and first.new.phase.value == "Running"
    assert len(api.status_patches) == 1
    again = follower.step(copy.deepcopy(stale), pytorchjob.view(RUNNING_PJ), LOGGER)  # woken again, same stale body
    assert again.patch == {} and not again.announce
    assert len(api.status_patches) == 1
    caught_up = copy.deepcopy(api.jobs[(NAMESPACE, "job-a")])  # the watch has the write now
    assert follower.step(caught_up, pytorchjob.view(RUNNING_PJ), LOGGER).patch == {}
    assert follower.written is None  # from here on the watched status is read again


def test_the_follower_reads_s3_when_the_state_changes_or_a_poll_is_due_not_at_every_wake(cluster, monkeypatch):
    api, _, storage = cluster
    doc = accepted_job(api)
    follower = handlers.Follower("Video2WorldJob", "job-a", NAMESPACE, handlers.Files())
    for _ in range(5):
        follower.step(copy.deepcopy(api.jobs[(NAMESPACE, "job-a")]), pytorchjob.view(RUNNING_PJ), LOGGER)
    assert len(storage["progress_reads"]) == 1
    follower.files.at -= handlers.CONFIG.poll_interval_seconds  # a poll later
    follower.step(copy.deepcopy(api.jobs[(NAMESPACE, "job-a")]), pytorchjob.view(RUNNING_PJ), LOGGER)
    assert len(storage["progress_reads"]) == 2
    assert doc["status"]["phase"] == "Pending"


def test_a_resumed_operator_leaves_an_accepted_jobs_status_to_its_follower(cluster):
    api, _, _ = cluster
    doc = applied(job(), ensure(job()))
    doc["status"]["phase"] = "Running"  # what the follower wrote since
    assert ensure(doc) == {}
    assert api.creates == 1


def test_write_status_patches_changed_keys_and_none_for_a_key_that_went():
    before = {"phase": "Running", "message": "running", "resultUri": "s3://b/r.json", "conditions": []}
    after = Video2WorldJobStatus(phase="Running", message="running (progress unavailable: S3)")
    patch = kopf.Patch()
    handlers.write_status(patch, before, after)
    assert dict(patch["status"]) == {"message": "running (progress unavailable: S3)", "resultUri": None,
                                     "outputs": []}


def test_kopfs_unresolved_warning_is_dropped_only_when_kueue_alone_is_missing():
    """Without Kueue the Workload index watches nothing: kopf's warning at every CRD change would be noise, but
    a missing PyTorchJob CRD is still warned about."""
    def record(message):
        return logging.LogRecord("kopf._core.reactor.observation", logging.WARNING, "", 0, message, None, None)

    kueue_only = ("Unresolved resources cannot be served (try creating their CRDs): "
                  "Selector(group='kueue.x-k8s.io', any_name='workloads')")
    both = ("Unresolved resources cannot be served (try creating their CRDs): Selector(group='kubeflow.org', "
            "version='v1', plural='pytorchjobs'), Selector(group='kueue.x-k8s.io', any_name='workloads')")
    assert not handlers._without_kueue_unresolved(record(kueue_only))
    assert handlers._without_kueue_unresolved(record(both))
    assert handlers._without_kueue_unresolved(record("anything else"))


# --- spec.suspend with and without Kueue ----------------------------------------------------------------------

class KueueObjects(FakeCustomObjects):
    """Adds merge patches of PyTorchJobs and Workloads, and Kueue's Workloads (None: Kueue not installed)."""

    def __init__(self, workloads: list[dict[str, Any]] | None) -> None:
        super().__init__()
        self.workloads = workloads
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.patches.append((plural, name, body))

    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector=None, limit=None):
        if self.workloads is None:
            raise ApiException(status=404)
        return {"items": [w for w in self.workloads
                          if not label_selector or label_selector.split("=")[1] == w["metadata"]["labels"]["uid"]]}


def suspend_change(api, doc, old, new):
    handlers.set_suspend(body=kopf.Body(doc), name=doc["metadata"]["name"], namespace=NAMESPACE, old=old, new=new,
                         retry=0)
    return api.patches


def kueue_cluster(monkeypatch, workloads, suspended_at_creation):
    api = KueueObjects(workloads)
    monkeypatch.setattr(handlers, "custom_objects", lambda: api)
    monkeypatch.setattr(kopf, "info", lambda body, reason, message: None)
    doc = job(mutate=lambda spec: spec.update(suspend=suspended_at_creation, scheduling={"queueName": "gpus"}))
    spec = handlers._parse(doc["kind"], kopf.Body(doc))
    pj = pytorchjob.build(doc["kind"], "job-a", NAMESPACE, "uid-1", spec, handlers.CONFIG)
    pj["metadata"]["uid"] = "pj-uid"
    api.objects[(NAMESPACE, "v2w-job-a")] = pj
    return api, doc


def a_workload(active=True, deleting=False, name="pytorchjob-v2w-job-a-1"):
    meta = {"name": name, "labels": {"uid": "pj-uid"},
            "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "v2w-job-a"}]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"active": active}}


def test_suspending_a_kueue_job_deactivates_its_live_workloads_not_the_pytorchjob(monkeypatch):
    api, doc = kueue_cluster(monkeypatch, [a_workload(), a_workload(deleting=True, name="old")], False)
    assert suspend_change(api, doc, False, True) == [("workloads", "pytorchjob-v2w-job-a-1", {"spec": {"active": False}})]
    api.patches.clear()
    api.workloads = [a_workload(active=False)]
    assert suspend_change(api, doc, True, False) == [("workloads", "pytorchjob-v2w-job-a-1", {"spec": {"active": True}})]


def test_suspending_a_kueue_job_waits_for_its_workload(monkeypatch):
    api, doc = kueue_cluster(monkeypatch, [], False)
    with pytest.raises(kopf.TemporaryError):
        suspend_change(api, doc, False, True)


def test_resuming_a_job_created_suspended_hands_it_to_kueue_still_suspended(monkeypatch):
    api, doc = kueue_cluster(monkeypatch, [], True)
    assert suspend_change(api, doc, True, False) == [
        ("pytorchjobs", "v2w-job-a", {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "gpus"}}})]


def test_without_kueue_the_queue_label_is_inert_and_resume_unsuspends(monkeypatch):
    api, doc = kueue_cluster(monkeypatch, None, True)
    assert suspend_change(api, doc, True, False) == [("pytorchjobs", "v2w-job-a", {"spec": {"runPolicy": {"suspend": False}}})]
    api.patches.clear()
    api.objects[(NAMESPACE, "v2w-job-a")]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "gpus"
    assert suspend_change(api, doc, False, True) == [("pytorchjobs", "v2w-job-a", {"spec": {"runPolicy": {"suspend": True}}})]


def test_a_held_jobs_workload_is_read_from_the_api_when_the_watch_has_not_seen_it(monkeypatch):
    pending = a_workload()
    pending["status"] = {"conditions": [{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                                         "message": "insufficient unused quota"}]}
    api, doc = kueue_cluster(monkeypatch, [pending], False)
    pj = api.objects[(NAMESPACE, "v2w-job-a")]
    pj["spec"]["runPolicy"]["suspend"] = True  # as Kueue's webhook made it
    doc["status"] = {"pytorchJobName": "v2w-job-a", "phase": "Pending", "outputPrefix": "s3://b/p/"}
    written = sync(doc, pj)
    assert written["phase"] == "Queued" and conditions(written)["Queued"] == ("True", "Pending")
    assert "insufficient unused quota" in written["message"]
