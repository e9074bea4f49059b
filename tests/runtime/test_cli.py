"""End to end through the CLI on tiny checkpoints: single, 5-frame, batch, seeds, guardrail flow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from v2w_api.manifest import ProgressManifest, ResultManifest
from v2w_runtime import runner
from v2w_runtime.cli import build_parser, parse

from .conftest import WordGuardrail, read_json, read_video


def test_help_lists_the_seed_flags():
    text = build_parser("video2world").format_help()
    for flag in ("--model_size", "--dit_path", "--prompt", "--negative_prompt", "--input_path",
                 "--num_conditional_frames", "--save_path", "--guidance", "--seed", "--num_gpus",
                 "--batch_input_json", "--disable_guardrail", "--disable_prompt_refiner", "--resolution",
                 "--aspect_ratio", "--fps", "--num_steps", "--checkpoint_dir", "--output_uri", "--num_frames"):
        assert flag in text, flag


def test_defaults_match_the_seed():
    config = parse("video2world", ["--prompt", "a bus"])
    gen = config.generation
    assert (config.model.size, gen.num_conditional_frames, gen.guidance, gen.seed, config.parallelism.gpus) == (
        "2B", 1, 7.0, 0, 1)
    assert (gen.resolution, gen.aspect_ratio, gen.fps, gen.num_steps, config.num_frames) == (720, "16:9", 16, 35, 93)
    assert (config.output.uri, config.output.video_name) == ("output", "generated_video.mp4")
    assert config.input.uri == "assets/video2world/input0.jpg" and len(config.negative_prompt) > 100
    assert config.checkpoint == "checkpoints/nvidia/Cosmos-Predict2-2B-Video2World"
    # --help shows the defaults the models give, not numbers of its own
    assert "Sampling steps. (default: 35)" in " ".join(build_parser("video2world").format_help().split())


def test_a_hand_started_run_names_its_record_after_itself():
    """Runs of the seed's commands share output/: each names its progress and result files after its save
    path or batch file; a configuration without a record name (the operator's) keeps result.json."""
    single = parse("video2world", ["--prompt", "a bus", "--save_path", "output/video2world_2b.mp4"])
    assert (single.output.record_name, single.output.result_file, single.output.progress_file) == (
        "video2world_2b", "video2world_2b.result.json", "video2world_2b.progress.json")
    batch = parse("video2world", ["--batch_input_json", "assets/video2world/batch_example.json"])
    assert batch.output.result_file == "batch_example.result.json"
    assert parse("video2world", ["--prompt", "a bus"]).output.result_file == "generated_video.result.json"
    from_job = parse("video2world", ["--config", single.model_copy(
        update={"output": single.output.model_copy(update={"record_name": None})}).to_yaml()])
    assert (from_job.output.result_file, from_job.output.progress_file) == ("result.json", "progress.json")
    assert parse("bestofn", ["--prompt", "a bus"]).output.result_file == "result.json"  # its folder is its own


def test_an_entry_may_not_overwrite_the_runs_own_files(cli, media):
    batch = [{"input_video": str(media["image"]), "prompt": "a bus", "output_video": "batch.result.mp4"},
             {"input_video": str(media["image"]), "prompt": "a bus", "output_video": "fine.mp4"}]
    Path("batch.json").write_text(json.dumps(batch))
    run = cli("--batch_input_json", "batch.json")
    assert run.code == 1
    result = ResultManifest.model_validate(read_json("output/batch.result.json"))
    assert [v.status for v in result.videos] == ["failed", "succeeded"]
    assert "would overwrite the run's batch.result.json" in result.videos[0].reason


def test_single_image_to_mp4_with_side_files(cli, media):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus leaves the depot",
              "--save_path", "output/single.mp4", "--fps", "12")
    assert run.code == 0, run.err
    frames, meta = read_video(Path("output/single.mp4"))
    assert frames.shape == (9, 64, 96, 3)
    assert meta["fps"] == 12 and meta["codec"].startswith("h264")
    assert Path("output/single.txt").read_text().startswith("a bus leaves the depot\n")
    record = read_json("output/single.json")
    assert record["status"] == "succeeded" and record["seed"] == 0 and record["input"] == str(media["image"])
    assert record["settings"]["generation"]["fps"] == 12 and record["versions"]["diffusers"].startswith("0.42")
    assert {"load_input", "sampling", "decoding", "writing"} <= set(record["timings_s"])
    assert record["model"]["checkpoint"] and record["model"]["transformer_config"]["num_layers"] == 2
    result = ResultManifest.model_validate(read_json("output/single.result.json"))
    assert result.succeeded and [v.status for v in result.videos] == ["succeeded"]
    assert result.videos[0].uri == "output/single.mp4" and result.videos[0].files["record"] == "output/single.json"
    # The guardrail was disabled: the record and the result say nothing checked this video.
    assert record["guardrail_checked"] is False and record["guardrail_components"] == [] and record["guardrail"] == []
    assert result.videos[0].guardrail_checked is False and result.videos[0].guardrail_components == []
    progress = ProgressManifest.model_validate(read_json("output/single.progress.json"))
    assert progress.stage.value == "done" and progress.videos_done == 1 and progress.videos_total == 1
    assert "1 succeeded" in run.out


