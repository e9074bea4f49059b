"""A best-of-N run interrupted in generation or in the critic picks up where it stopped."""

from __future__ import annotations

import pytest

from v2w_api.manifest import ResultManifest

from .conftest import Interrupted, cli_args, record_generations, run_in_process


def test_resume_after_interruptions(tiny_models, tmp_path):
    folder = tmp_path / "run"
    argv = cli_args(tiny_models, str(folder), "--seed", "3", "--num_generations", "3", "--num_critic_trials", "2",
                    "--disable_prompt_refiner", "--critic_max_new_tokens", "16")
    generated: list[int] = []
    scored: list[int] = []

    def stop_generating_after(count: int | None):
        return lambda generator: record_generations(generator, generated, count)

    def stop_scoring_after(count: int | None):
        def wrap(critic):
            real = critic.trials

            def trials(frames, fps):
                if count is not None and len(scored) >= count:
                    raise Interrupted
                scored.append(len(frames))
                return real(frames, fps)

            critic.trials = trials
            return critic
        return wrap

    # 1. Killed while making the third video: two videos are there, nothing is scored.
    with pytest.raises(Interrupted):
        run_in_process(argv, stop_generating_after(2), stop_scoring_after(None))
    assert generated == [3, 4]
    assert {"gen00_seed3.mp4", "gen01_seed4.mp4"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*_score*"))

    # 2. Restarted, killed in the critic after one video was scored: only the missing video is made.
    with pytest.raises(Interrupted):
        run_in_process(argv, stop_generating_after(None), stop_scoring_after(1))
    assert generated == [3, 4, 5]
    assert len(scored) == 1
    critiques = sorted(folder.glob("*_score*.json"))
    assert len(critiques) == 1
    first = critiques[0].read_bytes()

    # 3. Restarted again: no generation, and only the two unscored videos go to the critic.
    result = run_in_process(argv, stop_generating_after(None), stop_scoring_after(None))
    assert generated == [3, 4, 5]
    assert len(scored) == 3
    assert critiques[0].read_bytes() == first
    assert isinstance(result, ResultManifest) and len(result.videos) == 3
    assert {v.seed for v in result.videos} == {3, 4, 5}
    assert not [p for p in folder.glob("gen*_seed*.mp4") if "_score" not in p.name]

    # 4. A run after completion does nothing but rewrite the ranking.
    again = run_in_process(argv, stop_generating_after(None), stop_scoring_after(None))
    assert generated == [3, 4, 5] and len(scored) == 3
    assert [v.name for v in again.videos] == [v.name for v in result.videos]
