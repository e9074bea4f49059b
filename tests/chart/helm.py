"""Running the real `helm` binary of the local stack on our chart, and reading what it renders."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "video2world-operator"


@dataclass
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str, check: bool = True, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        # Keep helm's own cache, config and plugins out of the user's home.
        env.update(
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
        )
        argv = [str(self.binary), *args]
        if kubeconfig is not None:
            argv.append(f"--kubeconfig={kubeconfig}")
        result = subprocess.run(argv, env=env, text=True, capture_output=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def values_file(self, values: dict[str, Any]) -> Path:
        path = self.home / f"values-{abs(hash(yaml.safe_dump(values, sort_keys=True)))}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def template(self, values: dict[str, Any] | None = None, *, release: str = "v2w",
                 namespace: str = "v2w-system", check: bool = True, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        args = ["template", release, str(CHART), "--namespace", namespace, *extra]
        if values:
            args += ["-f", str(self.values_file(values))]
        return self.run(*args, check=check)

    def render(self, values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """The rendered manifests (without CRDs), as dicts."""
        text = self.template(values, **kwargs).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    matches = [
        d for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, found {len(matches)}"
    return matches[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)
