"""`python -m v2w_runtime.bestofn` end to end on CPU with tiny real models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from v2w_api.manifest import ResultManifest
from v2w_runtime.bestofn import main
from v2w_runtime.critic import Critique

from .conftest import FLAWED_SEED, PROMPT, cli_args, write_video

SCORED_MP4 = re.compile(r"^gen(\d\d)_seed(\d+)_score(\d{3})\.mp4$")


def test_whole_loop_files_and_result(bestofn_run: Path):
    names = sorted(p.name for p in bestofn_run.iterdir())
    videos = [n for n in names if SCORED_MP4.match(n)]
    assert len(videos) == 3
    seeds = sorted(int(SCORED_MP4.match(n).group(2)) for n in videos)
    assert seeds == [7, 8, 9]
    for video in videos:
        stem = video[: -len(".mp4")]
        assert f"{stem}.json" in names and f"{stem}.html" in names
        critique = Critique.model_validate_json((bestofn_run / f"{stem}.json").read_text())
        assert stem.endswith(f"_score{critique.score:03d}")
        assert critique.counts.total == 2 and len(critique.trials) == 2
        assert critique.counts.parsed + critique.counts.unparsable == 2
        assert critique.prompt == PROMPT and critique.refined_prompt and critique.refined_prompt != PROMPT
        base = stem.rsplit("_score", 1)[0]
        assert f"{base}.txt" in names and f"{base}.json" in names
        assert f"{base}.mp4" not in names  # renamed: only the scored file remains
    assert {"best.mp4", "index.html", "result.json", "progress.json", "bestofn.json"} <= set(names)

    result = ResultManifest.model_validate_json((bestofn_run / "result.json").read_text())
    assert result.mode == "bestofn" and result.succeeded
    # The critic answers, and its answers depend on the video: the flawed generation ranks last with the lowest
    # score, the clean ones before it; a score is the share of parsed trials that answered No, in the name.
    assert [v.seed for v in result.videos][-1] == FLAWED_SEED
    flawed = result.videos[-1]
    assert flawed.trials.parsed == 2 and flawed.trials.anomaly == 2 and flawed.score == 0
    for video in result.videos[:-1]:
        assert video.trials.parsed >= 1 and video.score > flawed.score
        assert video.score == round(100 * video.trials.no_anomaly / video.trials.parsed)
        assert f"_score{video.score:03d}.mp4" in video.name
    assert result.best_video().seed != FLAWED_SEED
    assert [v.name for v in result.videos if v.status == "succeeded"] == [v.name for v in result.videos]
    assert {v.seed for v in result.videos} == {7, 8, 9}
    assert result.best == result.videos[0].name
    scores = [v.score for v in result.videos]
    assert scores == sorted(scores, reverse=True)
    for video in result.videos:
        assert Path(video.uri).is_file() and Path(video.report_uri).is_file()
        assert video.trials.total == 2
        assert video.refined_prompt and video.prompt == PROMPT
    assert (bestofn_run / "best.mp4").read_bytes() == Path(result.best_video().uri).read_bytes()
    assert Path(result.index_uri).name == "index.html"
    assert json.loads((bestofn_run / "progress.json").read_text())["stage"] == "done"


def test_skip_generation_on_a_folder(tiny_models, tmp_path):
    folder = tmp_path / "mine"
    write_video(folder / "clip_a.mp4", 1)
    write_video(folder / "clip_b.mp4", 2)
    code = main(["--skip_generation", "--save_path", str(folder), "--critic_checkpoint", str(tiny_models["reason"]),
                 "--num_critic_trials", "2", "--critic_max_new_tokens", "8", "--device", "cpu"])
    assert code == 0
    names = {p.name for p in folder.iterdir()}
    assert {"clip_a.mp4", "clip_b.mp4"} <= names  # the user's files stay
    for base in ("clip_a", "clip_b"):
        scored = [n for n in names if re.fullmatch(rf"{base}_score\d{{3}}\.(mp4|json|html)", n)]
        assert len(scored) == 3, scored
    result = ResultManifest.model_validate_json((folder / "result.json").read_text())
    assert len(result.videos) == 2 and result.best in {v.name for v in result.videos}
    assert all(v.seed is None and v.trials.total == 2 for v in result.videos)

    # Scoring again finds nothing new to do and keeps the same critiques.
    before = {n: (folder / n).stat().st_mtime_ns for n in names if n.endswith(".json") and "_score" in n}
    assert main(["--skip_generation", "--save_path", str(folder), "--critic_checkpoint", str(tiny_models["reason"]),
                 "--num_critic_trials", "2", "--device", "cpu"]) == 0
    assert {n: (folder / n).stat().st_mtime_ns for n in before} == before


@pytest.mark.s3
def test_skip_generation_on_minio(tiny_models, tmp_path, minio, monkeypatch):
    from v2w_runtime import storage

    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    storage.reset_client()
    bucket = minio.make_bucket("bon")
    client = minio.client()
    for i in range(2):
        path = write_video(tmp_path / f"v{i}.mp4", 10 + i)
        client.upload_file(str(path), bucket, f"runs/one/take{i}.mp4")
    try:
        code = main(["--skip_generation", "--save_path", f"s3://{bucket}/runs/one", "--critic_checkpoint",
                     str(tiny_models["reason"]), "--num_critic_trials", "2", "--critic_max_new_tokens", "8",
                     "--device", "cpu"])
    finally:
        storage.reset_client()
    assert code == 0
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="runs/one/")["Contents"]}
    for i in range(2):
        assert any(re.fullmatch(rf"runs/one/take{i}_score\d{{3}}\.html", k) for k in keys)
        assert any(re.fullmatch(rf"runs/one/take{i}_score\d{{3}}\.mp4", k) for k in keys)
    assert {"runs/one/index.html", "runs/one/best.mp4", "runs/one/result.json"} <= keys
    result = ResultManifest.model_validate_json(
        client.get_object(Bucket=bucket, Key="runs/one/result.json")["Body"].read())
    assert result.index_uri == f"s3://{bucket}/runs/one/index.html"
    assert all(v.uri.startswith(f"s3://{bucket}/runs/one/take") for v in result.videos)
    head = client.head_object(Bucket=bucket, Key="runs/one/index.html")
    assert head["ContentType"].startswith("text/html")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num_generations", "0"], "--num_generations (bestOfN.numGenerations): Input should be greater than or equal to 1"),
        (["--num_critic_trials", "0"], "--num_critic_trials (bestOfN.critic.numTrials): Input should be greater than or equal to 1"),
        (["--batch_input_json", "b.json"], "--batch_input_json is not supported"),
    ],
)
def test_bad_flags_are_named(tiny_models, tmp_path, capsys, argv, message):
    assert main(cli_args(tiny_models, str(tmp_path / "out"), *argv)) == 2
    assert message in capsys.readouterr().err


def test_skip_generation_needs_videos(tiny_models, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["--skip_generation", "--save_path", str(tmp_path / "empty"), "--critic_checkpoint",
                 str(tiny_models["reason"]), "--device", "cpu"])
    assert code == 2
    assert "no MP4 video in" in capsys.readouterr().err
    result = ResultManifest.model_validate_json((tmp_path / "empty" / "result.json").read_text())
    assert result.mode == "bestofn" and not result.succeeded


def test_refuses_to_mix_two_runs_in_one_folder(tiny_models, bestofn_run, capsys):
    before = (bestofn_run / "result.json").read_bytes()
    code = main(cli_args(tiny_models, str(bestofn_run), "--num_generations", "3", "--seed", "7") +
                ["--prompt", "Something else entirely."])
    assert code == 2
    assert "holds the videos of another best-of-N run" in capsys.readouterr().err
    assert (bestofn_run / "result.json").read_bytes() == before  # the other run's record stays
