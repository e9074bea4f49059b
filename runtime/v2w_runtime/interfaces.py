"""The seams between generation and the models around it (guardrail, prompt refiner).

The generation program takes these objects as components, the way a diffusers pipeline takes its
safety checker, so each side can be built, tested and replaced on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Verdict:
    """The guardrail's answer about one prompt or one video. A block is a verdict, not an exception."""

    allowed: bool
    check: str  # which check decided: "blocklist", "llm", "video_classifier", ...
    reason: str = ""

    @classmethod
    def ok(cls, check: str) -> "Verdict":
        return cls(True, check)


class GuardrailError(RuntimeError):
    """The guardrail is enabled but cannot load or run: nothing may be generated (fail closed)."""


@runtime_checkable
class Guardrail(Protocol):
    def check_text(self, text: str) -> Verdict:
        """Verdict on a prompt; raises GuardrailError when a model cannot run."""

    def check_video(self, frames: np.ndarray) -> Verdict:
        """Verdict on decoded frames (T, H, W, 3) uint8; raises GuardrailError when a model cannot run."""

    def postprocess(self, frames: np.ndarray) -> np.ndarray:
        """Frames as they may be written (faces pixelated); same shape and dtype."""


@dataclass
class RefinedPrompt:
    original: str
    refined: str  # equals original when refinement was skipped or produced nothing usable
    warnings: list[str] = field(default_factory=list)


@runtime_checkable
class PromptRefiner(Protocol):
    def refine(self, prompt: str, frames: np.ndarray) -> RefinedPrompt:
        """A detailed prompt for the conditioning frames (T, H, W, 3) uint8 and the user's prompt."""

    def offload(self) -> None:
        """Free accelerator memory (move weights to CPU) after use."""


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
        if self.world_size % self.group_size:
            raise ValueError(
                f"world size {self.world_size} is not a multiple of the group size {self.group_size} "
                f"(context parallel {self.cp_size}{' x 2 for CFG parallel' if self.cfg_parallel else ''})"
            )
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world of {self.world_size}")

    @property
    def group_size(self) -> int:
        return self.cp_size * (2 if self.cfg_parallel else 1)

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
