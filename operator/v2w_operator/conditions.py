"""Kubernetes-style conditions on the status models: set one, find one, keep them in one order."""

from __future__ import annotations

from datetime import datetime, timezone

from v2w_api.status import Condition, ConditionType, Reason

# Accepted, Queued, Running, Suspended, Succeeded, Failed: the order the enum declares, and the order users read.
ORDER = tuple(ConditionType)
MAX_MESSAGE = Condition.model_fields["message"].metadata[0].max_length  # what the CRD lets a message hold


def utcnow() -> datetime:
    """Now in UTC, to the second (Kubernetes times carry no fractions)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def set_condition(conditions: list[Condition], type_: ConditionType, status: bool, reason: Reason | str, message: str,
                  generation: int | None, now: datetime | None = None) -> list[Condition]:
    """A copy of `conditions` with `type_` set; its lastTransitionTime moves only when its status changes.

    `reason` is one of ours, or a word of Kueue's (a Queued condition says why in the Workload's terms)."""
    value = "True" if status else "False"
    if len(message) > MAX_MESSAGE:  # a runtime's long error must not make the status unwritable
        message = message[: MAX_MESSAGE - 1] + "…"
    previous = get_condition(conditions, type_)
    moved = previous is None or previous.status != value
    word = reason.value if isinstance(reason, Reason) else reason
    condition = Condition(type=type_, status=value, reason=word, message=message,
                          last_transition_time=(now or utcnow()) if moved else previous.last_transition_time,
                          observed_generation=generation)
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, condition], key=lambda c: ORDER.index(c.type))


def get_condition(conditions: list[Condition], type_: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
