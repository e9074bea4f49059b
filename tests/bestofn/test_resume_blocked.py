"""A best-of-N run restarted after the guardrail blocked its prompt keeps the verdicts: nothing is made again."""

from __future__ import annotations

import pytest

from .conftest import Interrupted, cli_args, record_generations, run_in_process


def test_blocked_generations_are_kept_on_restart(tiny_models, tmp_path):
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail

    checkpoint = write_tiny_guardrail(tmp_path / "guardrail", seed=0)
    folder = tmp_path / "run"
    argv = [a for a in cli_args(tiny_models, str(folder), "--seed", "5", "--num_generations", "3",
                                "--num_critic_trials", "1", "--disable_prompt_refiner", "--guardrail_checkpoint",
                                str(checkpoint), "--guardrail_blocklist", "zeppelin")
            if a != "--disable_guardrail"]
    argv[argv.index("--prompt") + 1] = "a zeppelin over the station"
    generated: list[int] = []

    def no_critic(_critic):
        raise AssertionError("a blocked generation must not be scored")

    # 1. Killed while on the second generation: the first one's verdict is recorded.
    with pytest.raises(Interrupted):
        run_in_process(argv, lambda g: record_generations(g, generated, 1), no_critic)
    assert generated == [5]
    first = folder / "gen00_seed5.json"
    kept = first.stat().st_mtime_ns, first.read_bytes()

    # 2. Restarted: only the two generations without a verdict go through the guardrail.
    result = run_in_process(argv, lambda g: record_generations(g, generated), no_critic)
    assert generated == [5, 6, 7]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == kept
    assert [(v.name, v.status) for v in result.videos] == [
        ("gen00_seed5.mp4", "blocked"), ("gen01_seed6.mp4", "blocked"), ("gen02_seed7.mp4", "blocked")]
    assert result.succeeded and result.best is None
    assert all(v.reason.startswith("guardrail blocked the prompt") for v in result.videos)
    assert not list(folder.glob("*.mp4"))

    # 3. Restarted after everything was recorded: nothing is made, each blocked generation is listed once.
    again = run_in_process(argv, lambda g: record_generations(g, generated), no_critic)
    assert generated == [5, 6, 7]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == kept
    assert [(v.name, v.status, v.seed) for v in again.videos] == [(v.name, v.status, v.seed) for v in result.videos]
