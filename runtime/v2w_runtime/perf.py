"""Speed switches for the Video2World sampler, applied to a built `Video2WorldPipeline`.

Exact mode (same math, bf16 tolerance):
* `attention`: the attention kernel the DiT's processors dispatch to (diffusers' backend registry).
  "auto" keeps PyTorch's own SDPA choice: on an H100 with torch 2.11 it measured as fast as forcing
  cuDNN and 1.5x faster than forcing flash (bench/results); the others are there to measure.
* `split_batch`: run a guidance batch (conditional + unconditional) as one forward per sample.
  Measured on an H100 (bench/): the DiT is compute-bound at these sizes, so batch 2 is no faster
  than two batch-1 forwards (2B 720p: 7.98 s vs 2 x 3.94 s), while it needs twice the activations;
  splitting is what lets the 14B's whole pipeline fit one 80 GB GPU.
* `compile`: `torch.compile` of each transformer block (all blocks share one compiled graph); the
  first forward at a new size pays the compile.

Fast mode (opt-in approximation, quality measured in bench/):
* `step_cache`: reuse the transformer's last output on some middle steps instead of running it.
  The first `warmup` steps and the last `final` steps always run; in between every `interval`-th
  step runs and the others reuse. The Euler update still moves with the current noise level, so a
  reused step is a cheap extrapolation, not a repeat.

Everything is done by wrapping `pipeline.transformer` (the one place where the DiT runs), so the
sampler, context parallelism and the stock-pipeline equivalence test are untouched.
"""

from __future__ import annotations

import contextlib

import torch
from pydantic import BaseModel, Field, model_validator

from v2w_api.spec import AttentionBackend, PerformanceSpec

# Our names -> diffusers' attention backend names ("default" leaves the registry's choice alone).
_BACKENDS = {"cudnn": "_native_cudnn", "flash": "_native_flash", "efficient": "_native_efficient", "math": "_native_math"}


class StepCacheSettings(BaseModel):
    """Which steps run the transformer: all of the first `warmup` and last `final`, every `interval`-th between."""

    interval: int = Field(2, ge=1, description="1 runs every step (no caching)")
    warmup: int = Field(4, ge=1)
    final: int = Field(2, ge=1)

    def runs(self, step: int, total: int) -> bool:
        if step < self.warmup or step >= total - self.final:
            return True
        return (step - self.warmup) % self.interval == 0

    def forwards(self, total: int) -> int:
        return sum(self.runs(i, total) for i in range(total))


class PerfOptions(BaseModel):
    attention: AttentionBackend = "auto"
    split_batch: bool = True
    compile: bool = False
    step_cache: StepCacheSettings | None = None

    @model_validator(mode="after")
    def _check(self) -> "PerfOptions":
        if self.attention not in ("auto", "default") and self.attention not in _BACKENDS:
            raise ValueError(f"attention must be one of auto, default, {', '.join(_BACKENDS)}; not {self.attention!r}")
        return self

    @property
    def exact(self) -> bool:
        return self.step_cache is None


def resolve_attention(choice: str, device: torch.device | str) -> str | None:
    """The diffusers backend name for `choice` on `device`, or None for the registry's default."""
    if choice not in ("auto", "default") and choice not in _BACKENDS:
        raise ValueError(f"attention backend {choice!r}: expected auto, default, {', '.join(_BACKENDS)}")
    device = torch.device(device)
    if choice in ("auto", "default"):
        return None
    return _BACKENDS[choice]


def attention_context(backend: str | None):
    """Enter diffusers' attention backend `backend` (None: no change)."""
    if backend is None:
        return contextlib.nullcontext()
    from diffusers.models.attention_dispatch import attention_backend

    return attention_backend(backend)


