"""The generation API: load once, then `generate(input, prompt, seed)` as often as needed.

One call runs guardrail(text) -> refiner -> guardrail(text) -> sampling -> decode -> guardrail(video)
-> face pixelation, and returns the frames with a record of what happened. A guardrail block is an
answer (status "blocked", no frames); a GuardrailError propagates (fail closed). The CLI, batch mode and
best-of-N all go through `Video2WorldGenerator`.

With several ranks making one video (context/CFG parallelism) every rank of the group calls
`generate` with the same arguments; only the group leader runs the guardrail and the refiner and
shares their answers, and only the leader gets frames back.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from v2w_api import DEFAULT_NEGATIVE_PROMPT, Stage
from v2w_api.run import DebugSettings
from v2w_api.spec import GenerationSpec

from . import storage
from .checkpoints import ModelSource, cache_dir, load_components
from .conditioning import load_conditioning, output_size
from .interfaces import Guardrail, GuardrailError, PromptRefiner, Verdict
from .parallel.layout import Layout
from .pipeline import Video2WorldPipeline

StageCallback = Callable[[Stage], None]
StepCallback = Callable[[int, int], None]


def video_size(generation: GenerationSpec, debug: DebugSettings | None = None) -> tuple[int, int]:
    """(height, width) of the videos: the resolution class and aspect ratio's, unless a debug knob says otherwise."""
    height, width = output_size(generation.resolution, generation.aspect_ratio)
    debug = debug or DebugSettings()
    return debug.height or height, debug.width or width


@dataclass
class Generation:
    """One generate() call's outcome. `frames` is set when status is "succeeded" (on the group leader)."""

    status: Literal["succeeded", "blocked"]
    seed: int
    prompt: str
    refined_prompt: str | None = None
    negative_prompt: str = ""
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8, faces pixelated
    reason: str | None = None
    verdicts: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    guardrail_checked: bool = False  # False: the guardrail was disabled, nothing about this video was checked
    guardrail_components: list[str] = field(default_factory=list)  # the guardrail's checks that ran, in order

    def ran(self, verdict: Verdict | None = None, components: tuple[str, ...] = ()) -> None:
        """Note the guardrail components that ran: those a verdict names, or `components`."""
        names = components
        if verdict is not None:
            names = verdict.ran or (verdict.check,)
        self.guardrail_components = list(dict.fromkeys([*self.guardrail_components, *names]))

    def record(self) -> dict:
        """The JSON-ready part of the run record that is about this video."""
        return {
            "status": self.status,
            "seed": self.seed,
            "prompt": self.prompt,
            "refined_prompt": self.refined_prompt,
            "negative_prompt": self.negative_prompt,
            "reason": self.reason,
            "guardrail": self.verdicts,
            "guardrail_checked": self.guardrail_checked,
            "guardrail_components": self.guardrail_components,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": self.warnings,
        }


def verdict_dict(where: str, verdict: Verdict) -> dict:
    return {"stage": where, "allowed": verdict.allowed, "check": verdict.check, "reason": verdict.reason}


