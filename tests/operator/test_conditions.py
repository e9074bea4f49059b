"""Conditions on the status models: one per type, in one order, a transition time that moves only on change."""

from __future__ import annotations

from datetime import datetime, timezone

from v2w_api.status import LEGACY_REASONS, ConditionType, Reason
from v2w_operator.conditions import get_condition, set_condition, utcnow

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1 = datetime(2026, 1, 2, tzinfo=timezone.utc)


def test_conditions_keep_one_order_whatever_the_order_they_are_set_in():
    conditions = []
    for type_ in (ConditionType.FAILED, ConditionType.ACCEPTED, ConditionType.SUCCEEDED, ConditionType.RUNNING,
                  ConditionType.SUSPENDED):
        conditions = set_condition(conditions, type_, True, Reason.COMPLETED, "", 1, T0)
    assert [c.type.value for c in conditions] == ["Accepted", "Running", "Suspended", "Succeeded", "Failed"]


def test_transition_time_moves_only_when_the_status_changes():
    first = set_condition([], ConditionType.RUNNING, True, Reason.PODS_RUNNING, "running", 1, T0)
    same = set_condition(first, ConditionType.RUNNING, True, Reason.PODS_RUNNING, "still running", 2, T1)
    [running] = same
    assert running.last_transition_time == T0 and running.message == "still running" and running.observed_generation == 2
    [stopped] = set_condition(same, ConditionType.RUNNING, False, Reason.COMPLETED, "done", 2, T1)
    assert stopped.last_transition_time == T1 and stopped.status == "False" and stopped.reason == "Completed"


def test_set_condition_leaves_its_input_alone_and_get_condition_finds_by_type():
    before = set_condition([], ConditionType.ACCEPTED, False, Reason.SECRET_MISSING, "no Secret", 1, T0)
    after = set_condition(before, ConditionType.ACCEPTED, True, Reason.CHILD_CREATED, "created", 1, T1)
    assert get_condition(before, ConditionType.ACCEPTED).reason == "SecretMissing"
    assert get_condition(after, ConditionType.ACCEPTED).reason == "ChildCreated"
    assert get_condition(after, ConditionType.FAILED) is None


def test_times_are_utc_to_the_second_on_the_wire():
    [condition] = set_condition([], ConditionType.RUNNING, True, Reason.PODS_RUNNING, "", None)
    wire = condition.to_wire()
    assert wire["lastTransitionTime"].endswith("Z") and "." not in wire["lastTransitionTime"]
    assert "observedGeneration" not in wire and utcnow().microsecond == 0


def test_a_message_too_long_for_the_crd_is_cut():
    from v2w_operator.conditions import MAX_MESSAGE

    [cond] = set_condition([], ConditionType.FAILED, True, Reason.RUNTIME_FAILED, "x" * (MAX_MESSAGE + 10), 1)
    assert len(cond.message) == MAX_MESSAGE and cond.message.endswith("…")


def test_the_child_reasons_are_neutral_and_the_old_names_alias_them():
    """Conditions say ChildCreated/ChildCRDMissing/ChildDeleted for either backend; code that still names the
    PyTorchJob-era members gets the same reasons, and the old words are listed for scripts that matched them."""
    assert Reason.PYTORCHJOB_CREATED is Reason.CHILD_CREATED and Reason.CHILD_CREATED.value == "ChildCreated"
    assert Reason.PYTORCHJOB_CRD_MISSING is Reason.CHILD_CRD_MISSING
    assert Reason.PYTORCHJOB_DELETED is Reason.CHILD_DELETED
    assert LEGACY_REASONS == {Reason.CHILD_CREATED: "PyTorchJobCreated", Reason.CHILD_CRD_MISSING: "PyTorchJobCRDMissing",
                              Reason.CHILD_DELETED: "PyTorchJobDeleted"}
