"""Conditioning frames from images and videos: which frames, what size, which errors."""

from __future__ import annotations

import numpy as np
import pytest

from v2w_runtime.conditioning import ConditioningError, fit_frames, load_conditioning, output_size
from v2w_runtime.tiny.inputs import scene_frames

from .conftest import read_video


def test_output_sizes_follow_the_models():
    assert output_size("720", "16:9") == (704, 1280)
    assert output_size(480, "16:9") == (480, 832)
    assert output_size("720", "9:16") == (1280, 704)
    with pytest.raises(ValueError, match="aspect ratio"):
        output_size("720", "2:1")


def test_image_gives_one_frame_at_the_output_size(media):
    frames = load_conditioning(media["image"], 1, 64, 96)
    assert frames.shape == (1, 64, 96, 3) and frames.dtype == np.uint8


def test_video_gives_its_last_frame_or_last_five(media):
    decoded, _ = read_video(media["video"])  # 8 frames at 112x80
    last = load_conditioning(media["video"], 1, 80, 112)
    five = load_conditioning(media["video"], 5, 80, 112)
    np.testing.assert_array_equal(last[0], decoded[-1])
    np.testing.assert_array_equal(five, decoded[-5:])


def test_center_crop_keeps_the_middle():
    # A 100x300 picture: red left third, green middle, blue right third; a square crop keeps the green.
    frame = np.zeros((1, 100, 300, 3), np.uint8)
    frame[:, :, :100, 0] = frame[:, :, 100:200, 1] = frame[:, :, 200:, 2] = 255
    out = fit_frames(frame, 32, 32)
    assert out.shape == (1, 32, 32, 3)
    assert out[0, :, :, 1].min() > 200 and out[0, :, :, 0].max() < 60 and out[0, :, :, 2].max() < 60


def test_upscales_small_inputs_to_cover():
    out = fit_frames(scene_frames(2, 20, 30), 64, 96)
    assert out.shape == (2, 64, 96, 3)


def test_still_image_refused_for_five_frames(media):
    with pytest.raises(ConditioningError, match=r"still\.png.*still image"):
        load_conditioning(media["image"], 5, 64, 96)


def test_video_shorter_than_five_frames(media):
    with pytest.raises(ConditioningError, match=r"short\.mp4.*3 frame"):
        load_conditioning(media["short"], 5, 64, 96)


def test_missing_and_unreadable_inputs(tmp_path):
    with pytest.raises(ConditioningError, match="nope.jpg: no such file"):
        load_conditioning(tmp_path / "nope.jpg", 1, 64, 96)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a picture")
    with pytest.raises(ConditioningError, match="junk.png: not a readable image"):
        load_conditioning(junk, 1, 64, 96)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(ConditioningError, match="fake.mp4: not a readable video"):
        load_conditioning(fake, 1, 64, 96)