class Video2WorldGenerator:
    """A loaded Video2World model plus its guardrail and refiner."""

    def __init__(
        self,
        pipeline: Video2WorldPipeline,
        generation: GenerationSpec | None = None,
        debug: DebugSettings | None = None,
        guardrail: Guardrail | None = None,
        refiner: PromptRefiner | None = None,
        model_info: dict | None = None,
        ctx=None,
    ) -> None:
        from .parallel import ParallelContext

        self.pipeline = pipeline
        self.generation = generation or GenerationSpec()
        self.debug = debug or DebugSettings()
        self.guardrail = guardrail
        self.refiner = refiner
        self.model_info = model_info or {}
        self.ctx = ctx or ParallelContext.single(pipeline.device)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | ModelSource,
        generation: GenerationSpec | None = None,
        debug: DebugSettings | None = None,
        *,
        dit_path: str | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        guardrail: Guardrail | None = None,
        refiner: PromptRefiner | None = None,
        ctx=None,
        model_size: str = "2B",
    ) -> "Video2WorldGenerator":
        """Load the model once from a located model or a URI in any accepted layout (local, pvc:// or s3://;
        in upstream's tree the DiT variant follows the generation's resolution and fps)."""
        if device is None:
            device = ctx.device if ctx is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        generation = generation or GenerationSpec()
        loaded = load_components(checkpoint, dtype=dtype, device=device, dit_path=dit_path, model_size=model_size,
                                 resolution=generation.resolution, fps=generation.fps)
        pipeline = Video2WorldPipeline(**loaded.components)
        if ctx is not None and ctx.layout.group_size > 1:
            from .parallel import parallelize_pipeline

            parallelize_pipeline(pipeline, ctx)  # DiT split over the group, prompts encoded once per group
        return cls(pipeline, generation, debug, guardrail, refiner, loaded.info, ctx)

    @property
    def layout(self) -> Layout:
        return self.ctx.layout

    @property
    def size(self) -> tuple[int, int]:
        return video_size(self.generation, self.debug)

    @property
    def num_frames(self) -> int:
        return self.debug.num_frames or self.generation.num_frames

    def conditioning_frames(self, input: str | Path | np.ndarray) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 at the output size from a URI, a local path or frames."""
        height, width = self.size
        if isinstance(input, np.ndarray):
            from .conditioning import fit_frames

            return fit_frames(input, height, width)
        name = str(input)
        path = storage.fetch_file(name, cache_dir() / "inputs")
        return load_conditioning(path, self.generation.num_conditional_frames, height, width, name=name)

    def generate(
        self,
        input: str | Path | np.ndarray,
        prompt: str,
        seed: int,
        *,
        negative_prompt: str | None = None,
        on_stage: StageCallback | None = None,
        on_step: StepCallback | None = None,
    ) -> Generation:
        """One video from `input` (image/video URI or path, or frames) and `prompt`, seeded by `seed`.

        Raises ConditioningError / StorageError for a bad input, GuardrailError when the guardrail
        cannot run. A guardrail block returns status "blocked".
        """
        s = self.generation
        if negative_prompt is None:
            negative_prompt = s.negative_prompt if s.negative_prompt is not None else DEFAULT_NEGATIVE_PROMPT
        neg = negative_prompt
        gen = Generation(status="succeeded", seed=seed, prompt=prompt, negative_prompt=neg)
        leader = self.layout.is_group_leader
        stage = on_stage or (lambda _stage: None)

        with _timed(gen, "load_input"):
            frames = self.conditioning_frames(input)

        # 1. Text guardrail, refiner, text guardrail again (group leader only; shared with the group)
        answer = None
        if leader:
            answer = self._check_and_refine(gen, frames, stage)
        answer = self.ctx.share(answer)
        gen.refined_prompt, gen.verdicts, gen.warnings, blocked = (
            answer["refined"], answer["verdicts"], answer["warnings"], answer["blocked"]
        )
        gen.guardrail_checked, gen.guardrail_components = answer["checked"], answer["components"]
        if blocked:
            gen.status, gen.reason = "blocked", blocked
            return gen

        # 2. Sampling
        stage(Stage.SAMPLING)
        height, width = self.size
        generator = torch.Generator("cpu").manual_seed(seed)  # CPU noise: the same video on any device
        with _timed(gen, "sampling"):
            latents = self.pipeline(
                frames,
                gen.refined_prompt or prompt,
                neg,
                height=height,
                width=width,
                num_frames=self.num_frames,
                num_steps=s.num_steps,
                guidance=s.guidance,
                fps=s.fps,
                generator=generator,
                callback=on_step,
                decode=False,
            )
        if not leader:
            return gen

        # 3. Decode, video guardrail, face pixelation
        stage(Stage.DECODING)
        with _timed(gen, "decoding"):
            video = self.pipeline.decode(latents)
        if self.guardrail is not None:
            stage(Stage.GUARDRAIL)
            with _timed(gen, "guardrail_video"):
                verdict = self.guardrail.check_video(video)
                gen.verdicts.append(verdict_dict("video", verdict))
                gen.ran(verdict)
                if not verdict.allowed:
                    gen.status, gen.reason = "blocked", _block_reason("video", verdict)
                    return gen
                video = self.guardrail.postprocess(video)
                gen.ran(components=tuple(getattr(self.guardrail, "postprocessors", ())))
        gen.frames = video
        return gen

    def _check_and_refine(self, gen: Generation, frames: np.ndarray, stage: StageCallback) -> dict:
        verdicts: list[dict] = []
        warnings: list[str] = []
        answer = {"refined": None, "verdicts": verdicts, "warnings": warnings, "blocked": None,
                  "checked": self.guardrail is not None, "components": []}

        def check(text: str, kind: str) -> bool:
            """The guardrail on one text; False (and the answer says why) when it blocks."""
            stage(Stage.GUARDRAIL)
            with _timed(gen, f"guardrail_{kind}"):
                verdict = self.guardrail.check_text(text)
            verdicts.append(verdict_dict(kind, verdict))
            gen.ran(verdict)
            answer["components"] = gen.guardrail_components
            if not verdict.allowed:
                answer["blocked"] = _block_reason(kind.replace("_", " "), verdict)
            return verdict.allowed

        if self.guardrail is not None and not check(gen.prompt, "prompt"):
            return answer
        if self.refiner is not None:
            stage(Stage.REFINING)
            with _timed(gen, "refining"):
                refined = self.refiner.refine(gen.prompt, frames)
                self.refiner.offload()
            answer["refined"] = refined.refined
            warnings.extend(refined.warnings)
            if self.guardrail is not None and refined.refined != gen.prompt:
                check(refined.refined, "refined_prompt")
        return answer


def _block_reason(where: str, verdict: Verdict) -> str:
    return f"guardrail blocked the {where} ({verdict.check}{': ' + verdict.reason if verdict.reason else ''})"


@contextmanager
def _timed(gen: Generation, name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        gen.timings[name] = gen.timings.get(name, 0.0) + time.perf_counter() - start


__all__ = ["Generation", "GuardrailError", "Video2WorldGenerator", "video_size"]
