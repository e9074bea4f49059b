"""A best-of-N run restarted after the guardrail blocked its prompt keeps the verdicts: nothing is made again."""

from __future__ import annotations

import pytest

from v2w_runtime.bestofn import BestOfNOptions, run
from v2w_runtime.generator import GenerationSettings, Video2WorldGenerator
from v2w_runtime.guardrail.checker import load_guardrail

from .conftest import Interrupted, record_generations


def test_blocked_generations_are_kept_on_restart(tiny_models, tmp_path):
    from v2w_runtime.guardrail.tiny import write_tiny_guardrail

    checkpoint = write_tiny_guardrail(tmp_path / "guardrail", seed=0)
    settings = GenerationSettings(height=32, width=48, num_frames=9, num_steps=2, fps=8)
    generated: list[int] = []

    def make_generator(stop_after: int | None = None):
        guardrail = load_guardrail(checkpoint, extra_blocklist=["zeppelin"])
        generator = Video2WorldGenerator.from_checkpoint(str(tiny_models["video2world"]), settings, device="cpu",
                                                         guardrail=guardrail)
        return record_generations(generator, generated, stop_after)

    def no_critic():
        raise AssertionError("a blocked generation must not be scored")

    options = BestOfNOptions(save_path=str(tmp_path / "run"), input_path=str(tiny_models["input"]),
                             prompt="a zeppelin over the station", seed=5, num_generations=3, num_critic_trials=1,
                             fps=8, generation_settings=settings.model_dump())
    folder = tmp_path / "run"

    # 1. Killed while on the second generation: the first one's verdict is recorded.
    with pytest.raises(Interrupted):
        run(options, make_generator=lambda: make_generator(stop_after=1), make_critic=no_critic)
    assert generated == [5]
    first = folder / "gen00_seed5.blocked.json"
    kept = first.stat().st_mtime_ns, first.read_bytes()

    # 2. Restarted: only the two generations without a verdict go through the guardrail.
    result = run(options, make_generator=make_generator, make_critic=no_critic)
    assert generated == [5, 6, 7]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == kept
    assert [(v.name, v.status) for v in result.videos] == [
        ("gen00_seed5.mp4", "blocked"), ("gen01_seed6.mp4", "blocked"), ("gen02_seed7.mp4", "blocked")]
    assert result.succeeded and result.best is None
    assert all(v.reason.startswith("guardrail blocked the prompt") for v in result.videos)
    assert not list(folder.glob("*.mp4"))

    # 3. Restarted after everything was recorded: nothing is made, each blocked generation is listed once.
    again = run(options, make_generator=make_generator, make_critic=no_critic)
    assert generated == [5, 6, 7]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == kept
    assert [(v.name, v.status, v.seed) for v in again.videos] == [(v.name, v.status, v.seed) for v in result.videos]
