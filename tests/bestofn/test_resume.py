"""A best-of-N run interrupted in generation or in the critic picks up where it stopped."""

from __future__ import annotations

import pytest

from v2w_operator.api.manifest import ResultManifest
from v2w_runtime.bestofn import BestOfNOptions, run
from v2w_runtime.critic import Critic
from v2w_runtime.generator import GenerationSettings, Video2WorldGenerator
from v2w_runtime.qwen import QwenVL, Sampling

from .conftest import PROMPT, Interrupted, record_generations


def test_resume_after_interruptions(tiny_models, tmp_path):
    settings = GenerationSettings(height=32, width=48, num_frames=9, num_steps=2, fps=8)
    qwen = QwenVL.load(str(tiny_models["reason"]), device="cpu")
    generated: list[int] = []
    scored: list[int] = []

    def make_generator(stop_after: int | None = None):
        generator = Video2WorldGenerator.from_checkpoint(str(tiny_models["video2world"]), settings, device="cpu")
        return record_generations(generator, generated, stop_after)

    def make_critic(stop_after: int | None = None):
        critic = Critic(qwen, num_trials=2, sampling=Sampling(max_new_tokens=8, do_sample=True, temperature=0.6,
                                                                top_p=0.95, top_k=50, repetition_penalty=1.05))
        real = critic.trials

        def trials(frames, fps):
            if stop_after is not None and len(scored) >= stop_after:
                raise Interrupted
            scored.append(len(frames))
            return real(frames, fps)

        critic.trials = trials
        return critic

    options = BestOfNOptions(save_path=str(tmp_path / "run"), input_path=str(tiny_models["input"]), prompt=PROMPT,
                             seed=3, num_generations=3, num_critic_trials=2, fps=8,
                             generation_settings=settings.model_dump())
    folder = tmp_path / "run"

    # 1. Killed while making the third video: two videos are there, nothing is scored.
    with pytest.raises(Interrupted):
        run(options, make_generator=lambda: make_generator(stop_after=2), make_critic=make_critic)
    assert generated == [3, 4]
    assert {"gen00_seed3.mp4", "gen01_seed4.mp4"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*_score*"))

    # 2. Restarted, killed in the critic after one video was scored: only the missing video is made.
    with pytest.raises(Interrupted):
        run(options, make_generator=make_generator, make_critic=lambda: make_critic(stop_after=1))
    assert generated == [3, 4, 5]
    assert len(scored) == 1
    critiques = sorted(folder.glob("*_score*.json"))
    assert len(critiques) == 1
    first = critiques[0].read_bytes()

    # 3. Restarted again: no generation, and only the two unscored videos go to the critic.
    result = run(options, make_generator=make_generator, make_critic=make_critic)
    assert generated == [3, 4, 5]
    assert len(scored) == 3
    assert critiques[0].read_bytes() == first
    assert isinstance(result, ResultManifest) and len(result.videos) == 3
    assert {v.seed for v in result.videos} == {3, 4, 5}
    assert not [p for p in folder.glob("gen*_seed*.mp4") if "_score" not in p.name]

    # 4. A run after completion does nothing but rewrite the ranking.
    again = run(options, make_generator=make_generator, make_critic=make_critic)
    assert generated == [3, 4, 5] and len(scored) == 3
    assert [v.name for v in again.videos] == [v.name for v in result.videos]
