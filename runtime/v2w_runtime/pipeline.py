"""The Video2World sampler on diffusers' Cosmos-Predict2 components.

It makes the same video as diffusers' `Cosmos2VideoToWorldPipeline` for the same seed (a test holds
it to that) and differs where it matters for us:

* with guidance on, the conditional and unconditional passes run as ONE transformer forward with
  batch 2, through `Video2WorldPipeline.denoise`: the single place where the DiT runs, so context and
  CFG parallelism can swap `pipeline.transformer` for a wrapper with the same forward signature and
  split the batch. (On one H100 the 2B model's batch-2 forward takes as long as two batch-1
  forwards, at 480p and 720p alike: the GPU is already full with one pass; the gain is the seam.)
* only the conditioning frames go through the VAE encoder (the Wan VAE is causal in time, so the
  conditioning latents are the same as when the padded 93-frame video is encoded);
* it takes ready-made conditioning frames (uint8, already at the output size) and reports each step
  through a plain callback, for progress.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from v2w_api.spec import GenerationSpec

from . import cancel
from .conditioning import output_size

# The EDM-style noise range and data scale the Cosmos-Predict2 models were trained with.
SIGMA_MAX = 80.0
SIGMA_MIN = 0.002
SIGMA_DATA = 1.0
# Noise level given to the clean conditioning frames.
SIGMA_CONDITIONING = 0.0001
MAX_SEQUENCE_LENGTH = 512

StepCallback = Callable[[int, int], None]

# The sampler's defaults are the API's (one place for each): 93 frames, 35 steps, guidance 7, 16 fps, 720p.
_DEFAULTS = GenerationSpec()
_HEIGHT, _WIDTH = output_size(_DEFAULTS.resolution, _DEFAULTS.aspect_ratio)


@dataclass
class SamplerOutput:
    frames: np.ndarray  # (T, H, W, 3) uint8


class Video2WorldPipeline:
    """Components in, a video out. `__call__` reads as numbered steps, like a diffusers pipeline."""

    def __init__(
        self,
        text_encoder: torch.nn.Module,
        tokenizer,
        transformer: CosmosTransformer3DModel | torch.nn.Module,
        vae: AutoencoderKLWan,
        scheduler: FlowMatchEulerDiscreteScheduler,
    ) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.vae_scale_factor_temporal = 2 ** sum(vae.config.temperal_downsample)
        self.vae_scale_factor_spatial = 2 ** len(vae.config.temperal_downsample)
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)
        scheduler.register_to_config(
            sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, sigma_data=SIGMA_DATA, final_sigmas_type="sigma_min"
        )
        # Read once: a wrapper put in place of the transformer later may not carry a config.
        self.transformer_config = transformer.config
        self.latent_channels = transformer.config.in_channels - 1

    # ------------------------------------------------------------------------------------ helpers

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def transformer_dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def latent_frames(self, num_frames: int) -> int:
        return (num_frames - 1) // self.vae_scale_factor_temporal + 1

    def check_inputs(
        self, frames: np.ndarray, prompt: str, height: int, width: int, num_frames: int, num_steps: int
    ) -> None:
        """Fail before any weight is touched; each error names the argument and its value."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, not {type(prompt).__name__}")
        multiple = self.vae_scale_factor_spatial * 2  # VAE downsampling times the DiT's 2x2 patches
        if height % multiple or width % multiple or height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive multiples of {multiple}, not {height}x{width}")
        if num_frames < 1 or (num_frames - 1) % self.vae_scale_factor_temporal:
            raise ValueError(
                f"num_frames must be {self.vae_scale_factor_temporal}k+1 (e.g. 93, the models' length), not {num_frames}"
            )
        if num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, not {num_steps}")
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"conditioning frames must be (T, H, W, 3) uint8, not {frames.shape} {frames.dtype}")
        if frames.shape[1:3] != (height, width):
            raise ValueError(f"conditioning frames are {frames.shape[2]}x{frames.shape[1]}, expected {width}x{height}")
        if len(frames) >= num_frames:
            raise ValueError(f"{len(frames)} conditioning frames leave nothing to generate in {num_frames} frames")

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> torch.Tensor:
        """T5 embeddings (B, max_sequence_length, D); positions past each prompt's end are zero."""
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=max_sequence_length, truncation=True, return_tensors="pt"
        )
        mask = tokens.attention_mask.bool().to(self.device)
        embeds = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask).last_hidden_state
        embeds = embeds.to(dtype=self.text_encoder.dtype, device=self.device)
        lengths = mask.sum(dim=1).cpu()
        for i, length in enumerate(lengths):
            embeds[i, length:] = 0
        return embeds

    @torch.no_grad()
    def encode_conditioning(
        self, frames: np.ndarray, num_frames: int, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, int]:
        """Normalized latents of the conditioning frames, and how many latent frames they fill.

        A posterior sample is drawn with noise of the full video's latent shape, sliced to the
        conditioning frames, so the random stream matches encoding the padded video.
        """
        video = torch.from_numpy(np.ascontiguousarray(frames)).float().div(255.0).mul(2.0).sub(1.0)
        video = video.permute(3, 0, 1, 2).unsqueeze(0).to(device=self.device, dtype=self.vae.dtype)
        cond_latent_frames = self.latent_frames(len(frames))
        posterior = self.vae.encode(video).latent_dist
        full_shape = (1, posterior.mean.shape[1], self.latent_frames(num_frames), *posterior.mean.shape[3:])
        noise = randn_tensor(full_shape, generator=generator, device=self.device, dtype=posterior.mean.dtype)
        latents = posterior.mean + posterior.std * noise[:, :, :cond_latent_frames]
        latents = latents.to(torch.float32)
        mean, std = self._latent_stats(latents)
        return (latents - mean) / std * SIGMA_DATA, cond_latent_frames

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, z, 1, 1, 1).to(like.device, like.dtype)
        std = torch.tensor(self.vae.config.latents_std).view(1, z, 1, 1, 1).to(like.device, like.dtype)
        return mean, std

    def denoise(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text_embeds: torch.Tensor,
        condition_mask: torch.Tensor,
        padding_mask: torch.Tensor,
        fps: int,
    ) -> torch.Tensor:
        """One DiT forward over a batch (conditional and unconditional passes stacked on dim 0)."""
        return self.transformer(
            hidden_states=latents,
            timestep=timestep,
            encoder_hidden_states=text_embeds,
            fps=fps,
            condition_mask=condition_mask,
            padding_mask=padding_mask,
            return_dict=False,
        )[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        mean, std = self._latent_stats(latents)
        latents = latents * std / SIGMA_DATA + mean
        video = self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]
        frames = self.video_processor.postprocess_video(video, output_type="np")[0]
        return (frames * 255).astype(np.uint8)  # truncation, as diffusers converts

    # ------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def __call__(
        self,
        frames: np.ndarray,
        prompt: str,
        negative_prompt: str = "",
        height: int = _HEIGHT,
        width: int = _WIDTH,
        num_frames: int = _DEFAULTS.num_frames,
        num_steps: int = _DEFAULTS.num_steps,
        guidance: float = _DEFAULTS.guidance,
        fps: int = _DEFAULTS.fps,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        decode: bool = True,
    ) -> SamplerOutput | torch.Tensor:
        """Generate a video continuing `frames`.

        Args:
            frames (`np.ndarray`): conditioning frames (T, height, width, 3) uint8, T = 1 or 5.
            prompt (`str`): what the video shows.
            negative_prompt (`str`, defaults to ""): what to avoid; used when guidance > 1.
            height, width (`int`, defaults to the API's 720p 16:9 size): output size, multiples of 16.
            num_frames (`int`, defaults to the API's): frames of the output, 4k+1.
            num_steps (`int`, defaults to the API's): sampler steps.
            guidance (`float`, defaults to the API's): classifier-free guidance; 1 or less turns it off.
            fps (`int`, defaults to the API's): frame rate the model is told.
            generator (`torch.Generator`, optional): source of all randomness (seeded for reproducibility).
            callback (`Callable[[int, int], None]`, optional): called with (step done, total) after each step.
            decode (`bool`, defaults to True): False returns the final latents instead of frames.
        """
        # 1. Check inputs
        self.check_inputs(frames, prompt, height, width, num_frames, num_steps)
        use_guidance = guidance > 1.0
        device = self.device
        dtype = self.transformer_dtype

        # 2. Encode the prompts (one batch: prompt, then negative prompt)
        prompts = [prompt, negative_prompt or ""] if use_guidance else [prompt]
        text_embeds = self.encode_prompt(prompts)

        # 3. Timesteps: Karras sigmas, the last one held at sigma_min instead of zero
        self.scheduler.set_timesteps(sigmas=torch.linspace(0, 1, num_steps, dtype=torch.float64), device=device)
        self.scheduler.sigmas[-1] = self.scheduler.sigmas[-2]
        timesteps = self.scheduler.timesteps

        # 4. Conditioning latents, then the initial noise
        cond_latents, cond_latent_frames = self.encode_conditioning(frames, num_frames, height, width, generator)
        shape = (
            1,
            self.latent_channels,
            self.latent_frames(num_frames),
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32) * SIGMA_MAX
        cond_latents = torch.cat(
            [cond_latents, cond_latents.new_zeros(*shape[:2], shape[2] - cond_latent_frames, *shape[3:])], dim=2
        )

        indicator = latents.new_zeros(1, 1, shape[2], 1, 1)
        indicator[:, :, :cond_latent_frames] = 1.0
        batch = len(prompts)
        condition_mask = (indicator * latents.new_ones(1, 1, *shape[2:])).to(dtype).expand(batch, -1, -1, -1, -1)
        padding_mask = latents.new_zeros(1, 1, height, width, dtype=dtype)
        t_conditioning = torch.tensor(SIGMA_CONDITIONING / (SIGMA_CONDITIONING + 1), dtype=torch.float32, device=device)

        # 5. Denoising loop
        for i, t in enumerate(timesteps):
            cancel.check()  # a pool worker whose claim ended stops here (cancel.py); never set otherwise
            sigma = self.scheduler.sigmas[i]
            current_t = sigma / (sigma + 1)
            c_in = c_skip = 1 - current_t
            c_out = -current_t

            model_in = indicator * cond_latents + (1 - indicator) * (latents * c_in)
            model_in = model_in.to(dtype).expand(batch, -1, -1, -1, -1)
            timestep = current_t.view(1, 1, 1, 1, 1).expand(1, -1, shape[2], -1, -1)
            timestep = (indicator * t_conditioning + (1 - indicator) * timestep).to(dtype)
            timestep = timestep.expand(batch, -1, -1, -1, -1)

            raw = self.denoise(model_in, timestep, text_embeds, condition_mask, padding_mask, fps)
            x0 = (c_skip * latents + c_out * raw.float()).to(dtype)
            x0 = indicator * cond_latents + (1 - indicator) * x0
            if use_guidance:
                x0_cond, x0_uncond = x0[:1], x0[1:]
                x0 = x0_cond + guidance * (x0_cond - x0_uncond)
            velocity = (latents - x0) / sigma
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
            if callback is not None:
                callback(i + 1, len(timesteps))

        if not decode:
            return latents

        # 6. Decode
        return SamplerOutput(frames=self.decode(latents))


__all__ = ["SamplerOutput", "Video2WorldPipeline"]
