"""--checkpoint_dir in every accepted layout, through the runtime's CLI on tiny checkpoints written in exactly
the release layouts: the same video as the diffusers twin; upstream's DiT variant chosen by resolution and
fps; bad trees refused before anything loads, naming the file looked for in each layout."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from v2w_runtime import runner
from v2w_runtime.checkpoints import LAYOUT_DIFFUSERS, LAYOUT_HUB, LAYOUT_UPSTREAM, resolve_model
from v2w_runtime.checkpoints.convert import DIT
from v2w_runtime.tiny.upstream import write_hub_cache, write_upstream_tree

from .conftest import FAST, read_json, read_video
from .test_checkpoint_convert import released_dit

MODEL = "nvidia/Cosmos-Predict2-2B-Video2World"


@pytest.fixture(scope="module")
def upstream_tree(tmp_path_factory) -> Path:
    return write_upstream_tree(tmp_path_factory.mktemp("upstream") / "checkpoints", seed=0,
                               variants=[(720, 16), (480, 16)])


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """The Hugging Face cache folder (`hub/`) holding models--nvidia--Cosmos-Predict2-2B-Video2World."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    write_hub_cache(cache, seed=0)
    return cache


@pytest.fixture(scope="module")
def twin_frames(tiny_checkpoint, media, tmp_path_factory) -> np.ndarray:
    """The video of the diffusers-format twin, made once."""
    from v2w_runtime.video2world import main

    out = tmp_path_factory.mktemp("twin") / "twin.mp4"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("V2W_CACHE_DIR", str(out.parent / "cache"))
        assert main(["--checkpoint_dir", str(tiny_checkpoint), "--input_path", str(media["image"]), "--prompt",
                     "a bus", "--save_path", str(out), *FAST]) == 0
    return read_video(out)[0]


def generate(cli, media, checkpoint, name: str, *extra: str):
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", f"out/{name}.mp4", *extra,
              checkpoint=checkpoint)
    return run


LAYOUTS = {
    "upstream tree": (lambda tree, hub: tree, LAYOUT_UPSTREAM),
    "upstream model folder (the seed's default path)": (lambda tree, hub: tree / MODEL, LAYOUT_UPSTREAM),
    "hub cache": (lambda tree, hub: hub, LAYOUT_HUB),
    "hub repository folder": (lambda tree, hub: hub / "models--nvidia--Cosmos-Predict2-2B-Video2World", LAYOUT_HUB),
    "hub snapshot (a plain downloaded Hub folder)": (
        lambda tree, hub: next((hub / "models--nvidia--Cosmos-Predict2-2B-Video2World" / "snapshots").iterdir()),
        LAYOUT_DIFFUSERS),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_makes_the_twins_video(cli, media, upstream_tree, hub_cache, twin_frames, layout):
    where, expected = LAYOUTS[layout]
    run = generate(cli, media, where(upstream_tree, hub_cache), "video")
    assert run.code == 0, run.err
    assert np.array_equal(read_video(Path("out/video.mp4"))[0], twin_frames)
    model = read_json("out/video.json")["model"]
    assert model["layout"] == expected
    if expected == LAYOUT_UPSTREAM:
        assert model["dit_variant"] == "model-720p-16fps.pt"
        assert model["components"]["transformer"]["at"].endswith(f"{MODEL}/model-720p-16fps.pt")
        assert model["components"]["vae"]["at"].endswith(f"{MODEL}/tokenizer/tokenizer.pth")
        assert model["components"]["text_encoder"]["at"].endswith("google-t5/t5-11b")
        assert model["components"]["scheduler"]["layout"] == "builtin"


def test_the_runs_resolution_and_fps_choose_upstreams_dit(cli, media, upstream_tree, twin_frames, caplog):
    """--resolution 480 runs model-480p-16fps.pt (here another DiT than the 720p one, at the same debug size)."""
    caplog.set_level(logging.INFO, logger="v2w_runtime")
    run = generate(cli, media, upstream_tree, "480", "--resolution", "480")
    assert run.code == 0, run.err
    assert read_json("out/480.json")["model"]["dit_variant"] == "model-480p-16fps.pt"
    assert not np.array_equal(read_video(Path("out/480.mp4"))[0], twin_frames)
    assert f"DiT: {upstream_tree}/{MODEL}/model-480p-16fps.pt (the 480p 16 fps model" in caplog.text

    run = generate(cli, media, upstream_tree, "10fps", "--fps", "10")
    assert run.code == 2
    assert f"{MODEL}/model-720p-10fps.pt" in run.err
    assert "it has model-480p-16fps.pt, model-720p-16fps.pt" in run.err
    assert "transformer/config.json" in run.err  # where a diffusers folder keeps it
    assert not Path("out/10fps.mp4").exists()


def test_a_tree_missing_a_component_fails_before_anything_loads(cli, media, upstream_tree, tmp_path, monkeypatch):
    broken = tmp_path / "checkpoints"
    shutil.copytree(upstream_tree, broken)
    (broken / MODEL / "tokenizer" / "tokenizer.pth").unlink()
    shutil.rmtree(broken / "google-t5")
    loaded = []
    monkeypatch.setattr(runner, "build_guardrail", lambda config, device=None: loaded.append("guardrail"))
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--height", "64", "--width", "96",
              "--num_frames", "9", "--num_steps", "2", "--disable_prompt_refiner", checkpoint=broken,
              fast=False)  # the guardrail on
    assert run.code == 2
    assert loaded == []  # failed before the guardrail (or any model) loaded
    err = " ".join(run.err.split())
    assert f"checkpoint {broken} (upstream checkpoints/ tree) is missing" in err
    assert f"the VAE: looked for {MODEL}/tokenizer/tokenizer.pth in this upstream checkpoints/ tree" in err
    assert "vae/config.json with vae/diffusion_pytorch_model*.safetensors" in err
    assert "the T5 text encoder: looked for google-t5/t5-11b/config.json with google-t5/t5-11b/pytorch_model.bin" in err
    assert "text_encoder/config.json" in err


