"""The sampler against diffusers' stock Cosmos2VideoToWorldPipeline, and the tiny checkpoints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from diffusers import Cosmos2VideoToWorldPipeline, CosmosTransformer3DModel
from PIL import Image

from v2w_runtime.checkpoints import load_components
from v2w_runtime.guardrail import DiffusersSafetyChecker
from v2w_runtime.pipeline import Video2WorldPipeline
from v2w_runtime.tiny import write_checkpoint
from v2w_runtime.tiny.inputs import scene_frames

H, W, FRAMES, STEPS = 64, 96, 9, 2


@pytest.fixture(scope="module")
def stock(tiny_checkpoint):
    return Cosmos2VideoToWorldPipeline.from_pretrained(
        tiny_checkpoint, safety_checker=DiffusersSafetyChecker.allow_all(), dtype=torch.float32
    )


@pytest.fixture(scope="module")
def ours(stock):
    return Video2WorldPipeline(stock.text_encoder, stock.tokenizer, stock.transformer, stock.vae, stock.scheduler)


def stock_frames(stock, frames, guidance, seed):
    kwargs = dict(
        prompt="a red bus leaves the depot", negative_prompt="blurry", height=H, width=W, num_frames=FRAMES,
        num_inference_steps=STEPS, guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    if len(frames) == 1:
        out = stock(image=Image.fromarray(frames[0]), **kwargs)
    else:
        out = stock(video=[Image.fromarray(f) for f in frames], **kwargs)
    return np.round(out.frames[0] * 255).astype(np.uint8)


@pytest.mark.parametrize("num_cond,guidance", [(1, 7.0), (5, 7.0), (1, 1.0)])
def test_same_video_as_stock_pipeline(stock, ours, num_cond, guidance):
    frames = scene_frames(num_cond, H, W, seed=4)
    expected = stock_frames(stock, frames, guidance, seed=11)
    got = ours(frames, "a red bus leaves the depot", "blurry", H, W, FRAMES, STEPS, guidance, 16,
               torch.Generator().manual_seed(11)).frames
    assert got.shape == (FRAMES, H, W, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    assert got.std() > 1.0  # a real picture, not a constant


class CountingTransformer(torch.nn.Module):
    """A wrapper with the transformer's forward signature, the way context parallelism wraps it."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, hidden_states, **kwargs):
        self.batches.append(hidden_states.shape[0])
        return self.inner(hidden_states=hidden_states, **kwargs)


@pytest.mark.parametrize("guidance,batch", [(7.0, 2), (1.0, 1)])
def test_one_transformer_forward_per_step(stock, guidance, batch):
    pipe = Video2WorldPipeline(stock.text_encoder, stock.tokenizer, stock.transformer, stock.vae, stock.scheduler)
    wrapped = CountingTransformer(stock.transformer)
    pipe.transformer = wrapped
    steps = []
    frames = scene_frames(1, H, W, seed=5)
    pipe(frames, "a bus", "blurry", H, W, FRAMES, 3, guidance, 16, torch.Generator().manual_seed(0),
         callback=lambda step, total: steps.append((step, total)))
    assert wrapped.batches == [batch] * 3
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_check_inputs_before_weights(ours):
    frames = scene_frames(1, H, W)
    with pytest.raises(ValueError, match="height and width"):
        ours(frames, "x", height=60, width=W, num_frames=FRAMES)
    with pytest.raises(ValueError, match="num_frames"):
        ours(frames, "x", height=H, width=W, num_frames=10)
    with pytest.raises(ValueError, match="expected 96x64"):
        ours(scene_frames(1, 32, 32), "x", height=H, width=W, num_frames=FRAMES)


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix == ".safetensors"
    }


def test_tiny_checkpoint_is_deterministic_and_real(tmp_path, tiny_checkpoint):
    again = write_checkpoint(tmp_path / "again", seed=0)
    other = write_checkpoint(tmp_path / "other", seed=1)
    assert _digest(again) == _digest(tiny_checkpoint)
    assert set(_digest(other)) == set(_digest(again))
    assert all(_digest(other)[k] != v for k, v in _digest(again).items())
    config = json.loads((again / "transformer" / "config.json").read_text())
    # the 2B model's config keys and the values that define its interface
    assert config["_class_name"] == "CosmosTransformer3DModel"
    assert set(CosmosTransformer3DModel.load_config(again / "transformer")) >= {
        "in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_layers", "mlp_ratio",
        "text_embed_dim", "adaln_lora_dim", "max_size", "patch_size", "rope_scale", "concat_padding_mask",
    }
    assert (config["in_channels"], config["out_channels"], config["patch_size"]) == (17, 16, [1, 2, 2])
    model = load_components(str(again), dtype=torch.float32)
    assert type(model.components["tokenizer"]).__name__.startswith("T5Tokenizer")
    ids = model.components["tokenizer"]("a red bus at night").input_ids
    assert ids[-1] == model.components["tokenizer"].eos_token_id and len(ids) < 10
