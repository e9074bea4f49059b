"""The SigLIP frame classifier: real encoder, real head whose chosen weights say safe or unsafe."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from v2w_runtime.tiny.guardrail import VIDEO_CLASSES
from v2w_runtime.guardrail.video_classifier import HeadConfig, VideoClassifier
from v2w_runtime.interfaces import GuardrailError


def _frames(n: int = 6, h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def safe_classifier(tiny_guardrails):
    return VideoClassifier.from_pretrained(tiny_guardrails["safe-safe"] / "video_classifier")


@pytest.fixture(scope="module")
def unsafe_classifier(tiny_guardrails):
    return VideoClassifier.from_pretrained(tiny_guardrails["safe-unsafe"] / "video_classifier")


def test_safe_head_passes(safe_classifier):
    assert safe_classifier.frame_classes(_frames()) == ["safe"] * 6
    verdict = safe_classifier.check(_frames())
    assert verdict.allowed and verdict.check == "video_classifier"


def test_unsafe_head_blocks(unsafe_classifier):
    verdict = unsafe_classifier.check(_frames())
    assert not verdict.allowed
    assert "6 of 6" in verdict.reason and "violence" in verdict.reason


def test_one_unsafe_frame_blocks_the_video(safe_classifier):
    """A head that calls frames unsafe when their embedding leans one way: only some frames do, and the
    video is blocked with the first of them named."""
    frames = _frames(8, seed=1)
    with torch.inference_mode():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        emb = torch.nn.functional.normalize(safe_classifier.encoder(pixel_values=(x - 0.5) / 0.5).pooler_output, dim=-1)
    # Project on the direction separating frames: the top half are called "hate".
    direction = emb[0] - emb.mean(0)
    scores = emb @ direction
    threshold = scores.median()
    head = safe_classifier.head
    clf = copy.copy(safe_classifier)
    clf.head = copy.deepcopy(head)
    with torch.no_grad():
        layers = clf.head.layers
        # First layer: a unit that reads (score - threshold); later layers carry it to the "hate" logit.
        for layer in layers:
            layer.weight.zero_()
            layer.bias.zero_()
        layers[0].weight[0] = direction * 100
        layers[0].bias[0] = -threshold * 100
        layers[1].weight[0, 0] = 1.0
        layers[2].weight[VIDEO_CLASSES.index("hate"), 0] = 1.0
        layers[2].bias[VIDEO_CLASSES.index("safe")] = 1e-3
    classes = clf.frame_classes(frames)
    expected = ["hate" if s > threshold + 1e-5 else "safe" for s in scores.tolist()]
    assert classes == expected and "hate" in classes and "safe" in classes
    verdict = clf.check(frames)
    assert not verdict.allowed and "hate" in verdict.reason
    assert f"first at frame {classes.index('hate')}" in verdict.reason


def test_frame_stride_checks_every_nth_frame(tiny_guardrails, tmp_path):
    folder = tmp_path / "video_classifier"
    shutil.copytree(tiny_guardrails["safe-unsafe"] / "video_classifier", folder)
    config = json.loads((folder / "head.json").read_text())
    config["frame_stride"] = 3
    (folder / "head.json").write_text(json.dumps(config))
    verdict = VideoClassifier.from_pretrained(folder).check(_frames(7))
    assert not verdict.allowed and "3 of 3" in verdict.reason


def test_a_full_siglip_checkpoint_is_accepted_as_encoder(tiny_guardrails, tmp_path):
    """The stock SigLIP checkpoints are SiglipModel (vision + text): the vision tower is used."""
    from transformers import SiglipConfig, SiglipModel

    folder = tmp_path / "video_classifier"
    shutil.copytree(tiny_guardrails["safe-unsafe"] / "video_classifier", folder)
    vision = json.loads((folder / "encoder" / "config.json").read_text())
    config = SiglipConfig(
        vision_config={k: vision[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")},
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 50,
                     "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0},
    )
    shutil.rmtree(folder / "encoder")
    SiglipModel(config).save_pretrained(folder / "encoder")
    clf = VideoClassifier.from_pretrained(folder)
    assert "Siglip" in type(clf.encoder).__name__
    assert json.loads((folder / "encoder" / "config.json").read_text())["model_type"] == "siglip"
    assert not clf.check(_frames(2)).allowed


def test_head_config_must_know_its_safe_class():
    with pytest.raises(ValueError, match="safe_class 'ok'"):
        HeadConfig(input_dim=4, classes=["safe", "bad"], safe_class="ok")


@pytest.mark.parametrize("damage", ["head_weights", "head_config", "encoder"])
def test_broken_checkpoint_fails_closed(tiny_guardrails, tmp_path, damage):
    folder = tmp_path / "video_classifier"
    shutil.copytree(tiny_guardrails["safe-safe"] / "video_classifier", folder)
    if damage == "head_weights":
        (folder / "head.safetensors").write_bytes(b"\0" * 16)
    elif damage == "head_config":
        (folder / "head.json").write_text('{"classes": ["safe"]}')
    else:
        (folder / "encoder" / "model.safetensors").unlink()
    with pytest.raises(GuardrailError, match="cannot load the video classifier"):
        VideoClassifier.from_pretrained(folder)
