"""The pooled job's Lease, read the way both the operator and the workers read it."""

import json
from datetime import datetime, timedelta, timezone

from v2w_api.lease import (ANNOTATION_EXIT_CODE, ANNOTATION_OUTCOME, ANNOTATION_RUN_ARGS, ANNOTATION_SUSPEND,
                           LABEL_POOL, LeaseState, micro_time)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def lease(holder=None, renewed=None, notes=None, duration=20):
    spec = {"leaseDurationSeconds": duration}
    if holder:
        spec["holderIdentity"] = holder
    if renewed is not None:
        spec["renewTime"] = micro_time(renewed)
    return {"metadata": {"name": "v2w-a", "labels": {LABEL_POOL: "p"}, "annotations": notes or {},
                         "creationTimestamp": "2026-11-26T11:00:00Z"}, "spec": spec}


def test_free_lease_is_claimable():
    state = LeaseState.of(lease(notes={ANNOTATION_RUN_ARGS: json.dumps(["--module", "m"])}))
    assert state.pool == "p" and state.run_args == ["--module", "m"]
    assert state.claimable(NOW) and not state.held(NOW)


def test_renewed_lease_is_held_until_its_duration_runs_out():
    state = LeaseState.of(lease("w-1", NOW - timedelta(seconds=5)))
    assert state.held(NOW) and not state.claimable(NOW)
    assert state.expired(NOW + timedelta(seconds=16)) and state.claimable(NOW + timedelta(seconds=16))


def test_finished_or_suspended_lease_is_not_claimable():
    done = LeaseState.of(lease(notes={ANNOTATION_OUTCOME: "Failed", ANNOTATION_EXIT_CODE: "2"}))
    assert done.outcome == "Failed" and done.exit_code == 2 and not done.claimable(NOW)
    assert not LeaseState.of(lease(notes={ANNOTATION_SUSPEND: "true"})).claimable(NOW)
    assert LeaseState.of(lease(notes={ANNOTATION_OUTCOME: "Maybe"})).outcome is None


def test_micro_time_round_trips_through_the_parser():
    state = LeaseState.of(lease("w", NOW))
    assert state.renew_time == NOW
