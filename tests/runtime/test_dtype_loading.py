"""Every loader asks for its dtype with `from_pretrained(..., dtype=...)`. transformers learnt that keyword in
4.56 (before, `torch_dtype`): an older one takes `dtype` for a config attribute and loads float32 without a
word, doubling the memory of every model on a GPU. And diffusers 0.42 needs huggingface-hub 1.32 or later,
which every transformers 4.x refuses (hub below 1.0). So the floor is 5.0 (these tests and the runtime's
pass on 5.0.0), and each tiny model of the real architectures is loaded in bfloat16 here and checked."""

from __future__ import annotations


from pathlib import Path
import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DTYPE_KEYWORD_SINCE = Version("4.56")
FLOOR = Version("5.0")  # the first transformers that installs beside diffusers 0.42 (huggingface-hub >= 1.32)


def _dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters()}


def _mostly(module: torch.nn.Module, dtype: torch.dtype) -> bool:
    """Most weights in `dtype` (T5 keeps its few `wo` projections in float32 in some transformers versions,
    on purpose); an ignored dtype keyword leaves all of them in float32."""
    counts: dict[torch.dtype, int] = {}
    for p in module.parameters():
        counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    return counts.get(dtype, 0) > sum(counts.values()) / 2


def test_the_transformers_floor_knows_the_dtype_keyword():
    tomllib = pytest.importorskip("tomllib")
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["runtime"]
    (spec,) = [Requirement(r).specifier for r in runtime if Requirement(r).name == "transformers"]
    floors = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
    assert floors and min(floors) >= FLOOR >= DTYPE_KEYWORD_SINCE, str(spec)
    assert not spec.contains("4.55.4") and not spec.contains("4.57.6")


def test_video2world_components_load_in_bfloat16(tiny_checkpoint):
    from v2w_runtime.checkpoints import load_components

    loaded = load_components(str(tiny_checkpoint), dtype=torch.bfloat16)
    for name in ("transformer", "vae"):  # diffusers
        assert _dtypes(loaded.components[name]) == {torch.bfloat16}, name
    assert _mostly(loaded.components["text_encoder"], torch.bfloat16)  # transformers (T5)


def test_cosmos_reason1_loads_in_bfloat16(tmp_path):
    from v2w_runtime.qwen import QwenVL
    from v2w_runtime.tiny.qwen import write_tiny_qwen

    qwen = QwenVL.load(write_tiny_qwen(tmp_path / "reason1", seed=0), device="cpu", dtype=torch.bfloat16)
    assert _dtypes(qwen.model) == {torch.bfloat16}


def test_guardrail_models_load_in_the_dtypes_upstream_uses(tmp_path):
    """Llama Guard follows the dtype asked for (bfloat16 on a GPU, as upstream); the video safety filter and
    RetinaFace stay float32, as upstream runs them."""
    from v2w_runtime.guardrail.llama_guard import LlamaGuard
    from v2w_runtime.guardrail.retinaface import load_retinaface
    from v2w_runtime.guardrail.safety_filter import VideoContentSafetyFilter
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail_release

    tree = write_tiny_guardrail_release(tmp_path / "checkpoints", seed=0)
    guard = LlamaGuard.from_pretrained(tree / "meta-llama/Llama-Guard-3-8B", dtype=torch.bfloat16)
    assert _dtypes(guard.model) == {torch.bfloat16}
    safety = VideoContentSafetyFilter.from_release(tree / "nvidia/Cosmos-Guardrail1")
    assert _dtypes(safety.encoder) == {torch.float32} and _dtypes(safety.classifier) == {torch.float32}
    faces = load_retinaface(tree / "nvidia/Cosmos-Guardrail1/face_blur_filter/Resnet50_Final.pth")
    assert _dtypes(faces) == {torch.float32}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_t5_text_encoder_follows_the_dtype_asked_for(tiny_checkpoint, dtype):
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(tiny_checkpoint / "text_encoder", dtype=dtype)
    assert _mostly(model, dtype) and model.shared.weight.dtype == dtype
