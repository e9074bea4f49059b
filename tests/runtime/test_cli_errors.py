"""Bad input: each a clear error naming the input, exit code 2, and no MP4 presented as done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from .conftest import read_json


def test_missing_input(cli):
    run = cli("--input_path", "nowhere/input.jpg", "--prompt", "a bus")
    assert run.code == 2
    assert "nowhere/input.jpg" in run.err and "no such file" in run.err
    assert not Path("output/generated_video.mp4").exists()
    result = read_json("output/generated_video.result.json")
    assert result["succeeded"] is False and "nowhere/input.jpg" in result["message"]


def test_unreadable_input(cli, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"GIF89a not really")
    run = cli("--input_path", str(bad), "--prompt", "a bus")
    assert run.code == 2 and "broken.jpg" in run.err and "not a readable image" in run.err
    assert not Path("output/generated_video.mp4").exists()


def test_still_image_with_five_frame_conditioning(cli, media):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--num_conditional_frames", "5")
    assert run.code == 2 and "still.png" in run.err and "still image" in run.err
    assert not Path("output/generated_video.mp4").exists()


def test_video_shorter_than_five_frames(cli, media):
    run = cli("--input_path", str(media["short"]), "--prompt", "a bus", "--num_conditional_frames", "5")
    assert run.code == 2 and "short.mp4" in run.err and "3 frame" in run.err


@pytest.mark.parametrize(
    "content,message",
    [
        ({"input_video": "a.jpg", "prompt": "x", "output_video": "a.mp4"}, "expected a JSON list"),
        ([{"input_video": "a.jpg", "output_video": "a.mp4"}], "entry 0: prompt: field required"),
        ([{"input_video": "a.jpg", "prompt": "x", "output_video": "a.mp4"}, "oops"], "entry 1 is str"),
        ("not json", "not valid JSON"),
        ([{"input_video": "a.jpg", "prompt": " \t\u3000", "output_video": "a.mp4"}],
         "entry 0: prompt: must not be empty or only white space"),
    ],
)
def test_bad_batch_json(cli, content, message):
    Path("batch.json").write_text(json.dumps(content) if content != "not json" else "[{oops")
    run = cli("--batch_input_json", "batch.json")
    assert run.code == 2
    assert "batch.json" in run.err and message in run.err
    assert not list(Path("output").glob("*.mp4"))


def test_missing_batch_file(cli):
    run = cli("--batch_input_json", "no-such-batch.json")
    assert run.code == 2 and "no-such-batch.json" in run.err


@pytest.mark.parametrize("component", ["vae", "tokenizer", "transformer/diffusion_pytorch_model.safetensors"])
def test_checkpoint_missing_a_component(cli, media, tiny_checkpoint, tmp_path, component):
    broken = tmp_path / "broken-ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    target = broken / component
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", checkpoint=broken)
    assert run.code == 2
    assert "broken-ckpt" in run.err and component.split("/")[0] in run.err and "missing" in run.err


def test_missing_checkpoint_folder(cli, media, tmp_path):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", checkpoint=tmp_path / "nothing")
    assert run.code == 2 and "nothing" in run.err and "no such folder" in run.err


def test_dit_file_that_does_not_match(cli, media, tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "transformer" / "diffusion_pytorch_model.safetensors"))
    wrong = dict(state)
    key = sorted(k for k in state if k.endswith("weight") and state[k].ndim == 2)[0]
    wrong[key] = torch.zeros(3, 3)
    wrong.pop(sorted(state)[-1])
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--dit_path", str(tmp_path / "wrong.safetensors"))
    assert run.code == 2
    assert "wrong.safetensors" in run.err and "does not match" in run.err
    assert key in run.err and "1 missing" in run.err
    assert not Path("output/generated_video.mp4").exists()

    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 32)
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--dit_path", str(tmp_path / "junk.safetensors"))
    assert run.code == 2 and "junk.safetensors" in run.err


def test_dit_with_net_prefix_is_accepted(cli, media, tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "transformer" / "diffusion_pytorch_model.safetensors"))
    save_file({f"net.{k}": v for k, v in state.items()}, str(tmp_path / "post.safetensors"))
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--dit_path", str(tmp_path / "post.safetensors"))
    assert run.code == 0, run.err


def test_usage_errors(cli, media):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--num_gpus", "2")
    assert run.code == 2 and "--num_gpus 2" in run.err and "torchrun" in run.err
    run = cli("--input_path", str(media["image"]))
    assert run.code == 2 and "--prompt is required" in run.err
    run = cli("--input_path", str(media["image"]), "--prompt", "x", "--num_frames", "10", "--disable_guardrail",
              "--disable_prompt_refiner", fast=False)
    assert run.code == 2 and "--num_frames" in run.err
    run = cli("--input_path", str(media["image"]), "--prompt", "x", "--height", "50", "--disable_guardrail",
              "--disable_prompt_refiner", fast=False)
    assert run.code == 2 and "--height (debug.height): must be a multiple of 16, not 50" in run.err


def test_a_blank_prompt_is_refused_as_the_api_refuses_it(cli, media):
    run = cli("--input_path", str(media["image"]), "--prompt", " \t\n")
    assert run.code == 2, run.err
    assert "--prompt" in run.err and "input.prompt" in run.err and "must not be empty or only white space" in run.err
    assert not Path("output").exists()  # refused while reading the command line: nothing written


@pytest.mark.parametrize("program", ["video2world", "bestofn"])
def test_a_negative_seed_is_refused_as_the_api_refuses_it(program, media, tiny_checkpoint, capsys):
    """`--seed -5`: the CRD refuses spec.generation.seed below 0, and so does RunConfig for both programs."""
    import importlib

    main = importlib.import_module(f"v2w_runtime.{program}").main
    code = main(["--checkpoint_dir", str(tiny_checkpoint), "--input_path", str(media["image"]), "--prompt", "a bus",
                 "--seed", "-5", "--save_path", "output/seeded" + (".mp4" if program == "video2world" else "")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--seed (generation.seed): Input should be greater than or equal to 0" in err
    assert not Path("output").exists()
