"""Fixtures of the chart tests: the real helm binary with a private home."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.helm import Helm


@pytest.fixture(scope="session")
def helm(localstack_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = localstack_bin / "helm"
    assert binary.exists(), f"{binary} missing: hack/localstack/build.sh builds it"
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))
