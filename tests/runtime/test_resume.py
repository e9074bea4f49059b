"""A re-run of the same batch (a restarted pod) keeps what an earlier attempt finished."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from v2w_api.manifest import ProgressManifest, ResultManifest

from .conftest import read_json


def _batch(tmp_path: Path, image: Path) -> Path:
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"input_video": str(image), "prompt": f"take {i}", "output_video": f"take-{i}.mp4"}
                                 for i in range(2)]))
    return batch


def test_rerun_skips_finished_entries_and_remakes_the_rest(cli, media, tmp_path, caplog):
    batch = _batch(tmp_path, media["image"])
    args = ("--batch_input_json", str(batch), "--save_path", "out/x.mp4")
    assert cli(*args).code == 0
    first = Path("out/take-0.mp4")
    kept = first.stat().st_mtime_ns, first.read_bytes()
    # The earlier attempt died after entry 0 was published and before entry 1's MP4 was.
    Path("out/take-1.mp4").unlink()
    Path("out/batch.result.json").unlink()

    with caplog.at_level(logging.INFO, logger="v2w_runtime"):
        run = cli(*args)
    assert run.code == 0, run.err
    assert (first.stat().st_mtime_ns, first.read_bytes()) == kept  # not written again
    assert Path("out/take-1.mp4").stat().st_size > 1000
    assert "take-0.mp4: already made by an earlier attempt" in caplog.text
    assert "take-1.mp4: already made" not in caplog.text
    result = ResultManifest.model_validate(read_json("out/batch.result.json"))
    assert [(v.name, v.status, v.uri) for v in result.videos] == [
        ("take-0.mp4", "succeeded", "out/take-0.mp4"), ("take-1.mp4", "succeeded", "out/take-1.mp4")]
    kept_video = result.videos[0]
    assert kept_video.prompt == "take 0" and kept_video.seed == 0 and kept_video.files["record"] == "out/take-0.json"
    assert "sampling" in kept_video.timings  # carried over from the record
    progress = ProgressManifest.model_validate(read_json("out/batch.progress.json"))
    assert progress.videos_done == progress.videos_total == 2


def test_a_foreign_record_or_other_settings_are_made_again(cli, media, tmp_path, caplog):
    batch = _batch(tmp_path, media["image"])
    args = ("--batch_input_json", str(batch), "--save_path", "out/x.mp4")
    assert cli(*args).code == 0
    record = read_json("out/take-1.json")
    record["prompt"] = "something else"  # a record that is not this entry's
    Path("out/take-1.json").write_text(json.dumps(record))
    with caplog.at_level(logging.INFO, logger="v2w_runtime"):
        assert cli(*args).code == 0
    assert "take-0.mp4: already made" in caplog.text and "take-1.mp4: already made" not in caplog.text
    assert read_json("out/take-1.json")["prompt"] == "take 1"

    caplog.clear()
    before = Path("out/take-0.mp4").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="v2w_runtime"):
        assert cli(*args, "--fps", "8").code == 0  # other settings: every entry is made again
    assert "already made" not in caplog.text
    assert Path("out/take-0.mp4").stat().st_mtime_ns != before and read_json("out/take-0.json")["settings"]["generation"]["fps"] == 8
