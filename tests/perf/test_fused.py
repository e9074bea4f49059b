"""The GPU speed path on a CPU: kernel selection, the attention custom op, the fused forward, the caches.

FlashAttention-4 is never imported here: a stand-in kernel (PyTorch SDPA) is registered under the op's
kernel names, so the plumbing (custom op, fake tensor, torch.compile tracing, processors, the record) is
what is tested; timings are for bench/.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from v2w_runtime import fused, perf
from v2w_runtime.tiny.video2world import build_transformer

from .test_perf import generate, make_pipeline, reference  # noqa: F401  (the module-scoped reference videos)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(1)


def stand_in(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """What a custom kernel computes, by SDPA: (B, S, heads, D) in and out."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


@pytest.fixture
def fake_fa4(monkeypatch):
    """An SM90 GPU with flash-attn-4 importable, its forward replaced by the stand-in."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(perf, "_fa4_import_error", lambda: None)
    monkeypatch.setitem(perf._OP_KERNELS, "fa4", stand_in)


def dit_inputs(batch=2, frames=3, height=8, width=12, per_frame=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    timestep = torch.rand(batch, 1, frames, 1, 1, generator=g) if per_frame else torch.rand(batch, generator=g)
    return dict(
        hidden_states=torch.randn(batch, 16, frames, height, width, generator=g), timestep=timestep,
        encoder_hidden_states=torch.randn(batch, 512, 32, generator=g), fps=16,
        condition_mask=torch.zeros(batch, 1, frames, height, width),
        padding_mask=torch.zeros(1, 1, height * 8, width * 8), return_dict=False,
    )


# ----------------------------------------------------------------------------- selection


def test_auto_is_sdpa_on_a_cpu_and_an_explicit_fa4_says_why_not():
    assert perf.resolve_attention("auto", "cpu") == "sdpa"
    assert perf.resolve_attention("default", "cpu") == "sdpa"
    assert perf.resolve_attention("math", "cpu") == "math"
    with pytest.raises(ValueError, match="attention backend fa4: FlashAttention-4 needs a CUDA GPU"):
        perf.resolve_attention("fa4", "cpu")


def test_auto_picks_fa4_on_hopper_in_bf16_only(fake_fa4, monkeypatch):
    assert perf.resolve_attention("auto", "cuda:0", torch.bfloat16) == "fa4"
    assert perf.resolve_attention("fa4", "cuda:0", torch.float16) == "fa4"
    assert perf.resolve_attention("auto", "cuda:0", torch.float32) == "sdpa"  # FA4 has no float32 path
    assert perf.resolve_attention("default", "cuda:0", torch.bfloat16) == "sdpa"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (10, 0))
    assert perf.resolve_attention("auto", "cuda:0", torch.bfloat16) == "fa4"  # Blackwell SM100
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert perf.resolve_attention("auto", "cuda:0", torch.bfloat16) == "sdpa"
    with pytest.raises(ValueError, match="this GPU is sm80"):
        perf.resolve_attention("fa4", "cuda:0", torch.bfloat16)


def test_auto_falls_back_to_sdpa_when_the_package_does_not_import(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(perf, "_fa4_import_error", lambda: "flash-attn-4 cannot be imported (ImportError: no)")
    assert perf.resolve_attention("auto", "cuda:0", torch.bfloat16) == "sdpa"
    with pytest.raises(ValueError, match="cannot be imported"):
        perf.resolve_attention("fa4", "cuda:0", torch.bfloat16)


def test_the_spec_and_the_cli_know_fa4_and_compile_is_on_by_default():
    from v2w_api.spec import PerformanceSpec

    assert PerformanceSpec().compile is True
    assert perf.options_from_spec(PerformanceSpec(attention_backend="fa4")).attention == "fa4"
    from v2w_runtime.cli import parse

    base = ["--prompt", "x", "--disable_guardrail", "--disable_prompt_refiner"]
    assert parse("video2world", base + ["--attention_backend", "fa4"]).performance.attention_backend == "fa4"
    assert parse("video2world", base + ["--no-compile"]).performance.compile is False
    assert parse("video2world", base).performance.compile is True


# ----------------------------------------------------------------------------- the custom op


def test_attention_op_runs_a_registered_kernel_and_checks_out():
    perf.register_kernel("stand_in", stand_in)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 24, 2, 16, generator=g) for _ in range(3))
    out = torch.ops.v2w.attention(q, k, v, "stand_in")
    torch.testing.assert_close(out, stand_in(q, k, v))
    assert out.is_contiguous() and out.shape == q.shape
    # schema, fake (meta) implementation and dispatch agree; non-contiguous inputs are made contiguous
    torch.library.opcheck(perf.attention_op, (q, k, v, "stand_in"), test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(perf.attention_op, (q.transpose(1, 2).contiguous().transpose(1, 2), k, v, "stand_in"),
                          test_utils=("test_faketensor",))
    with pytest.raises(RuntimeError, match="attention kernel 'nope' is not loaded"):
        torch.ops.v2w.attention(q, k, v, "nope")


def test_compile_traces_through_the_op_in_one_graph_shared_by_all_blocks():
    from torch._dynamo.testing import CompileCounterWithBackend

    perf.register_kernel("stand_in", stand_in)
    model = build_transformer(1)
    fast = fused.FusedCosmosTransformer(model, perf.attention_fn("stand_in"))
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    for block in fast.blocks:
        block.compile(backend=counter, fullgraph=True, dynamic=False)  # fullgraph: no graph break anywhere
    inputs = dit_inputs()
    with torch.no_grad():
        expected = model(**inputs)[0]
        got = fast(**inputs)[0]
        again = fast(**inputs)[0]
    assert counter.frame_count == 1  # both blocks, one graph
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(got, again)
    torch._dynamo.reset()


# ----------------------------------------------------------------------------- the fused forward


@pytest.mark.parametrize("per_frame", [True, False])
@pytest.mark.parametrize("learnable_pos", [False, True])
def test_fused_forward_equals_the_stock_forward(per_frame, learnable_pos):
    model = build_transformer(1)
    if learnable_pos:  # the learnable positional embedding some Cosmos configs use
        from diffusers.models.transformers.transformer_cosmos import CosmosLearnablePositionalEmbed

        model.register_to_config(extra_pos_embed_type="learnable")
        model.learnable_pos_embed = CosmosLearnablePositionalEmbed(32, model.config.max_size, model.config.patch_size)
        torch.nn.init.normal_(model.learnable_pos_embed.pos_emb_t)
        torch.nn.init.normal_(model.learnable_pos_embed.pos_emb_h)
    fast = fused.FusedCosmosTransformer(model, perf.attention_fn("sdpa"))
    inputs = dit_inputs(per_frame=per_frame)
    with torch.no_grad():
        expected = model(**inputs)[0]
        got = fast(**inputs)[0]
        cached_rope = fast(**inputs)[0]  # a second call through the cached rotary tables
    # float32: the AdaLN linears see T rows instead of T*H*W copies of them; nothing else moves
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(got, cached_rope)
    if not per_frame:  # one row per sample: the same arithmetic exactly
        assert torch.equal(got, expected)


def test_models_the_rewrite_does_not_cover_keep_the_stock_forward():
    model = build_transformer(1)
    assert fused.supports(model) is None
    assert "not a CosmosTransformer3DModel" in fused.supports(torch.nn.Linear(2, 2))
    model.transformer_blocks[0].after_proj = torch.nn.Linear(32, 32)
    assert "before/after projections" in fused.supports(model)
    with pytest.raises(ValueError, match="cannot fuse"):
        fused.FusedCosmosTransformer(model, perf.attention_fn("sdpa"))


def test_kernel_processors_give_the_stock_blocks_the_custom_kernel():
    perf.register_kernel("stand_in", stand_in)
    model = build_transformer(1)
    swapped = copy.deepcopy(model)
    assert perf.use_kernel_processors(swapped) == 4  # attn1 and attn2 of both blocks
    inputs = dit_inputs()
    calls = []
    perf.register_kernel("stand_in", lambda q, k, v: calls.append(k.shape[1]) or stand_in(q, k, v))
    with torch.no_grad():
        expected = model(**inputs)[0]
        with perf.attention_context("stand_in"):
            got = swapped(**inputs)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert calls == [3 * 8 * 12 // 4] * 2  # self-attention of both blocks; the cross-attention stays on SDPA


# ----------------------------------------------------------------------------- accelerate, end to end


def test_on_a_cpu_exact_mode_is_the_stock_forward(reference):
    pipe = make_pipeline()
    wrapper = perf.accelerate(pipe, perf.PerfOptions())
    assert wrapper.applied == {"attention": "sdpa", "cross_attention": "sdpa", "fused": False, "compile": False}
    np.testing.assert_array_equal(generate(pipe, 4), reference[4])


def test_gpu_path_fused_with_the_fa4_op_makes_the_same_video(reference, fake_fa4, monkeypatch):
    """The whole sampler through the fused forward and the custom op (stand-in kernel), as on an H100 but uncompiled."""
    monkeypatch.setattr(perf, "_on_gpu", lambda device: True)
    monkeypatch.setattr(perf, "FA4_DTYPES", (torch.float32,))  # the tiny model is float32; the stand-in runs it
    calls = []
    monkeypatch.setitem(perf._OP_KERNELS, "fa4", lambda q, k, v: calls.append(q.shape) or stand_in(q, k, v))
    pipe = make_pipeline()
    wrapper = perf.accelerate(pipe, perf.PerfOptions(compile=False))
    assert wrapper.applied == {"attention": "fa4", "cross_attention": "sdpa", "fused": True, "compile": False}
    assert isinstance(wrapper.inner, fused.FusedCosmosTransformer)
    got = generate(pipe, 4)
    # 4 steps x 2 guidance passes x 2 blocks, self-attention only (the 512 text keys go to SDPA)
    assert len(calls) == 4 * 2 * 2
    assert np.abs(got.astype(int) - reference[4].astype(int)).max() <= 1
    # applied again, the pipeline gets the same fused module (compiled blocks are not compiled again)
    again = perf.accelerate(pipe, perf.PerfOptions(compile=False))
    assert again.inner is wrapper.inner


def test_compile_caches_live_under_the_checkpoint_cache(tmp_path, monkeypatch):
    names = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR",
             "FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_CACHE_DIR", "/elsewhere/triton")  # a variable already set is kept
    got = perf.use_compile_caches()
    assert got["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torch-compile" / "inductor")
    assert got["FLASH_ATTENTION_CUTE_DSL_CACHE_DIR"] == str(tmp_path / "torch-compile" / "flash-attn-cute")
    assert got["FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED"] == "1"
    assert got["TRITON_CACHE_DIR"] == "/elsewhere/triton"


def test_inductors_own_default_does_not_count_as_set(tmp_path, monkeypatch):
    """Importing diffusers' models makes inductor write its default cache folder into the environment."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    assert perf.use_compile_caches()["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torch-compile" / "inductor")
