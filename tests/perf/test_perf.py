"""The speed switches: exact mode leaves the video unchanged; the step cache is a bounded approximation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2w_runtime import perf
from v2w_runtime.pipeline import Video2WorldPipeline
from v2w_runtime.tiny.video2world import build_scheduler, build_text_encoder, build_tokenizer, build_transformer, build_vae
from v2w_runtime.tiny.inputs import scene_frames

H, W, FRAMES = 64, 96, 9


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(1)


def make_pipeline() -> Video2WorldPipeline:
    tok = build_tokenizer()
    return Video2WorldPipeline(build_text_encoder(3, len(tok)), tok, build_transformer(1), build_vae(2), build_scheduler())


def generate(pipe: Video2WorldPipeline, steps: int) -> np.ndarray:
    frames = scene_frames(1, H, W, seed=4)
    return pipe(frames, "a red bus at night", "blurry", H, W, FRAMES, steps, 7.0, 16, torch.Generator().manual_seed(3)).frames


@pytest.fixture(scope="module")
def reference():
    return {steps: generate(make_pipeline(), steps) for steps in (4, 12)}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_exact_mode_changes_nothing(reference):
    pipe = make_pipeline()
    wrapper = perf.accelerate(pipe, perf.PerfOptions())  # on a CPU "auto" keeps PyTorch's own attention
    assert wrapper.backend is None
    got = generate(pipe, 4)
    np.testing.assert_array_equal(got, reference[4])
    assert wrapper.calls == 4 and wrapper.reused == 0


def test_explicit_math_attention_is_same_math(reference):
    pipe = make_pipeline()
    wrapper = perf.accelerate(pipe, perf.PerfOptions(attention="math"))
    assert wrapper.backend == "_native_math"
    got = generate(pipe, 4)
    assert np.abs(got.astype(int) - reference[4].astype(int)).max() <= 1


def test_step_cache_interval_one_is_exact(reference):
    pipe = make_pipeline()
    wrapper = perf.accelerate(pipe, perf.PerfOptions(step_cache=perf.StepCacheSettings(interval=1, warmup=1, final=1)))
    np.testing.assert_array_equal(generate(pipe, 12), reference[12])
    assert wrapper.calls == 12 and wrapper.reused == 0


@pytest.mark.parametrize("interval", [2, 3])
def test_step_cache_skips_forwards_and_stays_close(reference, interval):
    settings = perf.StepCacheSettings(interval=interval, warmup=3, final=2)
    pipe = make_pipeline()
    wrapper = perf.accelerate(pipe, perf.PerfOptions(step_cache=settings))
    got = generate(pipe, 12)
    assert wrapper.calls == settings.forwards(12) < 12
    assert wrapper.reused == 12 - wrapper.calls
    # an approximation, not a different video: same picture within a bounded error, but not identical
    quality = psnr(got, reference[12])
    assert 20.0 < quality < math.inf, quality
    # a second video through the same wrapper starts a fresh cache (the first step always runs)
    wrapper.calls = wrapper.reused = 0
    np.testing.assert_array_equal(generate(pipe, 12), got)
    assert wrapper.calls == settings.forwards(12)


def test_schedule():
    s = perf.StepCacheSettings(interval=3, warmup=4, final=2)
    runs = [i for i in range(35) if s.runs(i, 35)]
    assert runs[:4] == [0, 1, 2, 3] and runs[-2:] == [33, 34]
    assert runs[4:-2] == list(range(4, 33, 3))
    assert s.forwards(35) == len(runs) == 16


def test_options_from_the_performance_group_and_bad_values():
    from pydantic import ValidationError

    from v2w_api.spec import PerformanceSpec

    opts = perf.options_from_spec(PerformanceSpec(fast_mode="step_cache", step_cache_interval=3, split_batch=False))
    assert opts.step_cache.interval == 3 and not opts.exact and opts.attention == "auto" and not opts.split_batch
    assert perf.options_from_spec(PerformanceSpec()).exact and perf.options_from_spec(PerformanceSpec()).split_batch
    with pytest.raises(ValidationError, match="step_cache_interval"):
        PerformanceSpec(fast_mode="step_cache", step_cache_interval=0)
    with pytest.raises(ValueError, match="attention"):
        perf.PerfOptions(attention="bogus")
    with pytest.raises(ValueError, match="attention backend 'nope'"):
        perf.resolve_attention("nope", "cpu")
    with pytest.raises(ValueError, match="scheduler"):
        perf.FastTransformer(torch.nn.Linear(2, 2), step_cache=perf.StepCacheSettings())


def test_runtime_cli_runs_fast_mode_and_rejects_a_bad_interval(tmp_path, monkeypatch):
    """The video2world program takes the speed flags: a step-cache run writes its video and records the mode."""
    import json

    from v2w_runtime import video2world
    from v2w_runtime.tiny import write_checkpoint
    from v2w_runtime.tiny.inputs import write_image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ckpt = write_checkpoint(tmp_path / "ckpt", seed=0)
    image = write_image(tmp_path / "still.png", height=64, width=96, seed=1)
    base = ["--checkpoint_dir", str(ckpt), "--input_path", str(image), "--prompt", "a bus", "--height", "64", "--width", "96",
            "--num_frames", "9", "--num_steps", "8", "--disable_guardrail", "--disable_prompt_refiner"]
    assert video2world.main(base + ["--step_cache_interval", "0", "--fast_mode", "step_cache"]) != 0
    assert video2world.main(base + ["--fast_mode", "step_cache", "--step_cache_interval", "2", "--save_path", "out/v.mp4"]) == 0
    assert (tmp_path / "out" / "v.mp4").stat().st_size > 0
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json") if "speed" in p.read_text()]
    assert records, "the run record names the speed settings"
