"""Ulysses sequence parallelism for the Cosmos self-attention.

Each rank of a context-parallel (CP) group holds a contiguous slice of the flattened latent token
sequence. Everything in a Cosmos block is per token except self-attention, so only there do the ranks
talk: one all-to-all trades "my tokens, all heads" for "all tokens, my heads" (q, k and v travel in one
message), attention runs over the full sequence for `heads / cp` heads, and a second all-to-all sends
each token's output back to the rank that owns it. Cross-attention needs no exchange: its keys are the
text, which every rank holds whole.

Slices may differ in length by one token (`SequenceSplit`), so no sequence length is refused and no
padding token ever enters attention: the all-to-alls carry per-rank sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from diffusers.models.embeddings import apply_rotary_emb

from ..perf import dispatch_attention


@dataclass(frozen=True)
class SequenceSplit:
    """How `length` tokens are cut into `parts` contiguous slices (the first `length % parts` get one more)."""

    length: int
    parts: int

    def __post_init__(self) -> None:
        if self.parts < 1:
            raise ValueError(f"a sequence is split into at least 1 part, got {self.parts}")
        if self.length < self.parts:
            raise ValueError(
                f"the latent sequence has {self.length} tokens, fewer than the {self.parts} context-parallel ranks"
            )

    @property
    def sizes(self) -> list[int]:
        base, extra = divmod(self.length, self.parts)
        return [base + (1 if i < extra else 0) for i in range(self.parts)]

    @property
    def even(self) -> bool:
        return self.length % self.parts == 0

    @property
    def max_size(self) -> int:
        return -(-self.length // self.parts)

    def bounds(self, part: int) -> tuple[int, int]:
        sizes = self.sizes
        start = sum(sizes[:part])
        return start, start + sizes[part]


@dataclass
class ShardState:
    """What the attention processors of one model need to know during the current forward.

    The parallel transformer fills it in before running its blocks; all processors of the model share it.
    """

    group: dist.ProcessGroup | None
    cp_size: int
    cp_rank: int
    split: SequenceSplit | None = None


class UlyssesAttnProcessor:
    """Self-attention over a sequence sharded across a CP group, heads exchanged by all-to-all.

    Numerically it does what diffusers' `CosmosAttnProcessor2_0` does for self-attention (same
    projections, per-head RMS norm, rotary embedding and attention call), so one rank's share of heads
    sees exactly the values a single process would.
    """

    def __init__(self, state: ShardState) -> None:
        self.state = state

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("UlyssesAttnProcessor handles self-attention only (no encoder states, no mask)")
        state = self.state
        cp = state.cp_size
        if attn.heads % cp:
            raise ValueError(f"{attn.heads} attention heads are not divisible by context parallel size {cp}")
        batch, local_len, _ = hidden_states.shape

        # Per-token work on the local slice, in the layout the stock processor uses: (B, heads, S, D).
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2))
        k = attn.norm_k(attn.to_k(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2))
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
            k = apply_rotary_emb(k, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
        head_dim = q.shape[-1]
        heads_here = attn.heads // cp
        out_dtype = q.dtype

        if cp == 1:
            full_q, full_k, full_v = (t.transpose(1, 2) for t in (q, k, v))
        else:
            sizes = state.split.sizes
            # One send buffer, ordered (destination rank, token, q/k/v, batch, head, dim): each
            # destination's block is contiguous, and what arrives, stacked by source rank, is already
            # in token order, so the received tensor is used without another copy.
            send = torch.empty(
                (cp, local_len, 3, batch, heads_here, head_dim), dtype=q.dtype, device=q.device
            )
            for i, t in enumerate((q, k, v)):
                # (B, H, S, D) -> (dest, S, B, h, D)
                send[:, :, i].copy_(t.unflatten(1, (cp, heads_here)).permute(1, 3, 0, 2, 4))
            recv = torch.empty(
                (state.split.length, 3, batch, heads_here, head_dim), dtype=q.dtype, device=q.device
            )
            dist.all_to_all_single(
                recv, send.view(cp * local_len, 3, batch, heads_here, head_dim),
                output_split_sizes=sizes, input_split_sizes=[local_len] * cp, group=state.group,
            )
            # (S, B, h, D) -> (B, S, h, D) views, as dispatch_attention_fn takes them.
            full_q, full_k, full_v = (recv[:, i].transpose(0, 1) for i in range(3))

        out = dispatch_attention(full_q, full_k, full_v)  # diffusers' dispatch, or the run's custom kernel (FA4)

        if cp > 1:
            # (B, S, h, D) -> (S, B, h, D): rows are tokens, cut by owner rank.
            send_back = out.transpose(0, 1).contiguous()
            back = torch.empty(
                (cp * local_len, batch, heads_here, head_dim), dtype=out.dtype, device=out.device
            )
            dist.all_to_all_single(
                back, send_back,
                output_split_sizes=[local_len] * cp, input_split_sizes=sizes, group=state.group,
            )
            # (head group, S_local, B, h, D) -> (B, S_local, H, D)
            out = back.view(cp, local_len, batch, heads_here, head_dim).permute(2, 1, 0, 3, 4)
            out = out.reshape(batch, local_len, attn.heads, head_dim)

        out = out.flatten(2, 3).to(out_dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)
