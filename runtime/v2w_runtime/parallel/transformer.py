"""A CosmosTransformer3DModel that runs across the ranks of one group (CFG pair x Ulysses CP).

`ParallelCosmosTransformer` wraps a loaded model and keeps its forward signature, so a sampler calls
it exactly as it would call the model. Inside one call:

1. CFG parallelism: with a batch of 2k rows (cond rows first, then uncond), the ranks of CFG half `c`
   take rows `c*k : (c+1)*k`. An odd batch (guidance off) is computed whole by both halves.
2. Cheap whole-input work is done on the full input on every rank, as one process would: the padding
   mask channel, rotary and learnable positional embeddings, time embedding, patchify.
3. The flattened (T, H, W) token sequence is cut into `cp` contiguous slices; each rank runs all blocks
   on its slice; self-attention exchanges heads by all-to-all (see ulysses.py).
4. One all-gather over the group collects every rank's output tokens (all CFG rows and sequence
   slices at once); every rank then un-patchifies the full batch.

On GPUs `perf.accelerate` switches step 3 to the rewritten blocks of `fused.py` (`use_fused`): AdaLN
modulation per latent frame, attention in the kernel's layout (FlashAttention-4 where it runs), blocks
compiled; the Ulysses exchange around the kernel is one custom op that the compiled graph leaves opaque.

Why split the flattened sequence rather than latent time: upstream splits latent T, which must then be
divisible by the CP size (24 latent frames for 93 frames, but not for other lengths); the flattened
T*H*W sequence can be cut anywhere, unevenly if needed, and every op outside self-attention is per
token, so the output is the single-process output bit for bit whatever the shape.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_cosmos import CosmosTransformer3DModel
from torch import nn

from ..fused import CosmosWrapper, tv_resize
from .launch import ParallelContext
from .ulysses import SequenceSplit, ShardState, UlyssesAttnProcessor, ulysses_attend


class ParallelCosmosTransformer(CosmosWrapper):
    """`CosmosTransformer3DModel` split over a group of ranks; same call, same output on every rank."""

    # A guidance batch is split over the CFG halves here: a speed wrapper must pass it whole (perf.accelerate).
    handles_batch = True

    def __init__(self, model: CosmosTransformer3DModel, ctx: ParallelContext) -> None:
        check_parallelizable(model.config, ctx.layout.cp_size)
        super().__init__(model)
        self.ctx = ctx
        self.state = ShardState(group=ctx.cp_group, cp_size=ctx.layout.cp_size, cp_rank=ctx.layout.cp_rank)
        if ctx.layout.cp_size > 1:
            processor = UlyssesAttnProcessor(self.state)
            for block in model.transformer_blocks:
                block.attn1.set_processor(processor)
        self.blocks: nn.ModuleList | None = None  # the fused blocks while `use_fused` is on
        self._fused: dict[tuple[str, str], nn.ModuleList] = {}

    def use_fused(self, kernel: str | None) -> None:
        """Run the rewritten blocks of `fused.py` on this rank's slice, self-attention on the resolved
        `kernel` (perf's names: "fa4", "sdpa", ...) exchanged by Ulysses when cp > 1; None: the stock blocks.

        One set of blocks per kernel, kept: switched on again, compiled blocks are not compiled again.
        """
        if kernel is None:
            self.blocks = None
            return
        from .. import fused, perf

        reason = fused.supports(self.model)
        if reason is not None:
            raise ValueError(f"cannot fuse this transformer: {reason}")
        cross = perf.cross_kernel(kernel)
        if (kernel, cross) not in self._fused:
            attend = perf.attention_fn(kernel) if self.state.cp_size == 1 else ulysses_attend(kernel, self.state)
            self._fused[(kernel, cross)] = nn.ModuleList(
                fused.FusedBlock(b, attend, perf.attention_fn(cross), fused.sdpa_masked)
                for b in self.model.transformer_blocks
            )
        self.blocks = self._fused[(kernel, cross)]

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | tuple[torch.Tensor, torch.Tensor | None],
        block_controlnet_hidden_states: list[torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        fps: int | None = None,
        condition_mask: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        if block_controlnet_hidden_states is not None:
            raise NotImplementedError("controlnet residuals are not supported by the parallel transformer")
        model, cfg, layout = self.model, self.model.config, self.ctx.layout
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = cfg.patch_size
        if frames % p_t or height % p_h or width % p_w:
            raise ValueError(
                f"latent shape (T={frames}, H={height}, W={width}) is not divisible by the patch size {cfg.patch_size}"
            )
        grid = (frames // p_t, height // p_h, width // p_w)
        tokens = grid[0] * grid[1] * grid[2]

        # 1. CFG parallelism: which batch rows this rank computes.
        rows = slice(0, batch)
        if layout.cfg_parallel and batch % 2 == 0:
            half = batch // 2
            rows = slice(layout.cfg_index * half, (layout.cfg_index + 1) * half)

        # 2. Whole-input work, done as the stock forward does it.
        x = self._input_channels(hidden_states, condition_mask, padding_mask)
        x = x[rows]

        temb, embedded_timestep = self._time_embedding(timestep, x, batch, grid)

        split = SequenceSplit(tokens, layout.cp_size)
        start, stop = split.bounds(layout.cp_rank)
        self.state.split = split

        cos, sin = self._rope(x, fps)
        rotary = (cos[start:stop], sin[start:stop])
        extra_pos = None
        if cfg.extra_pos_embed_type:
            extra_pos = _learnable_pos_slice(model.learnable_pos_embed, grid, start, stop).type_as(x)

        # 3. Patchify all tokens (a reshape), embed only this rank's slice.
        patches = _patchify(x, cfg.patch_size)[:, start:stop]
        h = model.patch_embed.proj(patches)

        blocks = self.blocks
        if blocks is None:  # the stock blocks take a row per token
            temb = _token_slice(temb, batch, rows, grid, start, stop)
            embedded_timestep = _token_slice(embedded_timestep, batch, rows, grid, start, stop)
        else:  # the fused blocks take a row per sample or latent frame and look each token's up
            if temb.shape[0] == batch:
                temb, embedded_timestep = temb[rows], embedded_timestep[rows]
            if temb.ndim == 2:
                temb, embedded_timestep, per_row = temb[:, None], embedded_timestep[:, None], tokens
            else:
                per_row = grid[1] * grid[2]

        text = encoder_hidden_states
        image_context = None
        if isinstance(text, tuple):
            text, image_context = text
        text = text[rows] if text.shape[0] == batch else text
        if cfg.use_crossattn_projection:
            text = model.crossattn_proj(text)
        if image_context is not None:
            image_context = image_context[rows] if image_context.shape[0] == batch else image_context
            if cfg.img_context_dim_in:
                image_context = model.img_context_proj(image_context)
        context = (text, image_context) if isinstance(encoder_hidden_states, tuple) else text
        if attention_mask is not None:
            attention_mask = attention_mask[rows] if attention_mask.shape[0] == batch else attention_mask
            attention_mask = attention_mask.unsqueeze(1).unsqueeze(1)

        # 4. Blocks on the local slice.
        if blocks is None:
            for block in model.transformer_blocks:
                h = block(h, context, embedded_timestep, temb, rotary, extra_pos, attention_mask, None)
            h = model.norm_out(h, embedded_timestep, temb)
        else:
            from ..fused import output_norm

            for block in blocks:
                h = block(h, context, embedded_timestep, temb, *rotary, extra_pos, attention_mask, start, per_row)
            h = output_norm(model, h, embedded_timestep, temb, start, per_row)
        h = model.proj_out(h)

        # 5. One gather of every rank's tokens, then un-patchify the whole batch.
        out = self._gather(h, batch, rows, split)
        out = _unpatchify(out, grid, cfg.patch_size)
        if not return_dict:
            return (out,)
        return Transformer2DModelOutput(sample=out)

    def _time_embedding(
        self, timestep: torch.Tensor, x: torch.Tensor, batch: int, grid: tuple[int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Time embeddings for the full batch (cheap, and what one process computes), per token when 5-D."""
        model = self.model
        if timestep.ndim == 1:
            return model.time_embed(x, timestep)
        if timestep.ndim == 5:
            if timestep.shape != (batch, 1, grid[0] * model.config.patch_size[0], 1, 1):
                raise ValueError(f"timestep must have shape [B, 1, T, 1, 1], got {tuple(timestep.shape)}")
            if model.config.patch_size[0] != 1:
                raise ValueError("per-frame timesteps need a temporal patch size of 1")
            temb, embedded = model.time_embed(x, timestep.flatten())
            # (B*T, C) -> (B, T, C): per frame; _token_slice picks each local token's frame.
            return temb.view(batch, grid[0], -1), embedded.view(batch, grid[0], -1)
        raise ValueError(f"timestep must have shape [B, 1, T, 1, 1] or [B], got {tuple(timestep.shape)}")

    def _gather(self, h: torch.Tensor, batch: int, rows: slice, split: SequenceSplit) -> torch.Tensor:
        """(rows, local tokens, C) on each rank -> (batch, tokens, C) on every rank, with one all-gather."""
        layout, group = self.ctx.layout, self.ctx.group
        size = layout.group_size
        if size == 1:
            return h
        width = split.max_size
        local = h if h.shape[1] == width else nn.functional.pad(h, (0, 0, 0, width - h.shape[1]))
        local = local.contiguous()
        gathered = torch.empty((size * local.shape[0], width, h.shape[-1]), dtype=h.dtype, device=h.device)
        dist.all_gather_into_tensor(gathered, local, group=group)
        # (cfg half, cp rank, rows, width, C), ordered by rank in group
        gathered = gathered.view(size // layout.cp_size, layout.cp_size, local.shape[0], width, h.shape[-1])
        halves = gathered.shape[0] if rows != slice(0, batch) else 1
        pieces = []
        for c in range(halves):
            if split.even:
                pieces.append(gathered[c].transpose(0, 1).reshape(local.shape[0], split.length, h.shape[-1]))
            else:
                pieces.append(torch.cat([gathered[c, r, :, :n] for r, n in enumerate(split.sizes)], dim=1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)


def check_parallelizable(config, cp_size: int) -> None:
    """Fail before any forward when the model cannot be split `cp_size` ways."""
    if cp_size not in (1, 2, 4, 8):
        raise ValueError(f"context parallel size must be 1, 2, 4 or 8, got {cp_size}")
    heads = config.num_attention_heads
    if heads % cp_size:
        raise ValueError(
            f"the transformer has {heads} attention heads, not divisible by context parallel size {cp_size}"
        )
    if config.controlnet_block_every_n is not None:
        raise ValueError("controlnet-style transformers are not supported by the parallel transformer")
    if config.concat_padding_mask and tv_resize is None:
        raise ImportError("torchvision is required for the Cosmos padding mask")


def parallelize(transformer: CosmosTransformer3DModel, ctx: ParallelContext) -> nn.Module:
    """The transformer to sample with: the model itself in a group of one, else the parallel wrapper."""
    if ctx.layout.group_size == 1:
        return transformer
    return ParallelCosmosTransformer(transformer, ctx)


def _patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, tokens, C*p_t*p_h*p_w) in the stock patch embedding's feature order."""
    b, c, t, h, w = x.shape
    p_t, p_h, p_w = patch
    x = x.reshape(b, c, t // p_t, p_t, h // p_h, p_h, w // p_w, p_w)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // p_t) * (h // p_h) * (w // p_w), -1)


def _unpatchify(x: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, tokens, p_h*p_w*p_t*C) -> (B, C, T, H, W); the projection's features are ordered (p_h, p_w, p_t, C)."""
    b = x.shape[0]
    p_t, p_h, p_w = patch
    x = x.view(b, grid[0], grid[1], grid[2], p_h, p_w, p_t, -1)
    x = x.permute(0, 7, 1, 6, 2, 4, 3, 5)  # B, C, T', p_t, H', p_h, W', p_w
    return x.reshape(b, x.shape[1], grid[0] * p_t, grid[1] * p_h, grid[2] * p_w)


def _token_slice(
    e: torch.Tensor, batch: int, rows: slice, grid: tuple[int, int, int], start: int, stop: int
) -> torch.Tensor:
    """A time embedding for this rank's rows: (B or 1, C) per sample as is, (B, T, C) per frame -> per local token."""
    if e.shape[0] == batch:
        e = e[rows]
    if e.ndim == 2:
        return e
    frame = torch.arange(start, stop, device=e.device) // (grid[1] * grid[2])
    return e.index_select(1, frame)


def _learnable_pos_slice(module, grid: tuple[int, int, int], start: int, stop: int) -> torch.Tensor:
    """The stock learnable positional embedding (normalised per token) for tokens start:stop, batch 1."""
    idx = torch.arange(start, stop, device=module.pos_emb_t.device)
    t, rest = idx // (grid[1] * grid[2]), idx % (grid[1] * grid[2])
    hh, ww = rest // grid[2], rest % grid[2]
    emb = module.pos_emb_t[t] + module.pos_emb_h[hh] + module.pos_emb_w[ww]
    norm = torch.linalg.vector_norm(emb, dim=-1, keepdim=True, dtype=torch.float32)
    norm = torch.add(module.eps, norm, alpha=math.sqrt(1 / emb.shape[-1]))
    return (emb / norm)[None]
