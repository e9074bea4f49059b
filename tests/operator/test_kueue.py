"""What the operator reads of Kueue: which Workload counts, and why a queued job waits."""

from __future__ import annotations

from v2w_operator import kueue
from v2w_operator.backends import pytorchjob


def workload(name, created, deleting=False, active=True, conditions=()):
    return kueue.summary({"apiVersion": "kueue.x-k8s.io/v1beta2",
                          "metadata": {"name": name, "creationTimestamp": created,
                                       **({"deletionTimestamp": created} if deleting else {})},
                          "spec": {"active": active, "queueName": "gpus"},
                          "status": {"conditions": list(conditions)}})


def test_the_current_workload_is_the_newest_not_being_deleted():
    old = workload("a", "2026-01-01T00:00:01Z", deleting=True)
    new = workload("b", "2026-01-01T00:00:00Z")
    assert kueue.current([old, new])["name"] == "b"
    assert kueue.current([workload("c", "2026-01-01T00:00:00Z"), workload("d", "2026-01-01T00:00:05Z")])["name"] == "d"
    assert kueue.current([]) is None


def test_waiting_reasons_come_from_the_workloads_conditions():
    pending = {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "insufficient quota"}
    assert kueue.waiting_reason(workload("w", "t", conditions=[pending]), "gpus") == \
        ("Pending", "queued in LocalQueue gpus (Workload w): insufficient quota")
    evicted = {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "to make room"}
    assert kueue.waiting_reason(workload("w", "t", conditions=[pending, evicted]), "gpus")[0] == "Preempted"
    assert kueue.waiting_reason(workload("w", "t", active=False), "gpus")[0] == "Inactive"
    assert kueue.waiting_reason(None, "gpus")[0] == "WaitingForWorkload"
    assert kueue.waiting_reason(workload("w", "t"), "gpus")[0] == "Pending"


def test_a_pytorchjob_is_held_only_with_the_queue_label_and_suspended():
    labelled = {"metadata": {"labels": {kueue.QUEUE_LABEL: "gpus"}}, "spec": {"runPolicy": {"suspend": True}}}
    held = pytorchjob.view(labelled)
    assert held.held_by_kueue and held.queue == "gpus"
    assert not pytorchjob.view({**labelled, "spec": {"runPolicy": {"suspend": False}}}).held_by_kueue
    assert not pytorchjob.view({"metadata": {}, "spec": {"runPolicy": {"suspend": True}}}).held_by_kueue


def test_a_workloads_owner_is_a_child_of_the_backends_kind():
    workload = {"metadata": {"ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                                  "name": "v2w-a"}]}}
    assert kueue.owner_child(workload, "PyTorchJob", "kubeflow.org") == "v2w-a"
    assert kueue.owner_child(workload, "TrainJob", "trainer.kubeflow.org") is None
