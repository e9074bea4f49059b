"""Best-of-N videos go through the generation API's guardrail flow: blocked videos are recorded, not scored."""

from __future__ import annotations

import json

from v2w_api.manifest import ResultManifest
from v2w_runtime.bestofn import main

from .conftest import cli_args


def test_blocked_generations_are_recorded_and_not_scored(tiny_models, tmp_path):
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail

    guard = write_tiny_guardrail(tmp_path / "guardrail", seed=0, video_marker="any")
    out = tmp_path / "run"
    argv = [a for a in cli_args(tiny_models, str(out), "--num_generations", "2", "--num_critic_trials", "1")
            if a != "--disable_guardrail"] + ["--guardrail_checkpoint", str(guard)]
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    # Each blocked generation keeps its prompts and its run record, with the verdict, and no video.
    assert {"gen00_seed0.json", "gen00_seed0.txt", "gen01_seed1.json", "gen01_seed1.txt"} <= names
    assert not [n for n in names if n.endswith(".mp4")]
    result = ResultManifest.model_validate_json((out / "result.json").read_text())
    assert [v.status for v in result.videos] == ["blocked", "blocked"]
    assert result.best is None and result.succeeded
    assert all("guardrail blocked the video" in v.reason for v in result.videos)
    record = json.loads((out / "gen00_seed0.json").read_text())
    assert record["status"] == "blocked" and record["seed"] == 0
    assert [(v["stage"], v["allowed"]) for v in record["guardrail"]][-1] == ("video", False)
    assert "No video was scored" in (out / "index.html").read_text()

    # A restart does not make the blocked videos again.
    before = (out / "gen00_seed0.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "gen00_seed0.json").stat().st_mtime_ns == before
