"""progress.json counts every data-parallel group's videos while they are made, not only rank 0's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .launch import torchrun

pytestmark = pytest.mark.slow


def test_rank0_follows_the_other_groups_videos(tmp_path):
    out = tmp_path / "seen.json"
    torchrun(2, Path(__file__).with_name("progress_worker.py"), str(out), timeout=300)
    report = json.loads(out.read_text())
    # Rank 0 made 1; the other group's 2 arrive one by one while rank 0 waits, and it stops at 3.
    assert report["final"] == 3
    assert report["seen"] and report["seen"] == sorted(report["seen"]), report
    assert 2 in report["seen"], report  # the other group's first video, seen before the last one
    assert max(report["seen"]) <= 3


def test_one_process_counts_locally():
    from v2w_runtime.parallel.launch import ParallelContext

    assert ParallelContext.single().add("videos_made") is None
