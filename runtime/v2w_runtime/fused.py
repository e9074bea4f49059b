"""The Cosmos-Predict2 DiT forward, rewritten for speed on the same weights (exact mode: bf16 rounding only).

`FusedCosmosTransformer` wraps a loaded `CosmosTransformer3DModel` and keeps its forward signature. What
differs from the stock forward (diffusers 0.42, `transformer_cosmos.py`), and why:

* **AdaLN modulation per frame, not per token.** The stock model expands the per-frame time embedding to
  every token (B, T*H*W, C) before the blocks, so each of a block's three AdaLN-Zero layers runs its two
  small linears and the `+ temb` over 84,480 rows at 720p, and writes a (tokens, 3C) shift/scale/gate
  tensor (1 GB at 2B 720p) that the next kernels read back: about 30 TFLOP and 250 GB of memory traffic
  per forward that carry no information. Here the linears run on the (B, T, ·) rows and each token looks
  up its frame's row (`_rows`); compiled, that lookup is index arithmetic inside the norm kernel.
* **Attention in the kernel's own layout.** q, k and v stay (B, S, heads, head_dim), the layout the
  projections produce and FlashAttention takes: no transposes, and the per-head RMSNorm and the rotary
  embedding run in the same fused kernel (when compiled) that writes the contiguous q and k the kernel
  reads. The kernels are callables chosen by `perf`: `attend` for self-attention (FlashAttention-4 through
  a custom op, or SDPA through diffusers' dispatch) and `attend_cross` for the 512 text tokens, where FA4's
  long-sequence tiling loses to cuDNN (2B 720p on an H100: 4.3 ms against 0.9 ms a call).
* Rotary tables are computed once per latent shape and frame rate, not once per forward.

Everything else (patch embedding, time embedding, the norms' arithmetic order, the feed-forward, the output
norm, un-patchify) is the stock code on the stock modules. Models this rewrite does not cover (ControlNet
residuals, image context, before/after projections) keep the stock forward (`supports`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

try:  # the stock model resizes its padding mask with torchvision; so must we, to match it exactly
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize as tv_resize
except ImportError:  # pragma: no cover - torchvision is in the runtime extra
    tv_resize = None


def supports(model: nn.Module) -> str | None:
    """None when `model` can run the rewritten forward, else why not (it then keeps the stock forward)."""
    from diffusers.models.transformers.transformer_cosmos import CosmosTransformer3DModel

    if not isinstance(model, CosmosTransformer3DModel):
        return f"{type(model).__name__} is not a CosmosTransformer3DModel"
    cfg = model.config
    if cfg.img_context_dim_in or cfg.controlnet_block_every_n is not None:
        return "image context and ControlNet models keep the stock forward"
    for block in model.transformer_blocks:
        if block.before_proj is not None or block.after_proj is not None:
            return "blocks with before/after projections keep the stock forward"
    if cfg.concat_padding_mask and tv_resize is None:
        return "torchvision is needed for the padding mask"
    return None


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """diffusers' `apply_rotary_emb(use_real=True, use_real_unbind_dim=-2)` for x in (B, S, heads, D)."""
    first, second = x.unflatten(-1, (2, -1)).unbind(-2)
    rotated = torch.cat([-second, first], dim=-1)
    return (x.float() * cos[:, None] + rotated.float() * sin[:, None]).to(x.dtype)


def _rows(table: torch.Tensor, first: int, tokens: int, per_row: int) -> torch.Tensor:
    """A (B, R, X) per-row table as (B, tokens, X) for tokens first..first+tokens, token i in row i // per_row."""
    if table.shape[1] == 1:
        return table  # broadcasts over the tokens
    index = torch.arange(first, first + tokens, device=table.device) // per_row
    return table[:, index]


def _modulation(norm: nn.Module, emb: torch.Tensor, temb: torch.Tensor | None, parts: int) -> tuple[torch.Tensor, ...]:
    """An AdaLN layer's linears on per-row embeddings: (shift, scale[, gate]), each (B, R, C)."""
    e = norm.linear_2(norm.linear_1(norm.activation(emb)))
    if temb is not None:
        e = e + temb[..., : e.shape[-1]]
    return e.chunk(parts, dim=-1)


