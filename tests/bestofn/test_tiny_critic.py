"""The tiny Cosmos-Reason1: built offline and deterministically, it answers the critic's question in the template,
through the critic's own sampling, and its verdict depends on the video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from v2w_runtime.critic import Critic
from v2w_runtime.qwen import QwenVL
from v2w_runtime.refiner import CosmosReasonRefiner, usable
from v2w_runtime.tiny.critic import clean_clip, inject_artifact, write_tiny_critic


def test_the_same_seed_writes_the_same_weights(tmp_path):
    a = load_file(write_tiny_critic(tmp_path / "a", seed=3, steps=12) / "model.safetensors")
    b = load_file(write_tiny_critic(tmp_path / "b", seed=3, steps=12) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def critic(tiny_models) -> Critic:
    return Critic(QwenVL.load(str(tiny_models["reason"]), device="cpu"), num_trials=3, max_pixels=640 * 360)


def test_the_verdict_follows_the_video(critic):
    """Mostly right, like the real critic: over clean clips and the same clips with a flash or blackout frame, at
    the sizes the tests and the demo make."""
    rng = np.random.default_rng(0)
    right = total = 0
    for size in [(32, 48), (64, 96), (64, 112)] * 2:
        clip = clean_clip(rng, height=size[0], width=size[1])
        for flawed in (False, True):
            frames = inject_artifact(clip, "flash" if rng.random() < 0.5 else "blackout", rng) if flawed else clip
            trials = critic.trials(frames, 16.0)
            assert all(t.parsed for t in trials), [t.raw for t in trials]
            right += sum(t.anomaly == flawed for t in trials)
            total += len(trials)
            if flawed:  # a flaw this plain is always seen
                assert sum(t.anomaly for t in trials) >= 2
    assert right / total >= 0.85, (right, total)


def test_the_answer_is_cosmos_reason1_s_template(critic):
    rng = np.random.default_rng(1)
    trial = critic.trials(inject_artifact(clean_clip(rng), "flash", rng, index=4), 16.0)[0]
    assert trial.reasoning.startswith("<overview>") and trial.overview
    assert [c.split(":")[0] for c in trial.components] == ["Scene", "Light"]
    assert trial.anomalies == ["Light: One frame jumps to a flat white or black for an instant."]
    assert trial.raw.rstrip().endswith("<answer>\nYes\n</answer>")


def test_it_also_refines_prompts(tiny_models):
    refiner = CosmosReasonRefiner(QwenVL.load(str(tiny_models["reason"]), device="cpu"), max_new_tokens=64)
    refined = refiner.refine("a bus", clean_clip(np.random.default_rng(0), frames=1)).refined
    assert refined != "a bus" and usable(refined) is None
