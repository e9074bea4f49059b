"""Tiny guardrail checkpoints in the release layout, shared by the guardrail tests (written once per
session, offline): upstream's checkpoint tree with nvidia/Cosmos-Guardrail1 and meta-llama/Llama-Guard-3-8B."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def release_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint tree root holding the tiny release: Llama Guard blocks prompts with the marker word, the
    video safety filter blocks mostly bright red frames, RetinaFace finds the astronaut's face."""
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail_release

    return write_tiny_guardrail_release(tmp_path_factory.mktemp("checkpoints"), seed=3)


@pytest.fixture(scope="session")
def guardrail1(release_tree: Path) -> Path:
    """The Cosmos-Guardrail1 folder of the tree."""
    return release_tree / "nvidia" / "Cosmos-Guardrail1"


@pytest.fixture(scope="session")
def llama_guard_dir(release_tree: Path) -> Path:
    return release_tree / "meta-llama" / "Llama-Guard-3-8B"
