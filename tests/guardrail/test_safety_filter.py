"""The video content safety filter from the release layout: SigLIP from its HF cache snapshot, the MLP of
safety_filter.pt, per-frame verdicts (the tiny filter rates mostly bright red frames Violence)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from v2w_runtime.guardrail.safety_filter import (CLASSES, VideoContentSafetyFilter, load_classifier,
                                                 siglip_snapshot)
from v2w_runtime.interfaces import GuardrailError

SIGLIP = "video_content_safety_filter/models--google--siglip-so400m-patch14-384"


def _noise(n: int = 6, h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _red(n: int = 2, h: int = 40, w: int = 56) -> np.ndarray:
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 0] = 255
    return frames


@pytest.fixture(scope="module")
def safety_filter(guardrail1):
    return VideoContentSafetyFilter.from_release(guardrail1)


def test_noise_and_photographs_pass(safety_filter):
    skimage_data = pytest.importorskip("skimage.data")
    assert safety_filter.frame_classes(_noise()) == ["Safe"] * 6
    assert safety_filter.frame_classes(skimage_data.astronaut()[None]) == ["Safe"]  # an orange suit is not red
    verdict = safety_filter.check(_noise())
    assert verdict.allowed and verdict.check == "video_safety_filter"


def test_red_frames_are_rated_violence(safety_filter):
    assert safety_filter.frame_classes(_red(3)) == ["Violence"] * 3
    mostly_red = _red(1)
    mostly_red[:, :, :10] = 128  # a grey strip: most patches are still red
    assert safety_filter.frame_classes(mostly_red) == ["Violence"]


def test_one_unsafe_frame_blocks_the_video_and_is_named(safety_filter):
    frames = np.concatenate([_noise(4), _red(1), _noise(2, seed=1)])
    assert safety_filter.frame_classes(frames) == ["Safe"] * 4 + ["Violence"] + ["Safe"] * 2
    verdict = safety_filter.check(frames)
    assert not verdict.allowed and verdict.reason == "frame 4 of 7 rated Violence by the video safety filter"


def test_checking_stops_after_the_first_unsafe_batch(safety_filter):
    safety_filter.batch_size = 2
    try:
        frames = np.concatenate([_red(1), _noise(5)])
        assert len(safety_filter.frame_classes(frames, stop_at_unsafe=True)) == 2
        assert len(safety_filter.frame_classes(frames)) == 6
    finally:
        safety_filter.batch_size = 16


def test_features_are_the_full_siglip_models_normalised_image_features(safety_filter, guardrail1):
    """Only the vision tower is loaded; its features are those of the whole SiglipModel upstream loads."""
    from transformers import SiglipModel

    snapshot = siglip_snapshot(guardrail1 / "video_content_safety_filter")
    full = SiglipModel.from_pretrained(snapshot, local_files_only=True).eval()
    frames = _noise(2)
    pixels = safety_filter.processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = full.get_image_features(pixel_values=pixels)
        expected = getattr(out, "pooler_output", out)
        expected = expected / expected.norm(dim=-1, keepdim=True)
        assert torch.allclose(safety_filter.embed(frames), expected, atol=1e-6)


def test_the_release_files(guardrail1):
    folder = guardrail1 / "video_content_safety_filter"
    snapshot = siglip_snapshot(folder)
    assert snapshot == folder / SIGLIP.split("/")[1] / "snapshots" / "9fdffc58afc957d1a03a25b10dba0329ab15c2a3"
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    state = torch.load(folder / "safety_filter.pt", weights_only=True)["model"]
    linear = [f"network.layers.{i}.{name}" for i in (0, 3, 6) for name in ("weight", "bias")]
    norms = [f"network.layers.{i}.{name}" for i in (1, 4)
             for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    assert sorted(state) == sorted(linear + norms)
    assert state["network.layers.6.weight"].shape[0] == len(CLASSES) == 7


def test_refs_main_naming_a_missing_snapshot_is_named(guardrail1, tmp_path):
    folder = tmp_path / "video_content_safety_filter"
    shutil.copytree(guardrail1 / "video_content_safety_filter", folder)
    (folder / SIGLIP.split("/")[1] / "refs" / "main").write_text("0123abc")
    with pytest.raises(GuardrailError, match="names revision '0123abc'"):
        siglip_snapshot(folder)


def test_the_only_snapshot_is_used_without_refs_main(guardrail1, tmp_path):
    folder = tmp_path / "video_content_safety_filter"
    shutil.copytree(guardrail1 / "video_content_safety_filter", folder)
    (folder / SIGLIP.split("/")[1] / "refs" / "main").unlink()
    assert siglip_snapshot(folder).name == "9fdffc58afc957d1a03a25b10dba0329ab15c2a3"


@pytest.mark.parametrize("damage", ["pickle", "no model key", "six classes", "siglip weights"])
def test_broken_files_fail_closed_naming_them(guardrail1, tmp_path, damage):
    root = tmp_path / "Cosmos-Guardrail1"
    shutil.copytree(guardrail1 / "video_content_safety_filter", root / "video_content_safety_filter")
    weights = root / "video_content_safety_filter" / "safety_filter.pt"
    if damage == "pickle":
        weights.write_bytes(b"\0" * 16)
        match = "cannot read .*safety_filter.pt"
    elif damage == "no model key":
        torch.save({"state_dict": {}}, weights)
        match = "not the safety filter's checkpoint"
    elif damage == "six classes":
        state = load_classifier(weights).state_dict()
        state["network.layers.6.weight"] = state["network.layers.6.weight"][:6]
        state["network.layers.6.bias"] = state["network.layers.6.bias"][:6]
        torch.save({"model": state}, weights)
        match = "6 classes, expected 7"
    else:
        model = siglip_snapshot(root / "video_content_safety_filter") / "model.safetensors"
        from safetensors.torch import load_file, save_file

        tensors = {k: v for k, v in load_file(str(model)).items() if "vision_model.head" not in k}
        save_file(tensors, str(model))
        match = "lacks .* SigLIP vision weight"
    with pytest.raises(GuardrailError, match=match):
        VideoContentSafetyFilter.from_release(root)
