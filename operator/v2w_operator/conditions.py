"""Kubernetes-style conditions kept as plain dicts (they go straight into a status patch)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(conditions: list[dict[str, Any]], type_: str, status: bool | str, reason: str, message: str,
                  generation: int | None, now: str | None = None) -> list[dict[str, Any]]:
    """A copy of `conditions` with `type_` set; its lastTransitionTime moves only when its status changes."""
    status_str = status if isinstance(status, str) else ("True" if status else "False")
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != status_str
    out.append({
        "type": type_,
        "status": status_str,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (now or now_iso()) if changed else previous.get("lastTransitionTime", now or now_iso()),
        "observedGeneration": generation,
    })
    order = ["Accepted", "Running", "Suspended", "Succeeded", "Failed"]
    out.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
    return out


def get_condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
