"""The rule tables that rename upstream's native DiT and Wan VAE keys to diffusers', and reading weight files.

The released architectures are built on the meta device (no memory), so the tables are checked against the
real 2B, 14B and Wan 2.1 key sets; the tiny models check that renamed weights compute the same thing.
"""

from __future__ import annotations

import io

import pytest
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel
from safetensors.torch import save_file

from v2w_runtime.checkpoints import ARCHITECTURES, CheckpointError, apply_dit_weights
from v2w_runtime.checkpoints.common import DIT_FIXED
from v2w_runtime.checkpoints.convert import (
    DIT,
    dit_config,
    dit_to_diffusers,
    unwrap_state,
    wan_vae_config,
    wan_vae_rules,
    wan_vae_table,
)
from v2w_runtime.checkpoints.files import check_file, read_tensors
from v2w_runtime.tiny.upstream import native_dit_state, native_vae_state
from v2w_runtime.tiny.video2world import build_transformer, build_vae


def released_dit(size: str) -> CosmosTransformer3DModel:
    arch = ARCHITECTURES[size]
    with torch.device("meta"):
        return CosmosTransformer3DModel(in_channels=17, out_channels=16, mlp_ratio=4.0, text_embed_dim=1024,
                                        adaln_lora_dim=256, num_layers=arch["num_layers"],
                                        num_attention_heads=arch["num_attention_heads"],
                                        attention_head_dim=arch["attention_head_dim"], rope_scale=arch["rope_scale"],
                                        **DIT_FIXED)


@pytest.mark.parametrize("size", ["2B", "14B"])
def test_every_key_of_the_released_dits_has_one_native_name_and_back(size):
    state = released_dit(size).state_dict()
    native = DIT.to_native(state)
    assert len(native) == len(state)  # one native name each, none shared
    layers = ARCHITECTURES[size]["num_layers"]
    # upstream's module names (cosmos_predict2/models/text2image_dit.py)
    for key in ("x_embedder.proj.1.weight", "t_embedder.1.linear_1.weight", "t_embedding_norm.weight",
                f"blocks.{layers - 1}.self_attn.q_norm.weight", "blocks.0.cross_attn.output_proj.weight",
                "blocks.0.mlp.layer2.weight", "blocks.0.adaln_modulation_cross_attn.2.weight",
                "final_layer.adaln_modulation.1.weight", "final_layer.linear.weight"):
        assert key in native, key
    back = DIT.to_diffusers(native, "test")
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in state.items()}
    config = dit_config(back, size, "test")
    assert (config["num_layers"], config["num_attention_heads"], config["rope_scale"]) == (
        layers, ARCHITECTURES[size]["num_attention_heads"], ARCHITECTURES[size]["rope_scale"])
    assert (config["in_channels"], config["out_channels"], config["text_embed_dim"], config["adaln_lora_dim"]) == (
        17, 16, 1024, 256)


def test_the_wan_21_vae_key_layout():
    """Released config (base 96, two blocks a level): the decoder's flat list numbers an upsampler every fourth
    entry, and the first block after a halving upsampler has a shortcut (diffusers' convert_wan_to_diffusers)."""
    with torch.device("meta"):
        vae = AutoencoderKLWan()
    state = vae.state_dict()
    native = wan_vae_rules(2, 4).to_native(state)
    assert len(native) == len(state)
    for key in ("encoder.conv1.weight", "encoder.downsamples.2.resample.1.weight", "encoder.downsamples.5.time_conv.bias",
                "encoder.middle.1.to_qkv.weight", "encoder.head.0.gamma", "conv1.weight", "conv2.bias",
                "decoder.conv1.weight", "decoder.middle.2.residual.6.weight", "decoder.upsamples.3.time_conv.weight",
                "decoder.upsamples.4.shortcut.weight", "decoder.upsamples.11.resample.1.weight",
                "decoder.upsamples.14.residual.0.gamma", "decoder.head.2.bias"):
        assert key in native, key
    assert "decoder.upsamples.11.time_conv.weight" not in native  # the last upsampler is 2D only
    config = wan_vae_config(native, "test")
    assert config == {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                      "temperal_downsample": [False, True, True], "dropout": 0.0}
    assert {k: v.shape for k, v in wan_vae_table(config).to_diffusers(native, "t").items()} == \
        {k: v.shape for k, v in state.items()}


def test_upstream_only_keys_are_dropped_and_an_unknown_key_is_named():
    model = build_transformer(1)
    state = {k.removeprefix("net."): v for k, v in native_dit_state(model).items()}
    state["t_embedding_norm._extra_state"] = io.BytesIO(b"fp8 metadata")  # Transformer Engine's
    assert set(DIT.to_diffusers(state, "x")) == set(model.state_dict())
    state["blocks.0.self_attn.lora_A.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"model.pt: 1 key\(s\) map to nothing in diffusers' "
                                              r"CosmosTransformer3DModel: blocks.0.self_attn.lora_A.weight"):
        DIT.to_diffusers(state, "model.pt")


def test_a_missing_key_is_named_in_both_namings():
    model = build_transformer(1)
    state = dit_to_diffusers({k.removeprefix("net."): v for k, v in native_dit_state(model).items()}, "x")
    del state["transformer_blocks.1.attn2.to_v.weight"]
    expected = {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): blocks.1.cross_attn.v_proj.weight "
                                              r"\(transformer_blocks.1.attn2.to_v.weight\)"):
        DIT.check(state, expected, "model.pt")


