"""How the ranks of a torchrun world share the work, and the default policy that picks it."""

from __future__ import annotations

from dataclasses import dataclass

from v2w_api.spec import CONTEXT_PARALLEL_SIZES, check_group, group_size


@dataclass(frozen=True)
class Layout:
    """How the ranks of a torchrun world share the work.

    Ranks are cut into groups of `group_size` consecutive ranks; each group makes whole videos (data
    parallelism across groups). Inside a group, `cfg_parallel` puts the conditional and unconditional
    passes on two halves and `cp_size` ranks split one pass's latent sequence (Ulysses). A single
    process is `Layout()`.
    """

    world_size: int = 1
    rank: int = 0
    cp_size: int = 1
    cfg_parallel: bool = False

    def __post_init__(self) -> None:
        check_group(self.world_size, self.cp_size, self.cfg_parallel)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world of {self.world_size}")

    @property
    def group_size(self) -> int:
        return group_size(self.cp_size, self.cfg_parallel)

    @property
    def num_groups(self) -> int:
        return self.world_size // self.group_size

    @property
    def group_index(self) -> int:
        return self.rank // self.group_size

    @property
    def rank_in_group(self) -> int:
        return self.rank % self.group_size

    @property
    def cfg_index(self) -> int:
        """0: conditional pass, 1: unconditional pass (always 0 without CFG parallelism)."""
        return self.rank_in_group // self.cp_size

    @property
    def cp_rank(self) -> int:
        return self.rank_in_group % self.cp_size

    @property
    def is_group_leader(self) -> bool:
        """The one rank of a group that writes its files."""
        return self.rank_in_group == 0

    @property
    def is_global_leader(self) -> bool:
        """Global rank 0: writes progress.json and result.json."""
        return self.rank == 0

    def shard(self, items: list) -> list:
        """The items (batch entries, best-of-N generations) this rank's group makes."""
        return items[self.group_index :: self.num_groups]


def choose_layout(
    world_size: int,
    rank: int = 0,
    *,
    num_heads: int,
    guidance: bool = True,
    num_videos: int = 1,
    context_parallel_size: int | None = None,
    cfg_parallel: bool | None = None,
) -> Layout:
    """The layout to run: explicit sizes win; otherwise the default policy below.

    Default, cheapest communication first:
    - at least as many videos (batch entries x generations) as ranks: data parallelism only, no
      communication at all;
    - otherwise every rank works on each video in turn (upstream's meaning of --num_gpus), as CFG
      parallel x Ulysses when guidance is on and the world is even: the CFG pair costs one all-gather of
      the prediction per step, where doubling the Ulysses size instead costs two all-to-alls per layer
      (and on 2 GPUs CFG parallelism needs no all-to-all at all). The Ulysses size is the largest of
      1, 2, 4, 8 that divides both the heads and what is left of the world; leftover ranks become
      data-parallel groups.
    That is also the fastest measured: on 4 H200s (NVLink, one forward of both guidance rows at 720p,
    2026-11-26) CFG x Ulysses 2 took 2.00 s for the 2B and 7.24 s for the 14B, Ulysses 4 2.02 s and 7.31 s;
    on 2 H100s CFG parallel 3.90 s against Ulysses 2 4.05 s (bench/results). The runner logs the layout it
    chose and each video's record names it.
    """
    if context_parallel_size is not None and context_parallel_size not in CONTEXT_PARALLEL_SIZES:
        raise ValueError(f"--context_parallel_size must be one of {CONTEXT_PARALLEL_SIZES}, got {context_parallel_size}")
    if cfg_parallel and not guidance:
        raise ValueError("--cfg_parallel needs classifier-free guidance (guidance > 1)")
    if context_parallel_size is not None and num_heads % context_parallel_size:
        raise ValueError(
            f"--context_parallel_size {context_parallel_size} does not divide the transformer's {num_heads} heads"
        )
    if context_parallel_size is None and cfg_parallel is None and num_videos >= world_size:
        return Layout(world_size, rank)
    if cfg_parallel is None:
        cfg_parallel = guidance and world_size % 2 == 0 and (context_parallel_size or 1) * 2 <= world_size
    if context_parallel_size is None:
        rest = world_size // 2 if cfg_parallel else world_size
        context_parallel_size = max(c for c in CONTEXT_PARALLEL_SIZES if rest % c == 0 and num_heads % c == 0)
    return Layout(world_size, rank, context_parallel_size, cfg_parallel)


__all__ = ["CONTEXT_PARALLEL_SIZES", "Layout", "choose_layout"]