def test_five_frame_conditioning_from_a_video(cli, media):
    run = cli("--input_path", str(media["video"]), "--num_conditional_frames", "5", "--prompt", "traffic",
              "--save_path", "out5/v.mp4")
    assert run.code == 0, run.err
    frames, _ = read_video(Path("out5/v.mp4"))
    assert frames.shape == (9, 64, 96, 3)


def _frames_for_seed(cli, media, seed: int, name: str) -> np.ndarray:
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--seed", str(seed),
              "--save_path", f"seeds/{name}.mp4")
    assert run.code == 0, run.err
    return read_video(Path(f"seeds/{name}.mp4"))[0]


def test_same_seed_same_frames_different_seed_different(cli, media):
    a = _frames_for_seed(cli, media, 7, "a")
    b = _frames_for_seed(cli, media, 7, "b")
    c = _frames_for_seed(cli, media, 8, "c")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1.0


def test_batch_of_three_with_one_bad_entry(cli, media, tmp_path):
    batch = [
        {"input_video": str(media["image"]), "prompt": "a bus", "output_video": "output/one.mp4"},
        {"input_video": str(tmp_path / "missing.jpg"), "prompt": "a car", "output_video": "output/two.mp4"},
        {"input_video": str(media["video"]), "prompt": "a tram", "output_video": "three.mp4", "seed": 42},
    ]
    Path("batch.json").write_text(json.dumps(batch))
    run = cli("--batch_input_json", "batch.json")
    assert run.code == 1
    assert Path("output/one.mp4").is_file() and Path("output/three.mp4").is_file()
    assert not Path("output/two.mp4").exists()
    result = ResultManifest.model_validate(read_json("output/batch.result.json"))
    assert not result.succeeded
    assert [(v.name, v.status) for v in result.videos] == [("one.mp4", "succeeded"), ("two.mp4", "failed"),
                                                           ("three.mp4", "succeeded")]
    assert "missing.jpg" in result.videos[1].reason and "no such file" in result.videos[1].reason
    assert [v.seed for v in result.videos] == [0, 1, 42]
    assert "[failed] two.mp4" in run.out and "missing.jpg" in run.out


def test_batch_output_may_not_escape_the_output_folder(cli, media, tmp_path):
    batch = [
        {"input_video": str(media["image"]), "prompt": "a bus", "output_video": "../escaped.mp4"},
        {"input_video": str(media["image"]), "prompt": "a bus", "output_video": str(Path.cwd().parent / "abs-escape.mp4")},
        {"input_video": str(media["image"]), "prompt": "a bus", "output_video": "output/fine.mp4"},
    ]
    Path("batch.json").write_text(json.dumps(batch))
    run = cli("--batch_input_json", "batch.json")
    assert run.code == 1
    assert not Path("../escaped.mp4").exists() and not Path("escaped.mp4").exists()
    assert not (Path.cwd().parent / "abs-escape.mp4").exists()
    result = read_json("output/batch.result.json")
    assert [v["status"] for v in result["videos"]] == ["failed", "failed", "succeeded"]
    assert "escapes the output folder" in result["videos"][0]["reason"]
    assert "'../escaped.mp4'" in result["videos"][0]["reason"]


def test_dit_path_replaces_the_transformer_weights(cli, media, tmp_path):
    from v2w_runtime.tiny import write_checkpoint

    other = write_checkpoint(tmp_path / "other", seed=5)
    dit = other / "transformer" / "diffusion_pytorch_model.safetensors"
    base = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "dit/base.mp4")
    swapped = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "dit/post.mp4",
                  "--dit_path", str(dit))
    assert base.code == swapped.code == 0, swapped.err
    a, b = read_video(Path("dit/base.mp4"))[0], read_video(Path("dit/post.mp4"))[0]
    assert np.abs(a.astype(int) - b).mean() > 1.0
    assert read_json("dit/post.json")["model"]["dit"]["path"] == str(dit)