def test_a_diffusers_folder_missing_a_component_names_the_upstream_file_too(cli, media, tiny_checkpoint, tmp_path):
    broken = tmp_path / "folder"
    shutil.copytree(tiny_checkpoint, broken)
    shutil.rmtree(broken / "vae")
    run = generate(cli, media, broken, "x")
    assert run.code == 2
    assert "looked for vae/config.json" in run.err and f"{MODEL}/tokenizer/tokenizer.pth" in run.err


@pytest.mark.parametrize("damage", ["truncated DiT", "corrupt VAE", "truncated diffusers weights"])
def test_a_damaged_file_is_named(cli, media, upstream_tree, tiny_checkpoint, tmp_path, damage):
    if damage == "truncated diffusers weights":
        where = tmp_path / "folder"
        shutil.copytree(tiny_checkpoint, where)
        victim = where / "vae" / "diffusion_pytorch_model.safetensors"
    else:
        where = tmp_path / "checkpoints"
        shutil.copytree(upstream_tree, where)
        victim = where / MODEL / ("model-720p-16fps.pt" if damage == "truncated DiT" else "tokenizer/tokenizer.pth")
    data = victim.read_bytes()
    victim.write_bytes(bytes(reversed(data[:4096])) if damage == "corrupt VAE" else data[: len(data) * 2 // 3])
    run = generate(cli, media, where, "x")
    assert run.code == 2, run.err
    assert str(victim) in run.err
    assert ("truncated" if "truncated" in damage else "not a PyTorch checkpoint") in run.err
    assert "Traceback" not in run.err


def test_a_checkpoint_of_the_other_size_is_named(cli, media, tiny_checkpoint, tmp_path):
    """2B weights run as --model_size 14B: the size is read from the DiT (its shapes, memory-mapped; or the
    diffusers config) and named, before any other component loads."""
    tree = tmp_path / "checkpoints"
    folder = tree / "nvidia/Cosmos-Predict2-14B-Video2World"
    folder.mkdir(parents=True)
    torch.save({f"net.{k}": torch.zeros(1).expand(v.shape)
                for k, v in DIT.to_native(released_dit("2B").state_dict()).items()}, folder / "model-720p-16fps.pt")
    shutil.copytree(tiny_checkpoint / "tokenizer", folder / "tokenizer")  # any file: it is not reached
    (folder / "tokenizer" / "tokenizer.pth").write_bytes(b"unused")
    (tree / "google-t5/t5-11b").mkdir(parents=True)
    for name in ("config.json", "pytorch_model.bin", "tokenizer.json"):
        (tree / "google-t5/t5-11b" / name).write_text("{}")
    run = generate(cli, media, tree, "x", "--model_size", "14B")
    assert run.code == 2
    assert "model-720p-16fps.pt holds the 2B DiT (28 layers, 16 heads x 128) but the run's model size is 14B" in run.err

    folder = tmp_path / "diffusers"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    config.update(num_layers=36, num_attention_heads=40, attention_head_dim=128)
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    run = generate(cli, media, folder, "y")
    assert run.code == 2
    assert "holds the 14B DiT (36 layers, 40 heads x 128) but the run's model size is 2B" in run.err


def test_a_native_dit_path_makes_the_video_of_its_diffusers_twin(cli, media, tmp_path):
    """--dit_path: the same post-trained weights as upstream's native .pt and as diffusers safetensors."""
    from v2w_runtime.tiny import write_checkpoint
    from v2w_runtime.tiny.upstream import native_dit_state
    from v2w_runtime.tiny.video2world import build_transformer

    other = write_checkpoint(tmp_path / "other", seed=5)
    torch.save({"model": native_dit_state(build_transformer(51)), "iteration": 1000}, tmp_path / "iter_000001000.pt")
    a = generate(cli, media, None, "diffusers", "--dit_path", str(other / "transformer/diffusion_pytorch_model.safetensors"))
    b = generate(cli, media, None, "native", "--dit_path", str(tmp_path / "iter_000001000.pt"))
    assert a.code == b.code == 0, b.err
    assert np.array_equal(read_video(Path("out/diffusers.mp4"))[0], read_video(Path("out/native.mp4"))[0])
    dit = read_json("out/native.json")["model"]["dit"]
    assert dit["names"] == "native" and "weights under 'model'" in dit["read"]


def test_an_upstream_tree_gives_the_refiner_and_guardrail_their_defaults(cli, media, upstream_tree):
    """The tree's Cosmos-Reason1-7B (four shards, as released) refines the prompt; its Guardrail1 is the
    guardrail's default (here disabled, so only named)."""
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--save_path", "out/refined.mp4",
              "--height", "64", "--width", "96", "--num_frames", "9", "--num_steps", "2", "--disable_guardrail",
              "--refiner_max_new_tokens", "6", checkpoint=upstream_tree, fast=False)
    assert run.code == 0, run.err
    record = read_json("out/refined.json")
    assert record["settings"]["promptRefiner"]["checkpoint"] == f"{upstream_tree}/nvidia/Cosmos-Reason1-7B"
    assert record["settings"]["guardrail"]["checkpoint"] == f"{upstream_tree}/nvidia/Cosmos-Guardrail1"
    assert record["refined_prompt"]

    explicit = parse_config("--refiner_checkpoint", "elsewhere/reason1", checkpoint=str(upstream_tree))
    tree_config = explicit.with_upstream_tree(str(upstream_tree))
    assert tree_config.refiner_checkpoint == "elsewhere/reason1"
    assert tree_config.guardrail_checkpoint == f"{upstream_tree}/nvidia/Cosmos-Guardrail1"


def test_a_missing_refiner_fails_before_anything_loads(cli, media, upstream_tree, tmp_path):
    tree = tmp_path / "checkpoints"
    shutil.copytree(upstream_tree, tree, ignore=shutil.ignore_patterns("Cosmos-Reason1-7B"))
    run = cli("--input_path", str(media["image"]), "--prompt", "a bus", "--height", "64", "--width", "96",
              "--num_frames", "9", "--num_steps", "2", "--disable_guardrail", checkpoint=tree, fast=False)
    assert run.code == 2
    assert f"the prompt refiner's checkpoint: looked for the folder {tree}/nvidia/Cosmos-Reason1-7B" in run.err


def parse_config(*args: str, checkpoint: str):
    from v2w_runtime.cli import parse

    return parse("video2world", ["--checkpoint_dir", checkpoint, "--prompt", "a bus", *args])


def test_resolve_model_reads_no_weights(upstream_tree, hub_cache, monkeypatch):
    """Finding the components is a listing: no weight file is opened."""
    import v2w_runtime.checkpoints.files as files

    monkeypatch.setattr(files, "read_tensors", lambda *a: pytest.fail("a weight file was read"))
    for where in (upstream_tree, hub_cache):
        source = resolve_model(str(where)).require()
        assert set(source.components) == {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"}


@pytest.mark.s3
def test_an_upstream_tree_in_s3_downloads_only_what_the_run_needs(cli, media, s3_env, upstream_tree, twin_frames,
                                                                 tmp_path):
    client = s3_env.client()
    bucket = s3_env.make_bucket("tree")
    for path in sorted(p for p in upstream_tree.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"models/checkpoints/{path.relative_to(upstream_tree).as_posix()}")
    run = generate(cli, media, f"s3://{bucket}/models/checkpoints", "s3")
    assert run.code == 0, run.err
    assert np.array_equal(read_video(Path("out/s3.mp4"))[0], twin_frames)
    views = tmp_path / "cache" / "checkpoints" / "s3" / bucket / "models/checkpoints"
    fetched = sorted(p.relative_to(views).as_posix() for p in views.rglob("*") if p.is_file())
    assert fetched == ["google-t5/t5-11b/config.json", "google-t5/t5-11b/pytorch_model.bin",
                       "google-t5/t5-11b/tokenizer.json", f"{MODEL}/model-720p-16fps.pt",
                       f"{MODEL}/tokenizer/tokenizer.pth"]
    # the next run on this node finds them in the cache
    from v2w_runtime import storage

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage, "s3_download_into", lambda *a, **_: pytest.fail(f"downloaded {a[0]} again"))
        again = generate(cli, media, f"s3://{bucket}/models/checkpoints", "again")
    assert again.code == 0, again.err


def test_a_tree_on_a_claim(upstream_tree, tmp_path, monkeypatch):
    """pvc://checkpoints is the claim's root: the tree, its model folder, and the defaults in the claim's terms."""
    monkeypatch.setenv("V2W_PVC_ROOT", str(tmp_path / "pvc"))
    (tmp_path / "pvc").mkdir()
    (tmp_path / "pvc" / "checkpoints").symlink_to(upstream_tree)
    for uri in ("pvc://checkpoints", f"pvc://checkpoints/{MODEL}"):
        source = resolve_model(uri).require()
        assert source.layout == LAYOUT_UPSTREAM and source.upstream_root == "pvc://checkpoints"
        assert source.components["transformer"].uri == f"pvc://checkpoints/{MODEL}/model-720p-16fps.pt"
    config = parse_config(checkpoint="pvc://checkpoints").with_upstream_tree("pvc://checkpoints")
    assert config.refiner_checkpoint == config.critic_checkpoint == "pvc://checkpoints/nvidia/Cosmos-Reason1-7B"
    assert config.guardrail_checkpoint == "pvc://checkpoints/nvidia/Cosmos-Guardrail1"


def test_the_tree_defaults_rule_keeps_what_is_named():
    from v2w_api.run import RunConfig

    base = {"input": {"uri": "in.jpg", "prompt": "a bus"}, "output": {"uri": "s3://bucket/out"},
            "model": {"checkpoint": "s3://models/checkpoints"}}
    config = RunConfig.parse(base, "test")
    assert config.with_upstream_tree(None) is config
    tree = config.with_upstream_tree("s3://models/checkpoints/")
    assert tree.refiner_checkpoint == "s3://models/checkpoints/nvidia/Cosmos-Reason1-7B"
    assert tree.guardrail_checkpoint == "s3://models/checkpoints/nvidia/Cosmos-Guardrail1"
    named = RunConfig.parse({**base, "guardrail": {"checkpoint": "s3://models/guard"},
                             "bestOfN": {"critic": {"checkpoint": "s3://models/critic"}}}, "test")
    named = named.with_upstream_tree("s3://models/checkpoints")
    assert named.guardrail_checkpoint == "s3://models/guard" and named.critic_checkpoint == "s3://models/critic"
    assert named.refiner_checkpoint == "s3://models/checkpoints/nvidia/Cosmos-Reason1-7B"
