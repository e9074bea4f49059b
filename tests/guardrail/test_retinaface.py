"""RetinaFace's pre- and post-processing against hand-computed cases, and the model class against the key
names of the release's Resnet50_Final.pth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2w_runtime.guardrail.retinaface import (BGR_MEAN, Detection, RetinaFace, RetinaFaceLoadError, decode,
                                              load_retinaface, nms, preprocess, prior_boxes, select)


def test_prior_boxes_of_a_square_image():
    priors = prior_boxes(32, 32)
    # Strides 8, 16, 32: 4x4, 2x2 and 1x1 locations, two sizes each.
    assert priors.shape == (4 * 4 * 2 + 2 * 2 * 2 + 1 * 1 * 2, 4)
    expected = {
        0: (0.125, 0.125, 0.5, 0.5),  # first location, 16 px
        1: (0.125, 0.125, 1.0, 1.0),  # same location, 32 px
        2: (0.375, 0.125, 0.5, 0.5),  # next column
        8: (0.125, 0.375, 0.5, 0.5),  # next row
        32: (0.25, 0.25, 2.0, 2.0),  # stride 16, 64 px
        41: (0.5, 0.5, 16.0, 16.0),  # stride 32, 512 px
    }
    for index, values in expected.items():
        assert priors[index].tolist() == pytest.approx(values), index


def test_prior_boxes_of_a_wide_image_are_relative_to_each_side():
    priors = prior_boxes(32, 64)  # height 32, width 64
    assert priors[0].tolist() == pytest.approx((4 / 64, 4 / 32, 16 / 64, 16 / 32))
    assert priors.shape[0] == (4 * 8 + 2 * 4 + 1 * 2) * 2
    # A side that is not a multiple of the stride gets one more (partial) location.
    assert prior_boxes(33, 33).shape[0] == (5 * 5 + 3 * 3 + 2 * 2) * 2


def test_decode_moves_and_scales_the_prior():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    offsets = torch.tensor([[1.0, -2.0, math.log(2) / 0.2, 0.0]])
    # centre + offset * 0.1 * size; size * exp(offset * 0.2); then corners.
    assert decode(offsets, prior)[0].tolist() == pytest.approx([0.32, 0.22, 0.72, 0.62])
    assert decode(torch.zeros(1, 4), prior)[0].tolist() == pytest.approx([0.4, 0.3, 0.6, 0.7])
    batched = decode(offsets.expand(3, 1, 4), prior)
    assert batched.shape == (3, 1, 4)


BOXES = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29], [0, 0, 9, 19]], np.float32)
SCORES = np.array([0.9, 0.8, 0.75, 0.95], np.float32)


def test_nms_by_hand():
    # Best first: box 3. Its IoU (inclusive pixels) with box 0 is 100/200 = 0.5, with box 1 is 90/210 = 0.43,
    # with box 2 zero: at 0.4 both 0 and 1 go; at 0.45 box 1 stays.
    assert nms(BOXES, SCORES, 0.4) == [3, 2]
    assert nms(BOXES, SCORES, 0.45) == [3, 1, 2]
    assert nms(BOXES, SCORES, 0.6) == [3, 0, 2]  # box 1 overlaps box 0 by 81/119 = 0.68
    assert nms(BOXES[:0], SCORES[:0], 0.4) == []


def test_select_applies_threshold_nms_and_minimum_size():
    boxes = np.array([[0, 0, 30, 30], [0, 0, 30, 30], [100, 100, 110, 130], [5, 5, 35, 35]], np.float32)
    scores = np.array([0.95, 0.7, 0.9, 0.9], np.float32)
    # 0.7 is not above the threshold; [5, 5, 35, 35] overlaps the best by 676/1246 = 0.54; the 10 px wide box
    # survives NMS but is under 20 px.
    assert select(boxes, scores) == [Detection(0.0, 0.0, 30.0, 30.0, pytest.approx(0.95))]
    assert len(select(boxes, scores, min_size=5)) == 2
    assert len(select(boxes, scores, confidence=0.96)) == 0


def test_preprocess_is_bgr_minus_the_mean():
    frame = np.zeros((1, 2, 3, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 200, 100, 50  # RGB
    x = preprocess(frame)
    assert x.shape == (1, 3, 2, 3) and x.dtype == torch.float32
    assert x[0, :, 0, 0].tolist() == [50 - BGR_MEAN[0], 100 - BGR_MEAN[1], 200 - BGR_MEAN[2]]


def test_the_model_has_the_release_key_names():
    keys = RetinaFace().state_dict()
    assert len(keys) == 456
    for key in ("body.conv1.weight", "body.layer1.0.downsample.0.weight", "body.layer3.5.conv3.weight",
                "body.layer4.2.bn3.running_var", "fpn.output1.0.weight", "fpn.merge2.1.bias",
                "ssh1.conv3X3.0.weight", "ssh2.conv5X5_1.1.running_mean", "ssh3.conv7x7_3.0.weight",
                "ClassHead.0.conv1x1.weight", "BboxHead.2.conv1x1.bias", "LandmarkHead.1.conv1x1.weight"):
        assert key in keys, key
    assert keys["body.conv1.weight"].shape == (64, 3, 7, 7)
    assert keys["fpn.output3.0.weight"].shape == (256, 2048, 1, 1)
    assert keys["LandmarkHead.0.conv1x1.weight"].shape == (20, 256, 1, 1)


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    return RetinaFace(width=8, out_channels=16).state_dict()


def test_loads_module_prefixed_and_wrapped_state_dicts(small_state, tmp_path):
    torch.save({f"module.{k}": v for k, v in small_state.items()}, tmp_path / "a.pth")
    torch.save({"state_dict": small_state}, tmp_path / "b.pth")
    for name in ("a.pth", "b.pth"):
        model = load_retinaface(tmp_path / name)
        assert (model.width, model.out_channels) == (8, 16)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in small_state.items())
    x = torch.randn(1, 3, 64, 64)
    boxes, probs, landmarks = model(x)
    assert boxes.shape == (1, prior_boxes(64, 64).shape[0], 4) and landmarks.shape[-1] == 10
    assert torch.allclose(probs.sum(-1), torch.ones(1, boxes.shape[1]))


def test_a_missing_or_unknown_key_is_named(small_state, tmp_path):
    broken = dict(small_state)
    del broken["ssh2.conv5X5_2.0.weight"]
    broken["head.extra"] = torch.zeros(1)
    torch.save(broken, tmp_path / "x.pth")
    with pytest.raises(RetinaFaceLoadError, match=r"missing 1 key\(s\), e.g. ssh2.conv5X5_2.0.weight; 1 unknown key\(s\), e.g. head.extra"):
        load_retinaface(tmp_path / "x.pth")


def test_a_wrong_shape_is_named(small_state, tmp_path):
    broken = dict(small_state)
    broken["ClassHead.1.conv1x1.weight"] = torch.zeros(6, 16, 1, 1)
    torch.save(broken, tmp_path / "x.pth")
    with pytest.raises(RetinaFaceLoadError, match=r"ClassHead.1.conv1x1.weight has shape \(6, 16, 1, 1\)"):
        load_retinaface(tmp_path / "x.pth")


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_not_a_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "Resnet50_Final.pth"
    if content is None:
        torch.save({"weights": [1, 2]}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(RetinaFaceLoadError, match="Resnet50_Final.pth"):
        load_retinaface(path)
