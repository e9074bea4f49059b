"""A tiny random Cosmos-Reason1 (Qwen2.5-VL) checkpoint for the refiner tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory):
    from v2w_runtime.tiny.qwen import write_tiny_qwen

    torch.set_num_threads(2)
    return write_tiny_qwen(tmp_path_factory.mktemp("qwen") / "cosmos-reason1-tiny", seed=0)


@pytest.fixture
def image_frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(1, 64, 96, 3), dtype=np.uint8)


@pytest.fixture
def video_frames() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(5, 64, 96, 3), dtype=np.uint8)
