"""Prometheus metrics for a platform team: jobs by phase, reconcile errors, latencies."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

JOBS_BY_PHASE = Gauge("v2w_jobs", "Jobs the operator knows, by kind and phase.", ["kind", "phase"])
RECONCILE_ERRORS = Counter("v2w_reconcile_errors_total", "Reconcile attempts that failed, by kind and reason.",
                           ["kind", "reason"])
TIME_TO_PYTORCHJOB = Histogram("v2w_time_to_pytorchjob_seconds", "From job creation to its PyTorchJob's creation.",
                               ["kind"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
JOB_DURATION = Histogram("v2w_job_duration_seconds", "From start to completion of finished jobs, by outcome.",
                         ["kind", "phase"], buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200))
PYTORCHJOBS_CREATED = Counter("v2w_pytorchjobs_created_total", "PyTorchJobs created by the operator.", ["kind"])

_phases: dict[tuple[str, str, str], str] = {}  # (kind, namespace, name) -> phase


def observe_phase(kind: str, namespace: str, name: str, phase: str | None) -> None:
    key = (kind, namespace, name)
    old = _phases.pop(key, None)
    if old is not None:
        JOBS_BY_PHASE.labels(kind, old).dec()
    if phase is not None:
        _phases[key] = phase
        JOBS_BY_PHASE.labels(kind, phase).inc()


def serve(port: int) -> None:
    if port:
        start_http_server(port)
