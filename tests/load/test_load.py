"""200 jobs applied at once on a stack of their own (hack/load.py): the operator creates exactly one
PyTorchJob for each, keeps up while the executor runs some of them, and its standing cost in API
requests stays flat. The figures are printed (the README's reliability section has a full run's);
the assertions are counts, never timings."""

from __future__ import annotations

import json

import pytest

from hack.load import LoadTest

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

JOBS = 200


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # One slot: a cluster with one free GPU node, so a few jobs run and finish while the rest wait.
    with LoadTest(tmp_path_factory.mktemp("load"), jobs=JOBS, slots=1, poll_seconds=5, until="pytorchjobs",
                  timeout=600, hold=45) as load:
        result = load.run()
    print(json.dumps(result, indent=1))
    return result


def test_every_job_gets_exactly_one_pytorchjob(report):
    assert report["operator_alive"]
    assert report["reached"] == JOBS
    assert report["create_to_pytorchjob_s"]["n"] == JOBS
    assert report["pytorchjobs_per_job_max"] == 1
    assert report["operator_requests"]["by_kind"]["create pytorchjobs"] == JOBS


def test_jobs_that_ran_finished_and_the_rest_wait(report):
    phases = report["final_phases"]
    assert set(phases) <= {"Pending", "Running", "Succeeded"}, phases
    assert sum(phases.values()) == JOBS
    assert phases.get("Succeeded", 0) >= 1, phases  # the executor ran at least one to the end
    assert report["final_lag_s"]["n"] == phases.get("Succeeded", 0)


def test_operator_requests_stay_bounded(report):
    # Creating a job costs a handful of requests (PyTorchJob, status, kopf's annotations, an Event);
    # following it costs nothing per poll: PyTorchJobs come through one watch and Secrets are cached.
    assert report["operator_requests"]["per_job"] <= 10, report["operator_requests"]
    standing = report["operator_requests_standing"]
    assert standing["per_job_per_minute"] <= 1.0, standing
    assert "get pytorchjobs" not in standing["by_kind"], standing
    assert standing["by_kind"].get("get secrets", 0) <= 2, standing
