"""Prometheus metrics for a platform team.

What describes the jobs that exist (jobs by phase, videos they made by verdict, GPU-seconds, cold starts) is computed at
scrape time from the operator's watch of the jobs (a kopf index), so it is right after a restart and forgets
deleted jobs; counters and histograms of events (reconcile errors, PyTorchJobs created, latencies) count
from the operator's start, as Prometheus expects of them.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

RECONCILE_ERRORS = Counter("v2w_reconcile_errors_total", "Reconcile attempts that failed, by kind and reason.",
                           ["kind", "reason"])
# The names keep the word PyTorchJob from before the TrainJob backend (dashboards query them); they count either child.
TIME_TO_PYTORCHJOB = Histogram("v2w_time_to_pytorchjob_seconds", "From job creation to its child's creation "
                               "(PyTorchJob or TrainJob).",
                               ["kind"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
JOB_DURATION = Histogram("v2w_job_duration_seconds", "From start to completion of finished jobs, by outcome.",
                         ["kind", "phase"], buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200))
PYTORCHJOBS_CREATED = Counter("v2w_pytorchjobs_created_total", "Children (PyTorchJobs or TrainJobs) created by the "
                              "operator.", ["kind"])

NO_PHASE = "Unknown"  # a job the operator has not accepted or refused yet
COLD_START_BUCKETS = (10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
COLD_START_PARTS = ("download", "load", "compile", "other")


@dataclass(frozen=True)
class JobSummary:
    """What the metrics need of one job, as the watch last saw it."""

    kind: str
    phase: str
    gpus: int = 1
    start: datetime | None = None
    end: datetime | None = None
    verdicts: Mapping[str, int] = field(default_factory=dict)
    cold_start: Mapping[str, float] | None = None  # status.coldStart: seconds and its parts

    def gpu_seconds(self, now: datetime) -> float:
        """GPUs held times the time its pods have run (until now while it runs)."""
        if self.start is None:
            return 0.0
        return self.gpus * max(((self.end or now) - self.start).total_seconds(), 0.0)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def summarize(kind: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> JobSummary:
    """A job's summary from its wire form (read leniently: a malformed status counts, it does not break a scrape)."""
    gpus = (spec.get("parallelism") or {}).get("gpus", 1)
    outputs = status.get("outputs") or []
    verdicts = Tally(o.get("verdict") for o in outputs if isinstance(o, Mapping) and isinstance(o.get("verdict"), str))
    cold = status.get("coldStart")
    cold_start = None
    if isinstance(cold, Mapping) and isinstance(cold.get("seconds"), (int, float)):
        cold_start = {k: float(v) for k, v in cold.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return JobSummary(kind=kind, phase=status.get("phase") or NO_PHASE, gpus=gpus if isinstance(gpus, int) else 1,
                      start=_time(status.get("startTime")), end=_time(status.get("completionTime")),
                      verdicts=dict(verdicts), cold_start=cold_start)


class JobsCollector(Collector):
    """The gauges about existing jobs, from live views of the watched jobs (kopf indices: key -> summaries)."""

    def __init__(self) -> None:
        self._views: list[Mapping[Any, Iterable[JobSummary]]] = []

    def watch(self, view: Mapping[Any, Iterable[JobSummary]]) -> None:
        if all(view is not known for known in self._views):
            self._views.append(view)

    def summaries(self) -> list[JobSummary]:
        # The watch updates the views on the operator's event loop while a scrape reads them on the HTTP
        # server's thread: copy, and try again if a change came in between.
        for _ in range(10):
            try:
                return [s for view in self._views for store in list(view.values()) for s in list(store)]
            except RuntimeError:
                continue
        return []

    def collect(self, now: datetime | None = None):
        now = now or datetime.now(timezone.utc)
        jobs = GaugeMetricFamily("v2w_jobs", "Jobs that exist, by kind and phase.", labels=["kind", "phase"])
        videos = GaugeMetricFamily("v2w_job_outputs", "Videos of existing jobs, by kind and verdict (Passed, "
                                   "NotChecked, Blocked, Failed, Skipped).", labels=["kind", "verdict"])
        gpu = GaugeMetricFamily("v2w_job_gpu_seconds", "GPU-seconds of existing jobs' pods (GPUs x run time), by "
                                "kind and phase.", labels=["kind", "phase"])
        counts: Tally[tuple[str, str]] = Tally()
        verdicts: Tally[tuple[str, str]] = Tally()
        seconds: dict[tuple[str, str], float] = {}
        for s in self.summaries():
            counts[s.kind, s.phase] += 1
            for verdict, n in s.verdicts.items():
                verdicts[s.kind, verdict] += n
            seconds[s.kind, s.phase] = seconds.get((s.kind, s.phase), 0.0) + s.gpu_seconds(now)
        for (kind, phase), n in sorted(counts.items()):
            jobs.add_metric([kind, phase], n)
            gpu.add_metric([kind, phase], seconds[kind, phase])
        for (kind, verdict), n in sorted(verdicts.items()):
            videos.add_metric([kind, verdict], n)
        yield from (jobs, videos, gpu, *self._cold_starts())

    def _cold_starts(self):
        """Existing jobs' cold starts (pod start to first sampling step): a histogram of the totals by kind, and
        the seconds of each part summed, so that `part / histogram sum` says where cold starts go."""
        histogram = HistogramMetricFamily(
            "v2w_job_cold_start_seconds", "Seconds from the pod's start to the first sampling step, of existing "
            "jobs that reported one, by kind.", labels=["kind"])
        parts = GaugeMetricFamily("v2w_job_cold_start_part_seconds", "Seconds of existing jobs' cold starts spent "
                                  "in each part (download, load, compile, other), summed, by kind.",
                                  labels=["kind", "part"])
        by_kind: dict[str, list[Mapping[str, float]]] = {}
        for s in self.summaries():
            if s.cold_start is not None:
                by_kind.setdefault(s.kind, []).append(s.cold_start)
        for kind, figures in sorted(by_kind.items()):
            totals = [f["seconds"] for f in figures]
            buckets = [(str(float(b)), sum(1 for t in totals if t <= b)) for b in COLD_START_BUCKETS]
            histogram.add_metric([kind], buckets + [("+Inf", len(totals))], sum(totals))
            for part in COLD_START_PARTS:
                parts.add_metric([kind, part], sum(f.get(part, 0.0) for f in figures))
        return histogram, parts

    def describe(self):
        return []  # computed at scrape time; nothing to check at registration


JOBS = JobsCollector()
REGISTRY.register(JOBS)


@dataclass(frozen=True)
class PoolSummary:
    """What the metrics need of one pool, as the watch last saw it."""

    namespace: str
    name: str
    ready: int = 0
    busy: int = 0
    queue: int = 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def summarize_pool(namespace: str, name: str, status: Mapping[str, Any]) -> PoolSummary:
    """A pool's summary from its status (read leniently, as a job's)."""
    return PoolSummary(namespace, name, ready=_count(status.get("readyReplicas")), busy=_count(status.get("busyWorkers")),
                       queue=_count(status.get("queueLength")))


class PoolsCollector(JobsCollector):
    """The gauges about existing pools (warm workers): queue length, busy and ready workers."""

    def collect(self, now: datetime | None = None):
        queue = GaugeMetricFamily("v2w_pool_queue_length", "Jobs waiting for a worker of the pool.",
                                  labels=["namespace", "pool"])
        busy = GaugeMetricFamily("v2w_pool_busy_workers", "Workers of the pool running a job.",
                                 labels=["namespace", "pool"])
        ready = GaugeMetricFamily("v2w_pool_ready_workers", "Workers of the pool up and ready.",
                                  labels=["namespace", "pool"])
        for s in sorted(self.summaries(), key=lambda p: (p.namespace, p.name)):
            queue.add_metric([s.namespace, s.name], s.queue)
            busy.add_metric([s.namespace, s.name], s.busy)
            ready.add_metric([s.namespace, s.name], s.ready)
        yield from (queue, busy, ready)


POOLS = PoolsCollector()
REGISTRY.register(POOLS)


def serve(port: int) -> None:
    if port:
        start_http_server(port)
