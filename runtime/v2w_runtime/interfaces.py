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
    check: str  # which check decided: "blocklist", "llama_guard", "video_safety_filter", ...
    reason: str = ""
    ran: tuple[str, ...] = ()  # the checks that ran to reach this verdict, in order (empty: just `check`)

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
