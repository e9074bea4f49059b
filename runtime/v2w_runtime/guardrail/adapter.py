"""Our Guardrail in the shape diffusers' Cosmos pipelines call as `safety_checker`.

`Cosmos2VideoToWorldPipeline` (diffusers 0.42) moves its safety checker with `.to(device)` around the
checks, calls `check_text_safety(prompt) -> bool` for each prompt (and raises ValueError itself on False),
and `check_video_safety(frames) -> frames` on each decoded video as uint8 (T, H, W, 3), then stacks what
comes back: returning None there crashes the pipeline. So a blocked video comes back as black frames of
the same shape, and the verdicts are kept on the adapter for the caller, which must not write a video
whose verdict blocked it. A GuardrailError (a model that cannot run) propagates and stops the pipeline.

The stock pipeline will not run without a safety checker; `DiffusersSafetyChecker.allow_all()` is the one
to give it where it only serves as a reference (tests, benchmarks), never where videos are served.
"""

from __future__ import annotations

import numpy as np
import torch

from v2w_runtime.interfaces import Guardrail, Verdict


class DiffusersSafetyChecker:
    def __init__(self, guardrail: Guardrail) -> None:
        if guardrail is None:
            raise ValueError("DiffusersSafetyChecker needs a guardrail; a disabled guardrail passes none to the pipeline")
        self.guardrail = guardrail
        self.text_verdicts: list[Verdict] = []
        self.video_verdicts: list[Verdict] = []

    @classmethod
    def allow_all(cls) -> "DiffusersSafetyChecker":
        """A checker that lets every prompt and video through unchanged (each verdict says so)."""
        return cls(_AllowAll())

    def to(self, device: str | torch.device, *args, **kwargs) -> "DiffusersSafetyChecker":
        move = getattr(self.guardrail, "to", None)
        if move is not None:
            move(device)
        return self

    def check_text_safety(self, prompt: str) -> bool:
        verdict = self.guardrail.check_text(prompt)
        self.text_verdicts.append(verdict)
        return verdict.allowed

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray:
        verdict = self.guardrail.check_video(frames)
        self.video_verdicts.append(verdict)
        if not verdict.allowed:
            return np.zeros_like(frames)
        return self.guardrail.postprocess(frames)

    def reset(self) -> None:
        """Forget the verdicts of the previous pipeline call."""
        self.text_verdicts.clear()
        self.video_verdicts.clear()

    @property
    def blocked(self) -> Verdict | None:
        """The first blocking verdict since the last reset, if any."""
        return next((v for v in self.text_verdicts + self.video_verdicts if not v.allowed), None)


class _AllowAll:
    """A Guardrail that checks nothing; only `DiffusersSafetyChecker.allow_all` makes one."""

    def check_text(self, text: str) -> Verdict:
        return Verdict.ok("none")

    def check_video(self, frames: np.ndarray) -> Verdict:
        return Verdict.ok("none")

    def postprocess(self, frames: np.ndarray) -> np.ndarray:
        return frames
