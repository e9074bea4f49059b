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

from ..perf import attention_fn, dispatch_attention


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


def exchange_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: ShardState, attend
) -> torch.Tensor:
    """Self-attention of this rank's tokens over the whole sequence of its CP group: q, k, v (B, S_local,
    heads, D) in, (B, S_local, heads, D) out. One all-to-all sends each rank its heads of every token,
    `attend(q, k, v)` (same layout) runs over the full sequence for heads / cp heads, and a second
    all-to-all brings each token's output back to the rank that owns it."""
    cp = state.cp_size
    if cp == 1:
        return attend(q, k, v)
    batch, local_len, heads, head_dim = q.shape
    heads_here = heads // cp
    sizes = state.split.sizes
    # One send buffer, ordered (destination rank, token, q/k/v, batch, head, dim): each destination's
    # block is contiguous, and what arrives, stacked by source rank, is already in token order, so the
    # received tensor is used without another copy.
    send = torch.empty((cp, local_len, 3, batch, heads_here, head_dim), dtype=q.dtype, device=q.device)
    for i, t in enumerate((q, k, v)):
        # (B, S, H, D) -> (dest, S, B, h, D)
        send[:, :, i].copy_(t.unflatten(2, (cp, heads_here)).permute(2, 1, 0, 3, 4))
    recv = torch.empty((state.split.length, 3, batch, heads_here, head_dim), dtype=q.dtype, device=q.device)
    dist.all_to_all_single(
        recv, send.view(cp * local_len, 3, batch, heads_here, head_dim),
        output_split_sizes=sizes, input_split_sizes=[local_len] * cp, group=state.group,
    )
    # (S, B, h, D) -> (B, S, h, D) views, as the kernels take them.
    out = attend(*(recv[:, i].transpose(0, 1) for i in range(3)))
    # (B, S, h, D) -> (S, B, h, D): rows are tokens, cut by owner rank.
    send_back = out.transpose(0, 1).contiguous()
    back = torch.empty((cp * local_len, batch, heads_here, head_dim), dtype=out.dtype, device=out.device)
    dist.all_to_all_single(
        back, send_back, output_split_sizes=[local_len] * cp, input_split_sizes=sizes, group=state.group,
    )
    # (head group, S_local, B, h, D) -> (B, S_local, H, D)
    out = back.view(cp, local_len, batch, heads_here, head_dim).permute(2, 1, 0, 3, 4)
    return out.reshape(batch, local_len, heads, head_dim)


# The shard states the custom op below may name (one per parallel transformer; the op takes no objects).
_STATES: dict[str, ShardState] = {}


def register_state(state: ShardState) -> str:
    """A name for `state` that `ulysses_attention` takes."""
    key = f"shard-{id(state)}"
    _STATES[key] = state
    return key


@torch.library.custom_op("v2w::ulysses_attention", mutates_args=())
def ulysses_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str, state: str) -> torch.Tensor:
    """`exchange_attention` with a named kernel (`perf.attention_fn`) and shard state, as one op that
    torch.compile leaves opaque: a compiled block keeps one graph, the collectives run eagerly inside."""
    return exchange_attention(q, k, v, _STATES[state], attention_fn(kernel)).contiguous()


@ulysses_attention.register_fake
def _ulysses_attention_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str, state: str) -> torch.Tensor:
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


def ulysses_attend(kernel: str, state: ShardState):
    """attend(q, k, v) for fused blocks on a sequence slice: the exchange around the `kernel` attention.

    One function object per state: compiled blocks guard on it, so every block shares one graph."""
    key = register_state(state)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.ops.v2w.ulysses_attention(q, k, v, kernel, key)

    return attend


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
        if attn.heads % state.cp_size:
            raise ValueError(f"{attn.heads} attention heads are not divisible by context parallel size {state.cp_size}")

        # Per-token work on the local slice, in the layout the stock processor uses: (B, heads, S, D).
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2))
        k = attn.norm_k(attn.to_k(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2))
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
            k = apply_rotary_emb(k, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
        out_dtype = q.dtype
        # (B, heads, S, D) -> (B, S, heads, D) views; the exchange copies them into its send buffer.
        attend = dispatch_attention  # diffusers' dispatch, or the run's custom kernel (FA4)
        out = exchange_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), state, attend)
        out = out.flatten(2, 3).to(out_dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)
