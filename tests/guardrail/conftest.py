"""Tiny guardrail checkpoints shared by the guardrail tests (written once per session, offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_guardrails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints keyed "<text verdict>-<video verdict>": safe-safe, unsafe-safe, safe-unsafe."""
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail

    root = tmp_path_factory.mktemp("guardrails")
    out = {}
    for text, video in (("safe", "safe"), ("unsafe", "safe"), ("safe", "unsafe")):
        out[f"{text}-{video}"] = write_tiny_guardrail(root / f"{text}-{video}", seed=3, text_verdict=text, video_verdict=video)
    return out
