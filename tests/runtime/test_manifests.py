"""progress.json and result.json as the operator reads them."""

from __future__ import annotations

from datetime import datetime, timezone

from v2w_api.manifest import ProgressManifest, ResultManifest, Stage, VideoResult
from v2w_runtime.manifests import ProgressReporter, summarize, write_result
from v2w_runtime.outputs import OutputTarget

from .conftest import read_json


def test_progress_follows_stages_and_steps(tmp_path, monkeypatch):
    target = OutputTarget(tmp_path)
    writes: list[ProgressManifest] = []
    reporter = ProgressReporter(target, videos_total=2, total_steps=35)
    original = reporter.write

    def record():
        original()
        writes.append(ProgressManifest.model_validate(read_json(tmp_path / "progress.json")))

    monkeypatch.setattr(reporter, "write", record)
    reporter.stage(Stage.SAMPLING, current="a.mp4")
    for step in range(1, 36):
        reporter.step(step, 35)
    reporter.video_done()
    steps = [w.step for w in writes if w.stage == Stage.SAMPLING]
    assert steps[-1] == 35 and 3 in steps and len(steps) <= 15  # every 1/10 of the steps, not every step
    last = writes[-1]
    assert (last.videos_done, last.videos_total, last.current) == (1, 2, "a.mp4")
    assert last.summary() == "1/2 videos, step 35/35"


def test_progress_only_on_the_global_leader(tmp_path):
    ProgressReporter(OutputTarget(tmp_path), videos_total=1, total_steps=3, enabled=False).stage(Stage.LOADING)
    assert not (tmp_path / "progress.json").exists()


def test_result_counts_blocked_as_handled(tmp_path):
    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    videos = [VideoResult(name="a.mp4", status="succeeded"), VideoResult(name="b.mp4", status="blocked", reason="x")]
    ok, message = summarize(videos)
    result = ResultManifest(mode="video2world", succeeded=ok, message=message, started_at=started, videos=videos)
    assert result.succeeded and result.message == "1 succeeded, 1 blocked"
    write_result(OutputTarget(tmp_path), result)
    back = ResultManifest.model_validate(read_json(tmp_path / "result.json"))
    assert back.counts() == {"succeeded": 1, "blocked": 1, "failed": 0, "skipped": 0}
    assert not summarize(videos + [VideoResult(name="c.mp4", status="failed")])[0]


def test_sampling_logs_its_step_and_the_time_left_now_and_then(tmp_path, caplog, monkeypatch):
    """What `kubectl logs` shows of a run: a line every few seconds, not one per step, and the last step."""
    import logging

    from v2w_runtime import manifests

    clock = iter([100.0 + i for i in range(200)])  # one second a step
    monkeypatch.setattr(manifests.time, "monotonic", lambda: next(clock))
    reporter = ProgressReporter(OutputTarget(tmp_path), videos_total=1, total_steps=35)
    reporter.stage(Stage.SAMPLING, current="bus.mp4")
    with caplog.at_level(logging.INFO, logger="v2w_runtime"):
        for step in range(1, 36):
            reporter.step(step, 35)
    lines = [r.getMessage() for r in caplog.records if "step" in r.getMessage()]
    assert 3 <= len(lines) <= 6, lines
    assert lines[0].startswith("bus.mp4: step 1/35") and "s left" in lines[0]
    assert lines[-1].startswith("bus.mp4: step 35/35") and lines[-1].endswith("done")
