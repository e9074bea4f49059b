"""The scrape-time gauges: computed from the watched jobs when Prometheus asks, never from counted transitions."""

from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from v2w_operator.metrics import NO_PHASE, JobsCollector, summarize

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def samples(collector: JobsCollector) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_job_is_read_from_its_wire_form_leniently():
    done = summarize("Video2WorldJob", {"parallelism": {"gpus": 4}}, {
        "phase": "Succeeded", "startTime": "2026-11-26T11:00:00Z", "completionTime": "2026-11-26T11:01:40Z",
        "outputs": [{"name": "a.mp4", "verdict": "Passed"}, {"name": "b.mp4", "verdict": "Blocked"},
                    {"name": "c.mp4", "verdict": "Passed"}, "garbage", {"name": "d.mp4"}]})
    assert done.gpus == 4 and done.verdicts == {"Passed": 2, "Blocked": 1}
    assert done.gpu_seconds(NOW) == 400.0  # 4 GPUs x 100 s, however late the scrape
    running = summarize("BestOfNJob", {}, {"phase": "Running", "startTime": "2026-11-26T11:59:30+00:00"})
    assert running.gpus == 1 and running.gpu_seconds(NOW) == 30.0  # until now while it runs
    new = summarize("Video2WorldJob", {"parallelism": {"gpus": "x"}}, {"startTime": "not a time"})
    assert new.phase == NO_PHASE and new.gpus == 1 and new.gpu_seconds(NOW) == 0.0


def test_gauges_follow_the_views_as_they_are_now():
    v2w = {("a", "one"): [summarize("Video2WorldJob", {}, {"phase": "Succeeded", "outputs": [{"verdict": "NotChecked"}],
                                                           "startTime": "2026-11-26T11:59:00Z",
                                                           "completionTime": "2026-11-26T11:59:10Z"})],
           ("a", "two"): [summarize("Video2WorldJob", {"parallelism": {"gpus": 2}},
                                    {"phase": "Running", "startTime": "2026-11-26T11:59:50Z"})]}
    bon = {("b", "three"): [summarize("BestOfNJob", {}, {"phase": "Succeeded", "outputs": [{"verdict": "Passed"}] * 3})]}
    collector = JobsCollector()
    collector.watch(v2w)
    collector.watch(bon)
    collector.watch(v2w)  # the same view twice counts once
    got = samples(collector)
    assert got[("v2w_jobs", (("kind", "Video2WorldJob"), ("phase", "Succeeded")))] == 1
    assert got[("v2w_jobs", (("kind", "Video2WorldJob"), ("phase", "Running")))] == 1
    assert got[("v2w_jobs", (("kind", "BestOfNJob"), ("phase", "Succeeded")))] == 1
    assert got[("v2w_job_outputs", (("kind", "BestOfNJob"), ("verdict", "Passed")))] == 3
    assert got[("v2w_job_outputs", (("kind", "Video2WorldJob"), ("verdict", "NotChecked")))] == 1
    assert got[("v2w_job_gpu_seconds", (("kind", "Video2WorldJob"), ("phase", "Succeeded")))] == 10.0

    del v2w[("a", "one")]  # deleted: the watch drops it, and so does the next scrape
    got = samples(collector)
    assert ("v2w_jobs", (("kind", "Video2WorldJob"), ("phase", "Succeeded"))) not in got
    assert ("v2w_job_outputs", (("kind", "Video2WorldJob"), ("verdict", "NotChecked"))) not in got
    assert got[("v2w_jobs", (("kind", "Video2WorldJob"), ("phase", "Running")))] == 1


def test_cold_starts_make_a_histogram_and_the_parts_sums():
    def job(seconds, **parts):
        return summarize("Video2WorldJob", {}, {"phase": "Succeeded",
                                                "coldStart": {"seconds": seconds, **parts}})

    jobs = {("a", "fast"): [job(25.0, download=0.0, load=10.0, compile=5.0, other=10.0)],
            ("a", "slow"): [job(250.0, download=150.0, load=60.0, compile=20.0, other=20.0)],
            ("a", "none"): [summarize("Video2WorldJob", {}, {"phase": "Running", "coldStart": {"seconds": "x"}})]}
    assert jobs[("a", "none")][0].cold_start is None  # a malformed figure is left out, not a broken scrape
    collector = JobsCollector()
    collector.watch(jobs)
    got = samples(collector)
    kind = (("kind", "Video2WorldJob"),)
    assert got[("v2w_job_cold_start_seconds_count", kind)] == 2
    assert got[("v2w_job_cold_start_seconds_sum", kind)] == 275.0
    assert got[("v2w_job_cold_start_seconds_bucket", (("kind", "Video2WorldJob"), ("le", "30.0")))] == 1
    assert got[("v2w_job_cold_start_seconds_bucket", (("kind", "Video2WorldJob"), ("le", "300.0")))] == 2
    assert got[("v2w_job_cold_start_part_seconds", (("kind", "Video2WorldJob"), ("part", "download")))] == 150.0
    assert got[("v2w_job_cold_start_part_seconds", (("kind", "Video2WorldJob"), ("part", "load")))] == 70.0


def test_queued_jobs_are_counted_and_hold_no_gpu_time():
    """Jobs Kueue holds count under phase Queued; they have not started, so they have used no GPU-seconds."""
    queued = {("a", "q"): [summarize("Video2WorldJob", {"parallelism": {"gpus": 8}}, {"phase": "Queued"})]}
    collector = JobsCollector()
    collector.watch(queued)
    got = samples(collector)
    assert got[("v2w_jobs", (("kind", "Video2WorldJob"), ("phase", "Queued")))] == 1
    assert got[("v2w_job_gpu_seconds", (("kind", "Video2WorldJob"), ("phase", "Queued")))] == 0.0
