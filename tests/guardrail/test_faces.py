"""Face pixelation with the tiny RetinaFace of the release layout, on a real photograph of a person
(scikit-image ships it: NASA's astronaut portrait). The tiny detector was trained, when the fixture wrote it,
to find that face and nothing in face-free photographs and noise: these tests check that the whole path
(preprocessing, the network, priors, decoding, NMS, the threshold, pixelation) finds it and hides it."""

from __future__ import annotations

import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the test photograph")

from v2w_runtime.guardrail.faces import Box, FacePixelator, pixelate  # noqa: E402
from v2w_runtime.guardrail.retinaface import RetinaFaceDetector  # noqa: E402

# Where the astronaut's face is in the 512 x 512 photograph (checked by eye): the detector must find a box
# whose centre lies inside this region.
FACE_REGION = Box(160, 50, 290, 190)


def _high_freq(img: np.ndarray) -> float:
    """Median absolute response of a 4-neighbour Laplacian on the grey image: the fine detail most pixels
    carry (the median ignores the few block edges that pixelation itself draws)."""
    g = img.astype(np.float32).mean(axis=-1)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.median(np.abs(lap)))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def detector(guardrail1) -> RetinaFaceDetector:
    return RetinaFaceDetector.from_file(guardrail1 / "face_blur_filter" / "Resnet50_Final.pth")


@pytest.fixture(scope="module")
def pixelator(detector) -> FacePixelator:
    return FacePixelator(detector=detector, temporal_window=0)


@pytest.fixture(scope="module")
def faces(pixelator, astronaut) -> list[Box]:
    return pixelator.detect(astronaut[None])[0]


def test_detector_finds_the_face(detector, faces, astronaut):
    assert len(faces) == 1, faces
    box = faces[0]
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    assert FACE_REGION.x0 <= cx <= FACE_REGION.x1 and FACE_REGION.y0 <= cy <= FACE_REGION.y1, box
    assert 40 <= box.x1 - box.x0 <= 200
    (found,) = detector.detect(astronaut)
    assert found.score > 0.7  # upstream's confidence threshold


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_no_faces_in_photographs_without_people(detector, name):
    photo = getattr(skimage_data, name)()[::2, ::2]  # the size the tiny detector saw them at
    assert detector.detect(np.ascontiguousarray(photo)) == []


def test_no_faces_in_noise(detector):
    frames = np.random.default_rng(5).integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    assert detector.detect_frames(frames) == [[]] * 4


def test_faces_lose_detail_and_the_rest_is_unchanged(pixelator, astronaut, faces):
    video = np.stack([astronaut, astronaut])
    out = pixelator(video)
    assert out.shape == video.shape and out.dtype == np.uint8
    for t in range(2):
        for box in faces:
            before = _high_freq(video[t, box.y0 : box.y1, box.x0 : box.x1])
            after = _high_freq(out[t, box.y0 : box.y1, box.x0 : box.x1])
            assert before > 5 and after < 0.1 * before, (before, after)
        outside = np.ones(astronaut.shape[:2], bool)
        for box in faces:
            b = box.expanded(pixelator.margin, astronaut.shape[1], astronaut.shape[0])
            outside[b.y0 : b.y1, b.x0 : b.x1] = False
        assert outside.mean() > 0.8
        assert np.array_equal(out[t][outside], video[t][outside])
    assert not np.shares_memory(out, video)


def test_a_face_is_also_covered_in_neighbouring_frames(detector, astronaut, faces):
    """A detector miss in one frame must not show the face: boxes spread over `temporal_window` frames."""
    hidden = astronaut.copy()
    for box in faces:  # frames with the face upside down: the detector misses it, the detail is still there
        b = box.expanded(0.1, 512, 512)
        hidden[b.y0 : b.y1, b.x0 : b.x1] = astronaut[b.y0 : b.y1, b.x0 : b.x1][::-1]
    pixelator = FacePixelator(detector=detector, temporal_window=1)
    video = np.stack([hidden, hidden, astronaut, hidden])
    found = pixelator.detect(video)
    assert [bool(f) for f in found] == [False, False, True, False]
    out = pixelator.pixelate_found(video, found)
    assert np.array_equal(out[0], video[0])  # two frames away: untouched
    box = faces[0]
    assert _high_freq(out[2, box.y0 : box.y1, box.x0 : box.x1]) < 0.1 * _high_freq(astronaut[box.y0 : box.y1, box.x0 : box.x1])
    for t in (1, 3):  # the face's place is pixelated there too (where the missed face is)
        b = box.expanded(pixelator.margin, 512, 512)
        assert not np.array_equal(out[t, b.y0 : b.y1, b.x0 : b.x1], video[t, b.y0 : b.y1, b.x0 : b.x1])


def test_pixelate_makes_flat_blocks():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = pixelate(frame, [Box(16, 16, 48, 48)], cells=4, margin=0.0)
    block = out[16:24, 16:24]
    assert (block == block[0, 0]).all()
    assert np.allclose(block[0, 0], frame[16:24, 16:24].reshape(-1, 3).mean(0), atol=0.5)
    assert np.array_equal(out[:16], frame[:16]) and np.array_equal(out[:, 48:], frame[:, 48:])


def test_boxes_are_clipped_to_the_frame():
    from v2w_runtime.guardrail.retinaface import Detection

    assert Box.around(Detection(-10.5, 3.2, 40.1, 700.0, 0.9), 64, 48) == Box(0, 3, 41, 48)
