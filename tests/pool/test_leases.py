"""A worker's claims against a real API server, as the worker's own ServiceAccount (Leases only): two claimers
race and exactly one wins, renewals, takeover after expiry, deletion, suspension, release with an outcome."""

from __future__ import annotations

import threading
import time

from v2w_api.lease import LeaseState
from v2w_runtime.leases import LeaseClient, RenewResult

ARGS = ["--module", "v2w_runtime.video2world", "--config", "x"]


def client(pool_ns, identity: str, pool: str | None = None) -> LeaseClient:
    return LeaseClient(pool_ns.worker_api(), pool_ns.namespace, pool or pool_ns.pool, identity, 20)


def test_two_claimers_racing_for_one_lease_exactly_one_wins(pool_ns):
    pool_ns.create_lease("v2w-race", ARGS)
    one, two = client(pool_ns, "w-1"), client(pool_ns, "w-2")
    # Both read the same version, both write: the API server takes the first and answers the second 409.
    seen_by_one, seen_by_two = one.claimable(), two.claimable()
    won = [one.try_claim(seen_by_one[0]), two.try_claim(seen_by_two[0])]
    assert [c is not None for c in won] == [True, False]
    state = LeaseState.of(pool_ns.lease("v2w-race"))
    assert state.holder == "w-1" and state.transitions == 1 and state.started is not None

    # And at the same moment, from threads: one winner, every time.
    for round_ in range(3):
        pool_ns.create_lease(f"v2w-race-{round_}", ARGS)
        claimers = [client(pool_ns, f"t-{i}") for i in range(4)]
        results: list = [None] * len(claimers)
        barrier = threading.Barrier(len(claimers))

        def race(i: int) -> None:
            barrier.wait()
            results[i] = claimers[i].claim()

        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(claimers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and winners[0].name == f"v2w-race-{round_}"
        assert LeaseState.of(pool_ns.lease(winners[0].name)).holder == claimers[results.index(winners[0])].identity


def test_the_oldest_free_lease_of_the_own_pool_is_claimed_first(pool_ns):
    pool_ns.create_lease("v2w-other-pool", ARGS, pool="big")
    for name in ("v2w-first", "v2w-second"):
        pool_ns.create_lease(name, ARGS)
        time.sleep(1.1)  # creationTimestamp has whole seconds
    worker = client(pool_ns, "w-1")
    assert [worker.claim().name, worker.claim().name, worker.claim()] == ["v2w-first", "v2w-second", None]
    assert LeaseState.of(pool_ns.lease("v2w-other-pool")).holder is None


def test_renew_keeps_the_claim_and_says_when_it_ended(pool_ns):
    pool_ns.create_lease("v2w-renew", ARGS)
    worker = client(pool_ns, "w-1")
    claim = worker.claim()
    before = LeaseState.of(pool_ns.lease("v2w-renew")).renew_time
    time.sleep(0.05)
    assert worker.renew(claim) is RenewResult.RENEWED
    assert LeaseState.of(pool_ns.lease("v2w-renew")).renew_time > before
    pool_ns.annotate("v2w-renew", suspend="true")  # the operator's write: our next renewal reads it
    assert worker.renew(claim) is RenewResult.SUSPENDED
    assert worker.release(claim, message="the job was suspended; the run stopped on worker w-1")
    state = LeaseState.of(pool_ns.lease("v2w-renew"))
    assert state.holder is None and state.outcome is None and state.suspended and not state.claimable(state.created)
    assert "suspended" in state.message

    pool_ns.create_lease("v2w-gone", ARGS)
    claim = worker.claim()
    pool_ns.delete_lease("v2w-gone")
    assert worker.renew(claim) is RenewResult.DELETED
    assert worker.release(claim, "Succeeded", 0) is False


def test_an_expired_claim_is_taken_over_and_its_old_holder_learns_it_lost(pool_ns):
    pool_ns.create_lease("v2w-expire", ARGS, duration=2)
    dead, alive = client(pool_ns, "w-dead"), client(pool_ns, "w-alive")
    stale = dead.claim()
    assert alive.claim() is None  # held and fresh
    time.sleep(2.5)
    taken = alive.claim()
    assert taken is not None and taken.name == "v2w-expire" and taken.transitions == 2
    assert dead.renew(stale) is RenewResult.LOST
    assert dead.release(stale, "Failed", 1, "late") is False  # not ours: nothing written
    state = LeaseState.of(pool_ns.lease("v2w-expire"))
    assert state.holder == "w-alive" and state.outcome is None


def test_release_with_an_outcome_ends_the_job_and_without_one_frees_it(pool_ns):
    pool_ns.create_lease("v2w-done", ARGS)
    pool_ns.create_lease("v2w-again", ARGS)
    worker = client(pool_ns, "w-1")
    done = worker.claim()
    assert worker.release(done, "Failed", 2, "bad\ninput:   line one\nline two")
    state = LeaseState.of(pool_ns.lease(done.name))
    assert (state.outcome, state.exit_code, state.message, state.holder) == (
        "Failed", 2, "bad input: line one line two", None)
    again = worker.claim()
    assert worker.release(again, None, None, "worker w-1 stopped")
    assert [c.name for c in [client(pool_ns, "w-2").claim()]] == [again.name]  # free for another attempt
    assert LeaseState.of(pool_ns.lease(again.name)).transitions == 2


def test_the_workers_service_account_cannot_read_secrets_or_other_namespaces(pool_ns):
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    api = pool_ns.worker_api()
    for call in (lambda: k8s.CoreV1Api(api).list_namespaced_secret(pool_ns.namespace),
                 lambda: k8s.CoordinationV1Api(api).list_namespaced_lease("default"),
                 lambda: k8s.CoreV1Api(api).list_namespaced_pod(pool_ns.namespace)):
        try:
            call()
        except ApiException as exc:
            assert exc.status == 403
        else:
            raise AssertionError("the worker's ServiceAccount may do more than its Leases")
