"""Fixtures of the chart tests: the real helm (and kubectl) of the local stack, with a private home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chart.helm import Helm


def cached_bin_dir() -> Path:
    """Where hack/localstack/build.sh puts its binaries (the same rule as the script)."""
    cache = os.environ.get("V2W_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "video2world")
    return Path(cache) / "localstack" / "bin"


@pytest.fixture(scope="session")
def client_bin(request: pytest.FixtureRequest) -> Path:
    """The folder with helm and kubectl. Tests that need no control plane do not wait for the whole stack
    to build when these two are already in the cache."""
    folder = cached_bin_dir()
    if all((folder / name).exists() for name in ("helm", "kubectl")):
        return folder
    return request.getfixturevalue("localstack_bin")


@pytest.fixture(scope="session")
def helm(client_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = client_bin / "helm"
    assert binary.exists(), f"{binary} missing: hack/localstack/build.sh builds it"
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))
