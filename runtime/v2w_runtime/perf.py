"""Speed switches for the Video2World sampler, applied to a built `Video2WorldPipeline`.

Exact mode (same math, bf16 tolerance; measured against the stock pipeline in bench/):
* `attention`: the attention kernel. "auto" is FlashAttention-4 (`flash-attn-4`, CuTe DSL) on an SM90
  (Hopper) or SM100 (Blackwell) GPU when the package imports and the model runs in bf16/fp16, else
  PyTorch's own SDPA choice ("default"; cuDNN on an H100). FA4 runs the Cosmos attention shapes at
  659-700 TFLOP/s on an H100 where cuDNN SDPA runs 602-649 (../bench/results). It is called through
  the custom op `v2w::attention` (opaque to torch.compile, with a shape-only fake), in the (B, S,
  heads, D) layout it takes, for self-attention; the cross-attention over the 512 text tokens stays on
  SDPA, where cuDNN is 5x faster than FA4 (0.9 against 4.3 ms a call at 2B 720p on an H100: FA4's
  tiles are made for long keys). "cudnn", "flash", "efficient", "math" force one SDPA kernel for both.
* `fused`: the rewritten DiT forward of `fused.py` (AdaLN modulation per latent frame instead of per
  token; attention without layout copies), on GPUs; the context/CFG-parallel transformer runs the same
  blocks on its sequence slice (`ParallelCosmosTransformer.use_fused`), so compile applies there too.
* `compile`: `torch.compile` of each transformer block, on GPUs (one graph shared by all blocks); the
  first forward at a new size compiles. Inductor's, Triton's and FA4's kernel caches are kept under
  `$V2W_CACHE_DIR/torch-compile` (unless their own variables say otherwise), so a warm pod or a cache
  volume does not pay the code generation again.
* `split_batch`: run a guidance batch (conditional + unconditional) as one forward per sample.
  Measured on an H100 (bench/): the DiT is compute-bound at these sizes, so batch 2 is no faster
  than two batch-1 forwards (2B 720p: 7.98 s vs 2 x 3.94 s), while it needs twice the activations;
  splitting is what lets the 14B's whole pipeline fit one 80 GB GPU.

On a CPU only the attention choice applies: the fused forward and compile change rounding for a speed
that only matters on GPUs, and CPU runs (tests, the tiny demo) compare against the stock forward bit for bit.

Fast mode (opt-in approximation, quality measured in bench/):
* `step_cache`: reuse the transformer's last output on some middle steps instead of running it.
  The first `warmup` steps and the last `final` steps always run; in between every `interval`-th
  step runs and the others reuse. The Euler update still moves with the current noise level, so a
  reused step is a cheap extrapolation, not a repeat.

Everything is done by wrapping `pipeline.transformer` (the one place where the DiT runs), so the
sampler, context parallelism and the stock-pipeline equivalence test are untouched. What a run really
got (kernel, fused, compiled) is `FastTransformer.applied`, written into each video's record.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Callable

import torch
from pydantic import BaseModel, Field, model_validator

from v2w_api.spec import AttentionBackend, PerformanceSpec

# Resolved kernel names -> diffusers' attention backend names (None: the registry's default, PyTorch SDPA).
_SDPA = {"sdpa": None, "cudnn": "_native_cudnn", "flash": "_native_flash", "efficient": "_native_efficient",
         "math": "_native_math"}
KERNELS = ("fa4", *_SDPA)
CHOICES = ("auto", "default", *KERNELS)
FA4_ARCHS = (9, 10)  # compute capability majors with an FA4 forward: SM90 (Hopper), SM100 (Blackwell)
FA4_DTYPES = (torch.bfloat16, torch.float16)


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
    compile: bool = True  # on GPUs
    fused: bool = True  # on GPUs
    step_cache: StepCacheSettings | None = None

    @model_validator(mode="after")
    def _check(self) -> "PerfOptions":
        if self.attention not in CHOICES:
            raise ValueError(f"attention must be one of {', '.join(CHOICES)}; not {self.attention!r}")
        return self

    @property
    def exact(self) -> bool:
        return self.step_cache is None


# ----------------------------------------------------------------------------- kernel caches


def compile_cache_dir() -> Path:
    """$V2W_CACHE_DIR/torch-compile (the checkpoint cache's folder, ~/.cache/v2w when unset)."""
    from .checkpoints import cache_dir

    return cache_dir() / "torch-compile"


def use_compile_caches(root: Path | None = None) -> dict[str, str]:
    """Point inductor, Triton and FA4's CuTe DSL at folders under `root` unless their variables say otherwise.

    Must run before the first compile and before flash_attn.cute is imported (it reads its variables then).
    """
    root = Path(root) if root is not None else compile_cache_dir()
    wanted = {
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
        "TRITON_CACHE_DIR": str(root / "triton"),
        "FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED": "1",
        "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR": str(root / "flash-attn-cute"),
    }
    inductor_default = _inductor_default_cache_dir()
    for name, value in wanted.items():
        current = os.environ.get(name)
        # Importing diffusers' models already makes inductor write its own default into the variable.
        if current is None or (name == "TORCHINDUCTOR_CACHE_DIR" and current == inductor_default):
            os.environ[name] = value
    return {name: os.environ[name] for name in wanted}


def _inductor_default_cache_dir() -> str | None:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # pragma: no cover - older torch
        return None
    return default_cache_dir()


# ----------------------------------------------------------------------------- attention kernels

# Kernels the custom op can run, by name: (q, k, v) in (B, S, heads, D), contiguous -> out (B, S, heads, Dv).
_OP_KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {}


def register_kernel(name: str, fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Make `fn` callable as `torch.ops.v2w.attention(q, k, v, name)` (the tests register a stand-in)."""
    _OP_KERNELS[name] = fn


@torch.library.custom_op("v2w::attention", mutates_args=())
def attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
    """Non-causal attention with the default scale through a registered kernel; layout (B, S, heads, D)."""
    fn = _OP_KERNELS.get(kernel)
    if fn is None:
        raise RuntimeError(f"attention kernel {kernel!r} is not loaded (loaded: {', '.join(_OP_KERNELS) or 'none'})")
    return fn(q.contiguous(), k.contiguous(), v.contiguous()).contiguous()


@attention_op.register_fake
def _attention_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


@functools.lru_cache(maxsize=None)
def _fa4_import_error() -> str | None:
    """None once FA4's forward is registered as kernel "fa4", else why it cannot be."""
    use_compile_caches()
    try:
        from flash_attn.cute import flash_attn_func
    except Exception as exc:  # ImportError, or a CUDA/CuTe library that fails to load
        return f"flash-attn-4 cannot be imported ({type(exc).__name__}: {exc})"

    def fa4(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out, _lse = flash_attn_func(q, k, v)
        return out

    register_kernel("fa4", fa4)
    return None


def fa4_problem(device: torch.device | str, dtype: torch.dtype | None = None) -> str | None:
    """None when FlashAttention-4 can run on `device` in `dtype`, else why not."""
    device = torch.device(device)
    if not _on_gpu(device):
        return f"FlashAttention-4 needs a CUDA GPU, the model is on {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if major not in FA4_ARCHS:
        return f"FlashAttention-4 has a forward for SM90 and SM100 GPUs; this GPU is sm{major}{minor}"
    if dtype is not None and dtype not in FA4_DTYPES:
        return f"FlashAttention-4 runs bfloat16 and float16, the model is {str(dtype).removeprefix('torch.')}"
    return _fa4_import_error()


def resolve_attention(choice: str, device: torch.device | str, dtype: torch.dtype | None = None) -> str:
    """The kernel `choice` means on `device`: "fa4", "sdpa" (PyTorch's own choice) or a forced SDPA kernel."""
    if choice not in CHOICES:
        raise ValueError(f"attention backend {choice!r}: expected {', '.join(CHOICES)}")
    if choice == "auto":
        return "fa4" if fa4_problem(device, dtype) is None else "sdpa"
    if choice == "default":
        return "sdpa"
    if choice == "fa4":
        problem = fa4_problem(device, dtype)
        if problem is not None:
            raise ValueError(f"attention backend fa4: {problem}; choose auto or default")
    return choice


@functools.lru_cache(maxsize=None)
def cross_kernel(kernel: str) -> str:
    """The kernel for cross-attention (512 text keys) when self-attention runs `kernel`."""
    return "sdpa" if kernel not in _SDPA else kernel


@functools.lru_cache(maxsize=None)
def attention_fn(kernel: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """attend(q, k, v) -> out, all (B, S, heads, D), for a resolved kernel name (what fused blocks call).

    One function object per kernel: compiled blocks guard on it, so every block shares one graph.
    """
    if kernel in _SDPA:
        from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

        backend = AttentionBackendName(_SDPA[kernel]) if _SDPA[kernel] else None

        def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return dispatch_attention_fn(q, k, v, dropout_p=0.0, is_causal=False, backend=backend)

        return sdpa

    def op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.ops.v2w.attention(q, k, v, kernel)

    return op


_active_kernel: str | None = None  # set by attention_context for the processors below


@contextlib.contextmanager
def attention_context(kernel: str | None):
    """Run the stock attention processors (and the Ulysses one) on `kernel` inside the block (None: no change)."""
    global _active_kernel
    backend = _SDPA.get(kernel) if kernel is not None else None
    if backend is not None:
        from diffusers.models.attention_dispatch import attention_backend

        context = attention_backend(backend)
    else:
        context = contextlib.nullcontext()
    previous, _active_kernel = _active_kernel, kernel
    try:
        with context:
            yield
    finally:
        _active_kernel = previous


def dispatch_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                       cross: bool = False):
    """diffusers' `dispatch_attention_fn` for (B, S, heads, D), or the custom op for self-attention while a
    custom kernel is active."""
    if _active_kernel is not None and _active_kernel not in _SDPA and attn_mask is None and not cross:
        return torch.ops.v2w.attention(q, k, v, _active_kernel)
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    return dispatch_attention_fn(q, k, v, attn_mask=attn_mask, dropout_p=0.0, is_causal=False)


class KernelAttnProcessor:
    """diffusers' `CosmosAttnProcessor2_0` (self- and cross-attention, same ops) calling `dispatch_attention`.

    Put in place of the stock processor when the stock blocks run (the parallel transformer, or the fused
    forward switched off) with a kernel diffusers cannot dispatch to.
    """

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        from .fused import rotary

        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(2, (attn.heads, -1)))
        k = attn.norm_k(attn.to_k(context).unflatten(2, (attn.heads, -1)))
        v = attn.to_v(context).unflatten(2, (attn.heads, -1))
        if image_rotary_emb is not None:
            q, k = (rotary(t, *image_rotary_emb) for t in (q, k))
        out = dispatch_attention(q, k, v, attention_mask, cross=encoder_hidden_states is not None)
        out = out.flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def use_kernel_processors(module: torch.nn.Module) -> int:
    """Swap every stock Cosmos attention processor under `module` for `KernelAttnProcessor`; returns how many."""
    from diffusers.models.transformers.transformer_cosmos import CosmosAttnProcessor2_0

    swapped = 0
    for sub in module.modules():
        if isinstance(getattr(sub, "processor", None), CosmosAttnProcessor2_0):
            sub.set_processor(KernelAttnProcessor())
            swapped += 1
    return swapped


# ----------------------------------------------------------------------------- the wrapper


class FastTransformer(torch.nn.Module):
    """The DiT behind the same forward signature, run under a chosen attention kernel, optionally cached.

    `kernel` is a resolved name (`resolve_attention`); `scheduler` is the pipeline's: its step index and
    timestep count say where in the loop a call is.
    """

    def __init__(
        self,
        inner: torch.nn.Module,
        kernel: str | None = None,
        step_cache: StepCacheSettings | None = None,
        scheduler=None,
        split_batch: bool = False,
    ) -> None:
        super().__init__()
        if step_cache is not None and scheduler is None:
            raise ValueError("step_cache needs the pipeline's scheduler")
        self.inner = inner
        self.kernel = kernel
        self.step_cache = step_cache
        self.scheduler = scheduler
        self.split_batch = split_batch
        self.applied: dict = {"attention": kernel or "sdpa", "cross_attention": cross_kernel(kernel or "sdpa"),
                              "fused": False, "compile": False}
        self.calls = 0  # transformer forwards actually run
        self.reused = 0
        self._cached: torch.Tensor | None = None
        self._cached_shape: tuple | None = None

    @property
    def config(self):
        return self.inner.config

    @property
    def backend(self) -> str | None:
        """The diffusers backend name of an SDPA kernel (None: PyTorch's own choice or a custom kernel)."""
        return _SDPA.get(self.kernel) if self.kernel else None

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
        with attention_context(self.kernel):
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
    blocks = getattr(transformer, "blocks", None) or getattr(transformer, "transformer_blocks", None)
    if blocks is None:
        raise ValueError(f"{type(transformer).__name__} has no transformer blocks to compile")
    # Every compiled module shares nn.Module's call code, so each (size, kernel) graph is one more entry of
    # one cache: leave room for a run's few sizes before dynamo would fall back to eager.
    use_compile_caches()
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 32))
    for block in blocks:
        if getattr(block, "_compiled_call_impl", None) is None:  # already compiled: keep its graph
            block.compile(dynamic=False, fullgraph=False, mode=mode)
    return len(blocks)


