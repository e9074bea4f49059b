"""The refined prompt flows into generation, for image and video conditioning, and loads from S3."""

from __future__ import annotations

import numpy as np
import pytest

from v2w_api.run import DebugSettings
from v2w_api.spec import GenerationSpec
from v2w_runtime.generator import Video2WorldGenerator
from v2w_runtime.refiner import CachedRefiner, load_refiner


@pytest.fixture(scope="module")
def video2world_dir(tmp_path_factory):
    from v2w_runtime.tiny import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("v2w") / "video2world", seed=0)


@pytest.mark.parametrize("conditional_frames", [1, 5])
def test_refined_prompt_reaches_the_sampler(tiny_qwen_dir, video2world_dir, tmp_path, conditional_frames):
    refiner = load_refiner(str(tiny_qwen_dir), device="cpu", max_new_tokens=16)
    generation = GenerationSpec(num_steps=1, num_conditional_frames=conditional_frames)
    generator = Video2WorldGenerator.from_checkpoint(str(video2world_dir), generation,
                                                     DebugSettings(height=32, width=48, num_frames=9), device="cpu",
                                                     refiner=refiner)
    seen: list[list[str]] = []
    encode = generator.pipeline.encode_prompt
    generator.pipeline.encode_prompt = lambda prompts, *a, **k: seen.append(list(prompts)) or encode(prompts, *a, **k)

    frames = np.random.default_rng(conditional_frames).integers(0, 256, (conditional_frames, 32, 48, 3), dtype=np.uint8)
    expected = refiner.refine("A red bus.", frames).refined
    outcome = generator.generate(frames, "A red bus.", seed=3)

    assert outcome.status == "succeeded" and outcome.frames.shape == (9, 32, 48, 3)
    assert outcome.prompt == "A red bus."
    assert outcome.refined_prompt == expected != "A red bus."
    assert any(expected in prompts for prompts in seen)  # the sampler encoded the refined prompt
    assert not any("A red bus." in prompts for prompts in seen)
    record = outcome.record()
    assert record["prompt"] == "A red bus." and record["refined_prompt"] == expected


def test_cached_refiner_asks_once_per_input(tiny_qwen_dir, image_frames, video_frames):
    refiner = load_refiner(str(tiny_qwen_dir), device="cpu", max_new_tokens=8)
    calls = []
    real = refiner.qwen.ask
    refiner.qwen.ask = lambda *a, **k: calls.append(1) or real(*a, **k)
    cached = CachedRefiner(refiner)
    first = cached.refine("A bus.", image_frames)
    assert cached.refine("A bus.", image_frames).refined == first.refined
    cached.refine("A bus.", video_frames)
    cached.refine("A car.", image_frames)
    assert len(calls) == 3


@pytest.mark.s3
def test_refiner_loads_from_s3(tiny_qwen_dir, tmp_path, minio, monkeypatch, image_frames):
    from v2w_runtime import storage

    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    storage.reset_client()
    bucket = minio.make_bucket("reason")
    client = minio.client()
    for path in tiny_qwen_dir.iterdir():
        client.upload_file(str(path), bucket, f"models/cosmos-reason1/{path.name}")
    try:
        remote = load_refiner(f"s3://{bucket}/models/cosmos-reason1", device="cpu", max_new_tokens=8)
    finally:
        storage.reset_client()
    local = load_refiner(str(tiny_qwen_dir), device="cpu", max_new_tokens=8)
    assert remote.refine("A bus.", image_frames).refined == local.refine("A bus.", image_frames).refined
