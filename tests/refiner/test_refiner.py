"""The prompt refiner on a tiny random Qwen2.5-VL: image and video input, cleaning, fallbacks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from v2w_runtime.interfaces import PromptRefiner
from v2w_runtime.qwen import QwenVL
from v2w_runtime.refiner import CosmosReasonRefiner, clean_refined_text, load_refiner, usable


@pytest.fixture(scope="module")
def refiner(tiny_qwen_dir):
    return load_refiner(str(tiny_qwen_dir), device="cpu", max_new_tokens=24)


def test_tiny_checkpoint_is_the_real_architecture(tiny_qwen_dir):
    config = json.loads((tiny_qwen_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["model_type"] == "qwen2_5_vl"
    processor = json.loads((tiny_qwen_dir / "processor_config.json").read_text())
    assert processor["processor_class"] == "Qwen2_5_VLProcessor"
    assert (tiny_qwen_dir / "chat_template.jinja").read_text().count("<|video_pad|>") == 1


def test_same_seed_gives_same_weights(tiny_qwen_dir, tmp_path):
    from safetensors.torch import load_file

    from v2w_runtime.tiny.qwen import write_tiny_qwen

    again = load_file(write_tiny_qwen(tmp_path / "again", seed=0) / "model.safetensors")
    first = load_file(tiny_qwen_dir / "model.safetensors")
    assert first.keys() == again.keys()
    assert all((first[k] == again[k]).all() for k in first)
    other = load_file(write_tiny_qwen(tmp_path / "other", seed=1) / "model.safetensors")
    assert any(not (first[k] == other[k]).all() for k in first)


def test_refiner_implements_the_protocol(refiner):
    assert isinstance(refiner, PromptRefiner)
    assert isinstance(refiner, CosmosReasonRefiner)


@pytest.mark.parametrize("frames_fixture", ["image_frames", "video_frames"])
def test_refines_image_and_video(refiner, frames_fixture, request):
    frames = request.getfixturevalue(frames_fixture)
    result = refiner.refine("A car on a street.", frames)
    assert result.original == "A car on a street."
    assert result.warnings == []
    assert result.refined and result.refined != result.original
    assert usable(result.refined) is None
    # Greedy decoding: the same input gives the same prompt.
    assert refiner.refine("A car on a street.", frames).refined == result.refined
    assert refiner.qwen.device == "cpu"


def test_image_and_video_inputs_reach_the_vision_tower(refiner, image_frames, video_frames):
    seen = []
    visual = refiner.qwen.model.model.visual
    hook = visual.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs.get("grid_thw")),
                                        with_kwargs=True)
    try:
        refiner.refine("A car on a street.", image_frames)
        refiner.refine("A car on a street.", video_frames)
    finally:
        hook.remove()
    assert len(seen) == 2
    # One image is one temporal patch; five video frames make three (temporal patch size 2, padded).
    assert seen[0].tolist()[0][0] == 1
    assert seen[1].tolist()[0][0] == 3


def test_unusable_answer_keeps_the_original_prompt(tiny_qwen_dir, image_frames):
    one_token = CosmosReasonRefiner(QwenVL.load(str(tiny_qwen_dir), device="cpu"), max_new_tokens=1)
    result = one_token.refine("A red bus.", image_frames)
    assert result.refined == "A red bus."
    assert len(result.warnings) == 1 and "original prompt is used" in result.warnings[0]


def test_bad_inputs_are_named(refiner, tmp_path):
    with pytest.raises(ValueError, match="frames must have shape"):
        refiner.refine("x", np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        refiner.refine("x", np.zeros((1, 8, 8, 3), dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="no-such"):
        load_refiner(str(tmp_path / "no-such"), device="cpu")
    with pytest.raises(ValueError, match="max_new_tokens"):
        load_refiner(str(tmp_path), device="cpu", max_new_tokens=0)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A bus drives away.", "A bus drives away."),
        ('"A bus drives away."', "A bus drives away."),
        ("“A bus drives away.”", "A bus drives away."),
        ("<think>the user wants a bus</think>\nA bus drives away.", "A bus drives away."),
        ("<think>plan</think><answer>\nA bus\n drives away.\n</answer>", "A bus drives away."),
        ("Refined prompt: A bus drives away.", "A bus drives away."),
        ("**Detailed prompt:** \"A bus drives away.\"", "A bus drives away."),
        ("Here is the refined prompt: A bus drives away.<|im_end|>", "A bus drives away."),
        ("<think>I will describe the bus and then", ""),
        ("   ", ""),
    ],
)
def test_clean_refined_text(raw, expected):
    assert clean_refined_text(raw) == expected


@pytest.mark.parametrize(
    "text, ok",
    [
        ("A red bus drives slowly through the snow at night.", True),
        ("", False),
        ("Bus.", False),
        ("\ufffd\ufffd bus car road", False),
        ("12 34 56 78 %% ab cd ef", False),
    ],
)
def test_usable(text, ok):
    assert (usable(text) is None) is ok