def _on_gpu(device: torch.device) -> bool:
    """Where the fused forward and compile apply (the tests pretend, to run them on a CPU)."""
    return device.type == "cuda"


def _unwrap(transformer: torch.nn.Module) -> torch.nn.Module:
    from .fused import FusedCosmosTransformer

    if isinstance(transformer, FastTransformer):
        transformer = transformer.inner
    if isinstance(transformer, FusedCosmosTransformer):
        transformer = transformer.model
    return transformer


def accelerate(pipeline, options: PerfOptions) -> FastTransformer:
    """Wrap `pipeline.transformer` according to `options`; returns the wrapper (also set on the pipeline).

    Applied again to the same pipeline, it starts from the stock transformer (a compiled block stays compiled).
    """
    from . import fused

    inner = _unwrap(pipeline.transformer)
    device = pipeline.device
    gpu = _on_gpu(device)
    dtype = next(inner.parameters()).dtype
    kernel = resolve_attention(options.attention, device, dtype)
    parallel = getattr(inner, "use_fused", None)  # the context/CFG-parallel transformer fuses its own blocks
    model = inner.model if parallel is not None else inner
    use_fused = options.fused and gpu and fused.supports(model) is None
    if parallel is not None:
        parallel(kernel if use_fused else None)
        if not use_fused and kernel not in _SDPA:
            use_kernel_processors(inner)
    elif use_fused:
        # One fused module per model and kernel: applied again, the compiled blocks are reused, not recompiled.
        made = inner.__dict__.setdefault("_v2w_fused", {})
        if kernel not in made:
            made[kernel] = fused.FusedCosmosTransformer(inner, attention_fn(kernel), attention_fn(cross_kernel(kernel)))
        inner = made[kernel]
    elif kernel not in _SDPA:
        use_kernel_processors(inner)  # the stock blocks reach the kernel through their processors
    use_compile = options.compile and gpu and (use_fused or hasattr(inner, "transformer_blocks"))
    if use_compile:
        compile_blocks(inner)
    # A parallel transformer splits a guidance batch over its CFG halves itself: it gets the batch whole.
    split_batch = options.split_batch and not getattr(inner, "handles_batch", False)
    wrapper = FastTransformer(inner, kernel, options.step_cache, pipeline.scheduler, split_batch)
    wrapper.applied = {"attention": kernel, "cross_attention": cross_kernel(kernel), "fused": use_fused,
                       "compile": use_compile}
    pipeline.transformer = wrapper
    return wrapper


def options_from_spec(spec: PerformanceSpec) -> PerfOptions:
    """The speed switches a run configuration's `performance` group asks for."""
    cache = StepCacheSettings(interval=spec.step_cache_interval) if spec.fast_mode == "step_cache" else None
    return PerfOptions(attention=spec.attention_backend, compile=spec.compile, split_batch=spec.split_batch,
                       step_cache=cache)


__all__ = [
    "CHOICES", "FastTransformer", "KERNELS", "KernelAttnProcessor", "PerfOptions", "StepCacheSettings", "accelerate",
    "attention_context", "attention_fn", "attention_op", "compile_blocks", "compile_cache_dir", "cross_kernel",
    "dispatch_attention",
    "fa4_problem", "options_from_spec", "register_kernel", "resolve_attention", "use_compile_caches",
    "use_kernel_processors",
]
