"""`python -m v2w_runtime.checkpoints verify DIR` and `--verify_only`: a tree checked before any GPU time is
spent, without loading a weight and without writing a file."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from v2w_runtime.checkpoints.__main__ import main as checkpoints_main
from v2w_runtime.tiny.guardrail import write_tiny_guardrail_release
from v2w_runtime.tiny.upstream import write_hub_cache, write_upstream_tree

MODEL = "nvidia/Cosmos-Predict2-2B-Video2World"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_upstream_tree(tmp_path_factory.mktemp("verify") / "checkpoints", seed=0,
                               variants=[(720, 16), (480, 10)], guardrail=write_tiny_guardrail_release)


def verify(capsys, *args: str) -> tuple[int, str]:
    code = checkpoints_main(["verify", *args])
    return code, capsys.readouterr().out


def test_a_complete_tree_is_reported_component_by_component(tree, capsys):
    code, out = verify(capsys, str(tree))
    assert code == 0, out
    assert out.startswith(f"checkpoint {tree}: upstream checkpoints/ tree")
    lines = out.splitlines()
    dit = next(line for line in lines if "model 2B DiT (transformer)" in line)
    assert dit.split()[0] == "ok" and f"{MODEL}/model-720p-16fps.pt (native, 1 file(s))" in dit and "KiB]" in dit
    assert any("model 2B VAE" in line and "tokenizer/tokenizer.pth (native" in line for line in lines)
    assert any("T5 text encoder" in line and "google-t5/t5-11b (hf" in line for line in lines)
    assert any("scheduler: built in" in line for line in lines)
    assert any("DiT size: 2 layers, 2 heads x 16 (not a released size" in line for line in lines)
    assert any("prompt refiner and critic (Cosmos-Reason1)" in line and "file(s))" in line for line in lines)
    guard = next(line for line in lines if " guardrail: " in line)
    assert guard.split()[0] == "ok" and f"{tree}/nvidia/Cosmos-Guardrail1 (Cosmos-Guardrail1, guardrail1 layout)" in guard
    assert f"Llama Guard 3 at {tree}/meta-llama/Llama-Guard-3-8B" in guard
    assert "DiT variants in nvidia/Cosmos-Predict2-2B-Video2World/: model-480p-10fps.pt, model-720p-16fps.pt" in out
    report = json.loads(verify(capsys, str(tree), "--json")[1])
    assert report["ok"] and all(c["ok"] for c in report["checks"])


def test_what_is_missing_is_named_in_each_layout(tree, tmp_path, capsys):
    broken = tmp_path / "checkpoints"
    shutil.copytree(tree, broken, ignore=shutil.ignore_patterns("tokenizer.pth", "Llama-Guard-3-8B"))
    code, out = verify(capsys, str(broken), "--resolution", "480")
    assert code == 2
    out = " ".join(out.split())
    assert (f"MISSING model 2B DiT (transformer): looked for {MODEL}/model-480p-16fps.pt in this upstream "
            "checkpoints/ tree (it has model-480p-10fps.pt, model-720p-16fps.pt") in out
    assert f"MISSING model 2B VAE: looked for {MODEL}/tokenizer/tokenizer.pth" in out
    assert "vae/config.json with vae/diffusion_pytorch_model*.safetensors" in out
    assert (f"MISSING guardrail: looked for NVIDIA's release at {broken}/nvidia/Cosmos-Guardrail1: Llama Guard 3 "
            f"(meta-llama/Llama-Guard-3-8B) not found: looked for {broken}/meta-llama/Llama-Guard-3-8B/") in out
    assert "NOT USABLE" in out
    code, out = verify(capsys, str(broken), "--resolution", "480", "--fps", "10", "--disable_guardrail")
    assert code == 2 and "model-480p-10fps.pt (native" in out and "Llama-Guard" not in out


def test_a_damaged_file_is_named(tree, tmp_path, capsys):
    broken = tmp_path / "checkpoints"
    shutil.copytree(tree, broken)
    shard = broken / "nvidia/Cosmos-Reason1-7B/model-00002-of-00004.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    code, out = verify(capsys, str(broken))
    assert code == 2
    assert f"PROBLEM  prompt refiner and critic (Cosmos-Reason1): {shard} is truncated" in out


def test_md5_sums_from_a_table_the_user_gives_and_from_upstreams(tree, tmp_path, capsys):
    files = [f"{MODEL}/model-720p-16fps.pt", f"{MODEL}/tokenizer/tokenizer.pth", "google-t5/t5-11b/pytorch_model.bin"]
    sums = {f: hashlib.md5((tree / f).read_bytes()).hexdigest() for f in files}
    (tmp_path / "good.md5").write_text("".join(f"{s}  ./{f}\n" for f, s in sums.items()))
    code, out = verify(capsys, str(tree), "--md5", str(tmp_path / "good.md5"))
    assert code == 0, out
    assert out.count("MD5 ") == 3 and f"ok       MD5 {MODEL}/model-720p-16fps.pt: matches the table" in out
    (tmp_path / "bad.json").write_text(json.dumps({**sums, files[1]: "0" * 32}))
    code, out = verify(capsys, str(tree), "--md5", str(tmp_path / "bad.json"))
    assert code == 2
    assert f"PROBLEM  MD5 {files[1]}: {sums[files[1]]} where the table {tmp_path / 'bad.json'} says {'0' * 32}" in out
    # upstream's own table: these tiny files are not the release's
    code, out = verify(capsys, str(tree), "--md5")
    assert code == 2
    assert "where upstream's MD5 table (cosmos-predict2 scripts/download_checkpoints.py) says " \
           "66157e5aece452a5a121cbb6fe0580ac" in out


def test_a_hub_cache_and_a_diffusers_folder(tiny_checkpoint, tmp_path, capsys):
    write_hub_cache(tmp_path / "hub", seed=0)
    code, out = verify(capsys, str(tmp_path / "hub"))
    assert code == 0, out
    assert "Hugging Face cache snapshot" in out and "revision" in out and "snapshots/" in out
    code, out = verify(capsys, str(tiny_checkpoint), "--model_size", "14B")
    assert code == 0 and "diffusers folder" in out and "model 14B DiT (transformer)" in out
    code, out = verify(capsys, str(tmp_path / "nothing"))
    assert code == 2 and f"looked for {tmp_path / 'nothing'}" in out


def test_the_module_runs_as_a_program(tree):
    proc = subprocess.run([sys.executable, "-m", "v2w_runtime.checkpoints", "verify", str(tree), "--disable_guardrail"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "OK:" in proc.stdout


# ------------------------------------------------------------------------------------- --verify_only


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if a model's weights are loaded."""
    import diffusers
    import transformers

    def refuse(*args, **kwargs):
        pytest.fail("--verify_only loaded weights")

    for cls in (diffusers.CosmosTransformer3DModel, diffusers.AutoencoderKLWan, transformers.T5EncoderModel,
                transformers.Qwen2_5_VLForConditionalGeneration):
        monkeypatch.setattr(cls, "from_pretrained", classmethod(refuse))
    import v2w_runtime.checkpoints.load as load

    monkeypatch.setattr(load, "load_components", refuse)