# ---------------------------------------------------------------------------------------- guardrail


@pytest.fixture
def guardrail(monkeypatch):
    """The CLI with a real word-blocking guardrail in place of the model-based one."""
    made = WordGuardrail(word="forbidden")
    monkeypatch.setattr(runner, "build_guardrail", lambda config, device=None: made)
    return made


def test_guardrail_block_is_recorded_and_the_batch_goes_on(cli, media, guardrail):
    batch = [
        {"input_video": str(media["image"]), "prompt": "a forbidden scene", "output_video": "blocked.mp4"},
        {"input_video": str(media["image"]), "prompt": "a quiet street", "output_video": "allowed.mp4"},
    ]
    Path("batch.json").write_text(json.dumps(batch))
    run = cli("--batch_input_json", "batch.json")  # the patched factory builds the guardrail regardless of flags
    assert run.code == 0, run.err
    assert not Path("output/blocked.mp4").exists()
    record = read_json("output/blocked.json")
    assert record["status"] == "blocked" and "forbidden" in record["reason"]
    assert record["guardrail"] == [{"stage": "prompt", "allowed": False, "check": "blocklist", "reason": "the word 'forbidden'"}]
    result = read_json("output/batch.result.json")
    assert result["succeeded"] is True
    assert [v["status"] for v in result["videos"]] == ["blocked", "succeeded"]
    assert "forbidden" in result["videos"][0]["reason"] and "uri" not in result["videos"][0]
    # the allowed video went through the video check and the postprocessing (8x8 pixelation)
    allowed = read_json("output/allowed.json")
    assert [v["stage"] for v in allowed["guardrail"]] == ["prompt", "video"]
    # The checks each verdict names, in order (a guardrail without postprocessors' names adds none).
    assert allowed["guardrail_checked"] is True and allowed["guardrail_components"] == ["blocklist", "brightness"]
    assert record["guardrail_checked"] is True and record["guardrail_components"] == ["blocklist"]
    assert result["videos"][1]["guardrailChecked"] is True
    frames = read_video(Path("output/allowed.mp4"))[0].astype(int)
    cell = frames[:, 8:16, 8:16]
    assert np.abs(cell - cell.mean(axis=(1, 2), keepdims=True)).mean() < 6.0


def test_guardrail_blocks_a_video(cli, media, monkeypatch):
    made = WordGuardrail(max_mean=-1.0)  # every video is "too bright"
    monkeypatch.setattr(runner, "build_guardrail", lambda config, device=None: made)
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "output/v.mp4")
    assert run.code == 0
    assert not Path("output/v.mp4").exists()
    record = read_json("output/v.json")
    assert record["status"] == "blocked" and "video" in record["reason"]


def test_guardrail_error_fails_closed(cli, media, monkeypatch):
    made = WordGuardrail(broken=True)
    monkeypatch.setattr(runner, "build_guardrail", lambda config, device=None: made)
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "output/v.mp4")
    assert run.code == 3
    assert "guardrail" in run.err and "cannot run" in run.err
    assert not Path("output/v.mp4").exists()
    result = read_json("output/v.result.json")
    assert result["succeeded"] is False and "guardrail" in result["message"]


def test_guardrail_enabled_but_unavailable_fails_closed(cli, media, tmp_path):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "output/v.mp4",
              "--guardrail_checkpoint", str(tmp_path / "no-guardrail-here"), "--disable_prompt_refiner",
              "--height", "64", "--width", "96", "--num_frames", "9", "--num_steps", "2", fast=False)
    assert run.code == 3, run.err
    assert "guardrail" in run.err
    assert not Path("output/v.mp4").exists()


def test_http_input_and_api_spelled_batch(cli, media):
    """An https(s) input, as the API allows, in a batch written with the API's key names."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media["image"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        batch = [
            {"input": f"{base}/{media['image'].name}", "prompt": "a bus", "output": "web"},
            {"input": f"{base}/absent.png", "prompt": "a bus", "output": "gone", "negativePrompt": "fog"},
        ]
        Path("batch.json").write_text(json.dumps(batch))
        run = cli("--batch_input_json", "batch.json")
    finally:
        server.shutdown()
    assert run.code == 1
    assert read_video(Path("output/web.mp4"))[0].shape == (9, 64, 96, 3)
    result = read_json("output/batch.result.json")
    assert [v["status"] for v in result["videos"]] == ["succeeded", "failed"]
    assert "absent.png" in result["videos"][1]["reason"] and "404" in result["videos"][1]["reason"]
