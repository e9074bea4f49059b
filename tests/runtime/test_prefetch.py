"""The launcher warms the node while its workers start (prefetch.py): the run's model files fetched into the
node's cache and read once, exactly the bytes the load will read; from S3 the workers' load then downloads
nothing more; never in the way (other programs, V2W_PREFETCH=0, too little memory, a missing model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2w_runtime import prefetch
from v2w_runtime.checkpoints import load_components
from v2w_runtime.checkpoints.load import _encoder_ranges
from v2w_runtime.cli import parse
from v2w_runtime.tiny.upstream import write_upstream_tree

from .test_s3 import upload_tree

MODEL = "nvidia/Cosmos-Predict2-2B-Video2World"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_upstream_tree(tmp_path_factory.mktemp("upstream") / "checkpoints", seed=0)


def _args(checkpoint: str, tmp_path: Path) -> list[str]:
    return ["--checkpoint_dir", checkpoint, "--input_path", str(tmp_path / "in.png"), "--prompt", "A tram.",
            "--save_path", str(tmp_path / "out.mp4"), "--resolution", "720"]


def _expected_bytes(tree: Path) -> int:
    """What the load reads: the DiT variant and the VAE whole, of t5-11b's safetensors the encoder's ranges."""
    model = tree / MODEL
    total = (model / "model-720p-16fps.pt").stat().st_size + (model / "tokenizer" / "tokenizer.pth").stat().st_size
    for path in sorted((tree / "google-t5" / "t5-11b").rglob("*")):
        if path.suffix == ".safetensors":
            total += sum(end - start for start, end in _encoder_ranges(path))
        elif path.suffix in (".bin", ".pt", ".pth"):
            total += path.stat().st_size
    return total


def test_reads_exactly_what_the_load_reads(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    done = prefetch.warm(parse("video2world", _args(str(tree), tmp_path)))
    assert done["bytes"] == _expected_bytes(tree) > 0
    assert done["fetch_s"] >= 0 and done["read_s"] >= 0


def test_too_little_memory_reads_nothing(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(prefetch, "memory_budget", lambda: 1024)
    assert prefetch.warm(parse("video2world", _args(str(tree), tmp_path)))["bytes"] == 0


def test_from_s3_the_load_downloads_nothing_more(s3_env, tree, tmp_path, monkeypatch):
    bucket = s3_env.make_bucket("prefetch")
    upload_tree(s3_env.client(), bucket, tree, "checkpoints")
    cache = tmp_path / "cache"
    monkeypatch.setenv("V2W_CACHE_DIR", str(cache))
    uri = f"s3://{bucket}/checkpoints"
    done = prefetch.warm(parse("video2world", _args(uri, tmp_path)))
    assert done["bytes"] == _expected_bytes(tree)
    log = cache / "checkpoints" / "downloads.log"
    downloads = [json.loads(line) for line in log.read_text().splitlines()]
    assert downloads
    load_components(uri, device="cpu")
    assert [json.loads(line) for line in log.read_text().splitlines()] == downloads  # no second download


def test_only_for_the_runtimes_programs_and_never_when_turned_off(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    assert prefetch.start("some.other.module", []) is None
    monkeypatch.setenv(prefetch.ENV, "0")
    assert prefetch.start("v2w_runtime.video2world", _args(str(tree), tmp_path)) is None
    monkeypatch.delenv(prefetch.ENV)
    thread = prefetch.start("v2w_runtime.video2world", _args(str(tree), tmp_path))
    assert thread is not None and thread.daemon
    thread.join(timeout=120)
    assert not thread.is_alive()


def test_a_missing_model_is_left_to_the_runner(tmp_path, monkeypatch, caplog):
    """No exception escapes the thread: the runner finds the same problem and reports it with its exit code."""
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path / "cache"))
    with caplog.at_level("INFO", logger="v2w_runtime.prefetch"):
        thread = prefetch.start("v2w_runtime.video2world", _args(str(tmp_path / "nothing-here"), tmp_path))
        thread.join(timeout=60)
    assert any("prefetch: skipped" in r.getMessage() and "nothing-here" in r.getMessage() for r in caplog.records)


def test_the_launcher_starts_it_with_the_workers_program_and_arguments(monkeypatch):
    """`v2w-launch … -m v2w_runtime.video2world ARGS` warms for exactly that run, before torchrun starts the workers."""
    import torch.distributed.run

    from v2w_runtime import launch

    calls: list[tuple] = []
    monkeypatch.setattr(prefetch, "start", lambda module, args: calls.append(("prefetch", module, args)))
    monkeypatch.setattr(torch.distributed.run, "run", lambda args: calls.append(("torchrun", args.training_script)))
    argv = ["--standalone", "--nproc_per_node", "1", "-m", "v2w_runtime.video2world", "--config", "run.yaml"]
    assert launch.main(argv) == 0
    assert calls == [("prefetch", "v2w_runtime.video2world", ["--config", "run.yaml"]),
                     ("torchrun", "v2w_runtime.video2world")]