@pytest.mark.parametrize("program", ["video2world", "bestofn"])
def test_verify_only_checks_what_the_run_would_load(program, tree, media, no_weights, capsys):
    import importlib

    main = importlib.import_module(f"v2w_runtime.{program}").main
    args = ["--checkpoint_dir", str(tree), "--input_path", str(media["image"]), "--prompt", "a bus",
            "--save_path", "out/x" + (".mp4" if program == "video2world" else ""), "--verify_only"]
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"checkpoints of this {program} run (model: upstream checkpoints/ tree)" in out
    assert f"prompt refiner: {tree}/nvidia/Cosmos-Reason1-7B" in out  # the tree's, by default
    assert f"guardrail: {tree}/nvidia/Cosmos-Guardrail1" in out
    assert ("critic: " in out) == (program == "bestofn")
    assert not Path("out").exists()  # nothing written


def test_verify_only_exits_2_naming_what_is_missing(tree, media, tmp_path, no_weights, capsys):
    from v2w_runtime.video2world import main

    broken = tmp_path / "checkpoints"
    shutil.copytree(tree, broken, ignore=shutil.ignore_patterns("Cosmos-Guardrail1"))
    code = main(["--checkpoint_dir", str(broken), "--input_path", str(media["image"]), "--prompt", "a bus",
                 "--dit_path", str(tmp_path / "nothing.pt"), "--verify_only"])
    out = capsys.readouterr().out
    assert code == 2
    assert f"MISSING  guardrail: looked for NVIDIA's release at {broken}/nvidia/Cosmos-Guardrail1" in out
    assert "MISSING  --dit_path: looked for" in out and "nothing.pt" in out
    code = main(["--checkpoint_dir", str(broken), "--input_path", str(media["image"]), "--prompt", "a bus",
                 "--disable_guardrail", "--verify_only"])
    assert code == 0, capsys.readouterr().out
