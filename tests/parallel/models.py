"""A tiny random CosmosTransformer3DModel and seeded inputs, shared by the parallel tests and their workers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import CosmosTransformer3DModel

HEADS = 4  # divisible by every CP size the tests use (1, 2, 4)
TEXT_DIM = 24
LATENT_CHANNELS = 4


def tiny_transformer(seed: int = 0, learnable_pos: bool = True) -> CosmosTransformer3DModel:
    """2 layers, 4 heads of 16: the 2B layout (padding mask, RoPE, AdaLN-LoRA) in miniature, every weight random."""
    torch.manual_seed(seed)
    model = CosmosTransformer3DModel(
        in_channels=LATENT_CHANNELS + 1,  # latents + condition mask, as Video2World
        out_channels=LATENT_CHANNELS,
        num_attention_heads=HEADS,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2.0,
        text_embed_dim=TEXT_DIM,
        adaln_lora_dim=8,
        max_size=(16, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0),
        concat_padding_mask=True,
        extra_pos_embed_type="learnable" if learnable_pos else None,
    )
    return randomize(model, seed).eval()


def randomize(model: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    """Every parameter from one seeded generator (the stock init leaves some at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def tiny_pipeline(seed: int = 0):
    """The runtime's Video2World sampler on the tiny components, its DiT widened to 4 heads of 16.

    (The tiny checkpoint's DiT has 2 heads; Ulysses over 4 ranks needs 4.)
    """
    from v2w_runtime.tiny import video2world as tiny
    from v2w_runtime.pipeline import Video2WorldPipeline

    config = dict(tiny.build_transformer(seed * 10 + 1).config)
    config.update(num_attention_heads=HEADS, attention_head_dim=16)
    transformer = randomize(CosmosTransformer3DModel.from_config(config), seed * 10 + 1, std=0.05).eval()
    tokenizer = tiny.build_tokenizer()
    return Video2WorldPipeline(
        text_encoder=tiny.build_text_encoder(seed * 10 + 3, vocab_size=len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
        vae=tiny.build_vae(seed * 10 + 2),
        scheduler=tiny.build_scheduler(),
    )


@dataclass(frozen=True)
class Video:
    """One sampler call: 9 frames of 32x48 (latent 3 x 4 x 6: 18 tokens, uneven over 4 ranks)."""

    name: str
    guidance: float = 7.0
    conditional_frames: int = 1
    seed: int = 0

    def frames(self):
        import numpy as np

        return np.random.default_rng(self.seed).integers(0, 256, (self.conditional_frames, 32, 48, 3), dtype=np.uint8)

    def kwargs(self) -> dict:
        return dict(prompt="a red car moves slowly on a street at night", negative_prompt="blurry static",
                    height=32, width=48, num_frames=9, num_steps=3, guidance=self.guidance,
                    generator=torch.Generator().manual_seed(self.seed))


VIDEOS = [Video("guidance on, 1 conditioning frame"), Video("guidance off, 5 conditioning frames", 1.0, 5, 1)]


@dataclass(frozen=True)
class Case:
    """One transformer call: latent size (T, H, W), batch, per-frame or per-sample timesteps, text mask."""

    name: str
    frames: int = 3
    height: int = 8
    width: int = 8
    batch: int = 2
    per_frame_timestep: bool = True
    text_mask: bool = False
    fps: int | None = 16
    learnable_pos: bool = True

    def inputs(self, seed: int = 1) -> dict:
        g = torch.Generator().manual_seed(seed)
        b, t, h, w = self.batch, self.frames, self.height, self.width
        cond_mask = torch.zeros(b, 1, t, h, w)
        cond_mask[:, :, :1] = 1.0
        if self.per_frame_timestep:
            timestep = torch.rand(b, 1, 1, 1, 1, generator=g).expand(b, 1, t, 1, 1).clone()
            timestep[:, :, :1] = 0.0001  # conditioning frame, as Video2World does
        else:
            timestep = torch.rand(b, generator=g)
        inputs = dict(
            hidden_states=torch.randn(b, LATENT_CHANNELS, t, h, w, generator=g),
            timestep=timestep,
            encoder_hidden_states=torch.randn(b, 7, TEXT_DIM, generator=g),
            fps=self.fps,
            condition_mask=cond_mask,
            padding_mask=torch.zeros(1, 1, h * 8, w * 8),
        )
        if self.text_mask:
            mask = torch.ones(b, 7)
            mask[:, 5:] = 0
            inputs["attention_mask"] = mask
        return inputs


CASES = [
    Case("even tokens, per-frame timesteps, cond+uncond batch"),  # 3*4*4 = 48 tokens
    Case("uneven tokens, per-sample timesteps, text mask", frames=3, height=6, width=10,
         per_frame_timestep=False, text_mask=True),  # 3*3*5 = 45 tokens
    Case("batch of one (guidance off), no learnable positions", batch=1, frames=2, learnable_pos=False),
]
