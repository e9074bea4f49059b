"""Loading straight to the device (issue 21): in every layout the direct, concurrent load gives exactly the
weights of the earlier path (built in host memory, one component after the other, then moved), the T5 encoder
loads in its own thread, the native files are read memory-mapped and converted tensor by tensor, and each
component's seconds are in the model's record."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from v2w_runtime.checkpoints import load, load_components
from v2w_runtime.tiny.upstream import write_hub_cache, write_upstream_tree

MODELS = ("transformer", "vae", "text_encoder")


@pytest.fixture(scope="module")
def layouts(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    tree = write_upstream_tree(tmp_path_factory.mktemp("upstream") / "checkpoints", seed=0)
    hub = tmp_path_factory.mktemp("hf") / "hub"
    write_hub_cache(hub, seed=0)
    return {"diffusers folder": tiny_checkpoint, "upstream tree": tree, "hub cache": hub}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert sa[key].device == sb[key].device, key
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("layout", ["diffusers folder", "upstream tree", "hub cache"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_direct_load_gives_the_earlier_paths_weights(layouts, layout, dtype):
    direct = load_components(str(layouts[layout]), dtype=dtype, device="cpu")
    earlier = load_components(str(layouts[layout]), dtype=dtype, device="cpu", direct=False)
    for name in MODELS:
        _same_weights(direct.components[name], earlier.components[name])
        assert not any(p.requires_grad for p in direct.components[name].parameters())
        assert not direct.components[name].training
    seconds = direct.info["load_seconds"]
    assert {"fetch", *MODELS, "tokenizer", "to_device", "total"} <= set(seconds)
    assert all(v >= 0 for v in seconds.values()) and seconds["total"] >= seconds["transformer"]


def test_the_t5_encoders_bytes_are_read_beside_the_dit(layouts, monkeypatch):
    """The T5's weights are read from disk in a thread while the DiT and the VAE load; the models themselves are
    built one at a time in the caller's thread (the libraries' loaders change process-wide state as they build)."""
    threads: dict[str, str] = {}
    for name in ("_read_ahead", "_t5_encoder", "_transformer", "_vae"):
        real = getattr(load, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            threads[_name] = threading.current_thread().name
            return _real(*args, **kwargs)

        monkeypatch.setattr(load, name, spy)
    loaded = load_components(str(layouts["upstream tree"]), dtype=torch.float32)
    assert threads.pop("_read_ahead").startswith("v2w-load-t5")
    assert set(threads.values()) == {threading.main_thread().name}
    assert loaded.info["load_seconds"]["text_encoder_read"] >= 0
    threads.clear()
    load_components(str(layouts["upstream tree"]), dtype=torch.float32, concurrent=False)
    assert "_read_ahead" not in threads


def test_only_the_encoders_tensors_of_a_safetensors_file_are_read_ahead(tmp_path):
    from safetensors.torch import save_file

    save_file({"encoder.a": torch.ones(4), "decoder.b": torch.ones(1000), "shared.weight": torch.ones(2)},
              tmp_path / "model.safetensors")
    ranges = load._encoder_ranges(tmp_path / "model.safetensors")
    assert sum(end - start for start, end in ranges) == (4 + 2) * 4


def test_a_native_file_is_placed_one_tensor_at_a_time_without_a_host_copy(layouts, monkeypatch):
    """A native DiT already in the wanted dtype on the CPU is used as mapped (no tensor is copied); every tensor
    goes to the target on its own (`Tensor.to` with the device and dtype at once)."""
    from v2w_runtime.checkpoints import resolve_model

    source = resolve_model(str(layouts["upstream tree"]), "2B", 720, 16, None)
    state, config = source.native_dit()
    dtype = next(iter(state.values())).dtype
    model = load._build(__import__("diffusers").CosmosTransformer3DModel, config, dict(state), load.DIT, "dit", dtype,
                        torch.device("cpu"))
    placed = model.state_dict()
    shared = [k for k, v in state.items() if v.is_floating_point() and placed[k].data_ptr() == v.data_ptr()]
    assert len(shared) == sum(1 for v in state.values() if v.is_floating_point())
