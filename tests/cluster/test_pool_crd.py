"""The Video2WorldPool CRD on a real kube-apiserver: accepted with the jobs' defaults, `kubectl get` columns,
the scale subresource (`kubectl scale`), and the refusals a worker's one-pod layout needs."""

from __future__ import annotations

import json

import pytest

from tests.api.cases import load_example
from tests.cluster.test_crds_on_apiserver import apply, namespace  # noqa: F401  (namespace: a fixture)

pytestmark = pytest.mark.cluster


def test_pool_is_listed_scaled_and_refused_when_it_cannot_be_one_pod(crds_applied, namespace):
    kube = crds_applied
    pool = load_example("video2world-pool.yaml")
    apply(kube, namespace, pool)
    stored = json.loads(kube.kubectl("get", "-n", namespace, "v2wpool", "fast-480p", "-o", "json").stdout)
    assert stored["spec"]["guardrail"]["enabled"] is True and stored["spec"]["performance"]["compile"] is True
    header = kube.kubectl("get", "-n", namespace, "v2wpools").stdout.splitlines()[0].split()
    assert header == ["NAME", "REPLICAS", "READY", "BUSY", "QUEUE", "MODEL", "AGE"]
    assert "video2worldpool.video2world.io/fast-480p" in kube.kubectl(
        "get", "-n", namespace, "video2world", "-o", "name").stdout.split()

    kube.kubectl("scale", "-n", namespace, "v2wpool/fast-480p", "--replicas=0")
    scaled = json.loads(kube.kubectl("get", "-n", namespace, "v2wpool", "fast-480p", "-o", "json").stdout)
    assert scaled["spec"]["replicas"] == 0

    for change, words in (({"parallelism": {"gpus": 16, "gpusPerNode": 8}}, "one pod"),
                          ({"scheduling": {"queueName": "gpus"}}, "Kueue"),
                          ({"scheduling": {"serviceAccountName": "mine"}}, "own ServiceAccount"),
                          ({"replicas": -1}, "replicas")):
        bad = json.loads(json.dumps(pool))
        bad["metadata"]["name"] = "bad"
        bad["spec"].update(change)
        result = apply(kube, namespace, bad, check=False)
        assert result.returncode != 0 and words in result.stderr, (change, result.stderr)