class FusedBlock(nn.Module):
    """One `CosmosTransformerBlock` (the stock module, shared) with per-row modulation and kernel-layout attention."""

    def __init__(self, block: nn.Module, attend: Attend, attend_cross: Attend | None = None,
                 attend_masked: Callable | None = None) -> None:
        super().__init__()
        self.block = block
        self.attend = attend
        self.attend_cross = attend_cross or attend
        self.attend_masked = attend_masked

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        emb: torch.Tensor,
        temb: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        extra_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        first: int = 0,
        per_row: int = 1,
    ) -> torch.Tensor:
        """x (B, S, C) tokens first..first+S; emb (B, R, C) and temb (B, R, 3C) per row of `per_row` tokens."""
        b = self.block
        tokens = x.shape[1]

        def tok(t: torch.Tensor) -> torch.Tensor:
            return _rows(t, first, tokens, per_row)

        if extra_pos is not None:
            x = x + extra_pos
        # 1. Self-attention
        shift, scale, gate = _modulation(b.norm1, emb, temb, 3)
        n = b.norm1.norm(x) * (1 + tok(scale)) + tok(shift)
        x = x + tok(gate) * self._self_attention(n, cos, sin)
        # 2. Cross-attention
        shift, scale, gate = _modulation(b.norm2, emb, temb, 3)
        n = b.norm2.norm(x) * (1 + tok(scale)) + tok(shift)
        x = x + tok(gate) * self._cross_attention(n, text, attention_mask)
        # 3. Feed-forward
        shift, scale, gate = _modulation(b.norm3, emb, temb, 3)
        n = b.norm3.norm(x) * (1 + tok(scale)) + tok(shift)
        return x + tok(gate) * b.ff(n)

    def _self_attention(self, n: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        a = self.block.attn1
        q = rotary(a.norm_q(a.to_q(n).unflatten(2, (a.heads, -1))), cos, sin)
        k = rotary(a.norm_k(a.to_k(n).unflatten(2, (a.heads, -1))), cos, sin)
        v = a.to_v(n).unflatten(2, (a.heads, -1))
        out = self.attend(q, k, v).flatten(2, 3).type_as(q)
        return a.to_out[1](a.to_out[0](out))

    def _cross_attention(self, n: torch.Tensor, text: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a = self.block.attn2
        q = a.norm_q(a.to_q(n).unflatten(2, (a.heads, -1)))
        k = a.norm_k(a.to_k(text).unflatten(2, (a.heads, -1)))
        v = a.to_v(text).unflatten(2, (a.heads, -1))
        if mask is None:
            out = self.attend_cross(q, k, v)
        else:
            out = self.attend_masked(q, k, v, mask)
        out = out.flatten(2, 3).type_as(q)
        return a.to_out[1](a.to_out[0](out))


def sdpa_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    return dispatch_attention_fn(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)


def output_norm(model: nn.Module, h: torch.Tensor, emb: torch.Tensor, temb: torch.Tensor | None, first: int,
                per_row: int) -> torch.Tensor:
    """The stock output norm (AdaLN, shift and scale) on tokens first..first+S of h, from per-row embeddings."""
    shift, scale = _modulation(model.norm_out, emb, temb, 2)
    tokens = h.shape[1]
    return model.norm_out.norm(h) * (1 + _rows(scale, first, tokens, per_row)) + _rows(shift, first, tokens, per_row)


class CosmosWrapper(nn.Module):
    """What the wrappers that keep `CosmosTransformer3DModel`'s call (this file's and the parallel one) share:
    the attributes samplers read off a transformer, passed through; the stock forward's input channels; the
    rotary tables, computed once per latent shape and frame rate."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def config(self):
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _input_channels(self, hidden_states: torch.Tensor, condition_mask: torch.Tensor | None,
                        padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The latents with the conditioning-mask and padding-mask channels, as the stock forward adds them."""
        x = hidden_states
        if condition_mask is not None:
            x = torch.cat([x, condition_mask], dim=1)
        if self.model.config.concat_padding_mask:
            batch, frames = hidden_states.shape[0], hidden_states.shape[2]
            mask = tv_resize(padding_mask, list(x.shape[-2:]), interpolation=InterpolationMode.NEAREST)
            x = torch.cat([x, mask.unsqueeze(2).repeat(batch, 1, frames, 1, 1)], dim=1)
        return x

    def _rope(self, x: torch.Tensor, fps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(x.shape[2:]), fps, x.device)
        if key not in self._rope_cache:
            self._rope_cache.clear()
            self._rope_cache[key] = self.model.rope(x, fps=fps)
        return self._rope_cache[key]


class FusedCosmosTransformer(CosmosWrapper):
    """`CosmosTransformer3DModel` with the rewritten forward; same call, same output up to bf16 rounding."""

    def __init__(self, model: nn.Module, attend: Attend, attend_cross: Attend | None = None) -> None:
        reason = supports(model)
        if reason is not None:
            raise ValueError(f"cannot fuse this transformer: {reason}")
        super().__init__(model)
        self.blocks = nn.ModuleList(FusedBlock(b, attend, attend_cross, sdpa_masked) for b in model.transformer_blocks)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        block_controlnet_hidden_states: list[torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        fps: int | None = None,
        condition_mask: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        model, cfg = self.model, self.model.config
        if block_controlnet_hidden_states is not None or isinstance(encoder_hidden_states, tuple):
            return model(hidden_states, timestep, encoder_hidden_states, block_controlnet_hidden_states,
                         attention_mask, fps, condition_mask, padding_mask, return_dict)
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = cfg.patch_size
        grid = (frames // p_t, height // p_h, width // p_w)

        # 1. Conditioning and padding-mask channels, positional embeddings (as the stock forward)
        x = self._input_channels(hidden_states, condition_mask, padding_mask)
        if attention_mask is not None:
            attention_mask = attention_mask.unsqueeze(1).unsqueeze(1)
        cos, sin = self._rope(x, fps)
        extra_pos = model.learnable_pos_embed(x) if cfg.extra_pos_embed_type else None

        # 2. Patchify
        h = model.patch_embed(x).flatten(1, 3)
        tokens = h.shape[1]

        # 3. Time embedding: one row per sample, or per latent frame (never per token)
        if timestep.ndim == 1:
            temb, emb = model.time_embed(h, timestep)
            temb, emb, per_row = temb[:, None], emb[:, None], tokens
        elif timestep.ndim == 5:
            if timestep.shape != (batch, 1, frames, 1, 1) or p_t != 1:
                raise ValueError(f"Expected timestep to have shape [B, 1, T, 1, 1], but got {tuple(timestep.shape)}")
            temb, emb = model.time_embed(h, timestep.flatten())
            temb, emb, per_row = temb.view(batch, grid[0], -1), emb.view(batch, grid[0], -1), grid[1] * grid[2]
        else:
            raise ValueError(f"Expected timestep to have shape [B, 1, T, 1, 1] or [T], but got {timestep.shape}")

        text = model.crossattn_proj(encoder_hidden_states) if cfg.use_crossattn_projection else encoder_hidden_states

        # 4. Blocks
        for block in self.blocks:
            h = block(h, text, emb, temb, cos, sin, extra_pos, attention_mask, 0, per_row)

        # 5. Output norm (per row as well), projection, un-patchify (the stock permutation)
        h = model.proj_out(output_norm(model, h, emb, temb, 0, per_row))
        h = h.unflatten(2, (p_h, p_w, p_t, -1)).unflatten(1, grid)
        h = h.permute(0, 7, 1, 6, 2, 4, 3, 5).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (h,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=h)


__all__ = ["FusedBlock", "FusedCosmosTransformer", "output_norm", "rotary", "sdpa_masked", "supports"]