class FastTransformer(torch.nn.Module):
    """The DiT behind the same forward signature, run under a chosen attention backend, optionally cached.

    `scheduler` is the pipeline's: its step index and timestep count say where in the loop a call is.
    """

    def __init__(
        self,
        inner: torch.nn.Module,
        backend: str | None = None,
        step_cache: StepCacheSettings | None = None,
        scheduler=None,
        split_batch: bool = False,
    ) -> None:
        super().__init__()
        if step_cache is not None and scheduler is None:
            raise ValueError("step_cache needs the pipeline's scheduler")
        self.inner = inner
        self.backend = backend
        self.step_cache = step_cache
        self.scheduler = scheduler
        self.split_batch = split_batch
        self.calls = 0  # transformer forwards actually run
        self.reused = 0
        self._cached: torch.Tensor | None = None
        self._cached_shape: tuple | None = None

    @property
    def config(self):
        return self.inner.config

    def forward(self, hidden_states: torch.Tensor, **kwargs):
        if self.step_cache is not None:
            step = self.scheduler.step_index or 0
            total = len(self.scheduler.timesteps)
            if step == 0:
                self._cached = None
            key = (tuple(hidden_states.shape), kwargs.get("return_dict", True))
            if self._cached is not None and self._cached_shape == key and not self.step_cache.runs(step, total):
                self.reused += 1
                return self._wrap(self._cached, kwargs)
        with attention_context(self.backend):
            out = self._run(hidden_states, kwargs)
        self.calls += 1
        if self.step_cache is not None:
            sample = out[0] if isinstance(out, tuple) else out.sample
            self._cached, self._cached_shape = sample, (tuple(hidden_states.shape), kwargs.get("return_dict", True))
        return out

    def _run(self, hidden_states: torch.Tensor, kwargs: dict):
        batch = hidden_states.shape[0]
        if not self.split_batch or batch == 1:
            return self.inner(hidden_states=hidden_states, **kwargs)
        samples = []
        for i in range(batch):
            # per-sample tensors are sliced; shared ones (the padding mask, batch 1) pass as they are
            part = {k: v[i : i + 1] if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == batch else v
                    for k, v in kwargs.items()}
            part["return_dict"] = False
            samples.append(self.inner(hidden_states=hidden_states[i : i + 1], **part)[0])
        return self._wrap(torch.cat(samples, dim=0), kwargs)

    @staticmethod
    def _wrap(sample: torch.Tensor, kwargs: dict):
        if kwargs.get("return_dict", True):
            from diffusers.models.modeling_outputs import Transformer2DModelOutput

            return Transformer2DModelOutput(sample=sample)
        return (sample,)


def compile_blocks(transformer: torch.nn.Module, mode: str | None = None) -> int:
    """Compile each transformer block in place (one graph shared by all); returns how many."""
    blocks = getattr(transformer, "transformer_blocks", None)
    if blocks is None:
        raise ValueError(f"{type(transformer).__name__} has no transformer_blocks to compile")
    for block in blocks:
        if getattr(block, "_compiled_call_impl", None) is None:  # already compiled: keep its graph
            block.compile(dynamic=False, fullgraph=False, mode=mode)
    return len(blocks)


def accelerate(pipeline, options: PerfOptions) -> FastTransformer:
    """Wrap `pipeline.transformer` according to `options`; returns the wrapper (also set on the pipeline)."""
    inner = pipeline.transformer
    if isinstance(inner, FastTransformer):
        inner = inner.inner
    if options.compile:
        compile_blocks(inner)
    backend = resolve_attention(options.attention, pipeline.device)
    wrapper = FastTransformer(inner, backend, options.step_cache, pipeline.scheduler, options.split_batch)
    pipeline.transformer = wrapper
    return wrapper


def options_from_spec(spec: PerformanceSpec) -> PerfOptions:
    """The speed switches a run configuration's `performance` group asks for."""
    cache = StepCacheSettings(interval=spec.step_cache_interval) if spec.fast_mode == "step_cache" else None
    return PerfOptions(attention=spec.attention_backend, compile=spec.compile, split_batch=spec.split_batch,
                       step_cache=cache)


__all__ = [
    "FastTransformer", "PerfOptions", "StepCacheSettings", "accelerate", "attention_context", "compile_blocks",
    "options_from_spec", "resolve_attention",
]