@pytest.mark.parametrize("wrap", ["net.", "net_ema.", "model.net.", "module.", "nested", "both"])
def test_prefixes_and_nesting_of_training_checkpoints(wrap):
    state = {"blocks.0.mlp.layer1.weight": torch.ones(1)}
    if wrap == "nested":
        obj = {"model": {f"net.{k}": v for k, v in state.items()}, "optimizer": {}, "iteration": 10}
    elif wrap == "both":  # upstream's trainer: the network and its EMA copy; inference reads the network
        obj = {**{f"net.{k}": v for k, v in state.items()}, **{f"net_ema.{k}": v * 2 for k, v in state.items()}}
    else:
        obj = {f"{wrap}{k}": v for k, v in state.items()}
    got = unwrap_state(obj, "x")
    assert list(got.state) == list(state)
    assert float(got.state["blocks.0.mlp.layer1.weight"]) == 1.0
    if wrap == "net_ema.":
        assert "EMA" in got.note
    if wrap == "both":
        assert "outside it not used (net_ema.)" in got.note


def forward(model: CosmosTransformer3DModel) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 17, 2, 8, 8, generator=gen)
    text = torch.randn(1, 5, 32, generator=gen)
    with torch.no_grad():
        return model(hidden, timestep=torch.tensor([0.5]), encoder_hidden_states=text,
                     padding_mask=torch.zeros(1, 1, 8, 8), return_dict=False)[0]


@pytest.mark.parametrize("form", ["net.pt", "net_ema.pth", "trainer.pt", "native.safetensors"])
def test_a_native_dit_gives_the_forward_of_its_diffusers_twin(form, tmp_path):
    """--dit_path in upstream's native layout: the tiny DiT saved with native names loads into a transformer
    holding other weights and computes exactly what the original computes."""
    twin = build_transformer(11).eval()
    native = native_dit_state(twin)
    path = tmp_path / form
    if form == "net.pt":
        torch.save(native, path)
    elif form == "net_ema.pth":
        torch.save({k.replace("net.", "net_ema.", 1): v for k, v in native.items()}, path)
    elif form == "trainer.pt":
        torch.save({"model": native, "optimizer": {"step": 3}, "iteration": 3}, path)
    else:
        save_file({k: v for k, v in native.items() if v.ndim}, str(path))
    other = build_transformer(12).eval()
    assert not torch.equal(forward(other), forward(twin))
    info = apply_dit_weights(other, path, str(path), "2B")
    assert info["names"] == "native"
    assert torch.equal(forward(other), forward(twin))


def test_a_dit_of_the_other_size_is_named(tmp_path):
    """2B weights given as the 14B: shapes are read (memory-mapped) and the size named, not a shape traceback.
    The 2B-shaped file is made of zero-stride views, so it is a few kilobytes."""
    state = {f"net.{k}": torch.zeros(1).expand(v.shape) for k, v in DIT.to_native(released_dit("2B").state_dict()).items()}
    torch.save(state, tmp_path / "model-720p-16fps.pt")
    loaded = unwrap_state(read_tensors(tmp_path / "model-720p-16fps.pt", "f"), "f").state
    config = dit_config(dit_to_diffusers(loaded, "f"), "14B", "f")
    from v2w_runtime.checkpoints import check_model_size

    with pytest.raises(CheckpointError, match=r"f holds the 2B DiT \(28 layers, 16 heads x 128\) but the run's model "
                                              r"size is 14B"):
        check_model_size(config, "14B", "f")
    small = build_transformer(1)
    with pytest.raises(CheckpointError, match=r"--dit_path x holds the 2B DiT \(28 layers, 16 heads x 128\) but the "
                                              r"run's model is a DiT of 2 layers"):
        apply_dit_weights(small, tmp_path / "model-720p-16fps.pt", "x", "2B")


def test_a_native_vae_is_the_same_vae(tmp_path):
    twin = build_vae(2).eval()
    torch.save(native_vae_state(twin), tmp_path / "tokenizer.pth")
    native = read_tensors(tmp_path / "tokenizer.pth", "tokenizer.pth")
    config = wan_vae_config(native, "tokenizer.pth")
    assert config["base_dim"] == 8 and config["num_res_blocks"] == 1
    vae = AutoencoderKLWan(**config)
    vae.load_state_dict(wan_vae_table(config).to_diffusers(native, "tokenizer.pth"), strict=True)
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vae.encode(video).latent_dist.mode(), twin.encode(video).latent_dist.mode())


def test_truncated_and_corrupt_files_are_named(tmp_path):
    torch.save({"a": torch.ones(1000)}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    save_file({"a": torch.ones(1000)}, str(tmp_path / "whole.safetensors"))
    data = (tmp_path / "whole.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    assert check_file(tmp_path / "whole.pt", "w") is None and check_file(tmp_path / "whole.safetensors", "w") is None
    for name, message in (("cut.pt", "truncated"), ("junk.pth", "not a PyTorch checkpoint"),
                          ("cut.safetensors", "is truncated")):
        with pytest.raises(CheckpointError, match=rf"{name}.*{message}"):
            read_tensors(tmp_path / name, name)


def test_pickled_objects_are_not_unpickled(tmp_path):
    """Only tensors (and Transformer Engine's byte buffers) are read: any other pickled class is refused by name,
    as a pickle could run code (training scripts often save their argparse.Namespace next to the weights)."""
    import argparse

    torch.save({"a": torch.ones(1), "args": argparse.Namespace(lr=0.1)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: holds Python objects other than tensors"):
        read_tensors(tmp_path / "evil.pt", "evil.pt")
