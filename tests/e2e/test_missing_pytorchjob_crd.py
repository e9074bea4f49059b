"""A cluster without the Kubeflow training-operator: jobs wait with a condition that says what to
install, and proceed once the PyTorchJob CRD appears. Uses a control plane of its own, so the shared
one keeps its PyTorchJob CRD."""

from __future__ import annotations

import json
import time

import pytest
import yaml

import stack
from tests.api.cases import load_example

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def accepted(plane, ns: str) -> dict | None:
    out = plane.kubectl("get", "v2wjob", "bus-terminal", "-n", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    conditions = (json.loads(out.stdout).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Accepted"), None)


def wait(predicate, timeout: float, what: str, operator):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout}s\noperator log:\n{operator.log_tail(30)}")


def test_missing_pytorchjob_crd_is_reported_then_recovered(localstack_bin, tmp_path):
    plane = stack.ControlPlane(localstack_bin, tmp_path / "kube").start()
    operator = None
    try:
        plane.kubectl("apply", "--server-side", "-f", str(stack.HERE.parents[1] / "crds"))
        for crd in ("video2worldjobs.video2world.io", "bestofnjobs.video2world.io"):
            stack.wait_established(plane, crd)
        plane.kubectl("create", "namespace", "team")
        plane.kubectl("create", "secret", "generic", "v2w-s3", "-n", "team",
                      "--from-literal=AWS_ACCESS_KEY_ID=id", "--from-literal=AWS_SECRET_ACCESS_KEY=key")
        operator = stack.start_operator(plane.kubeconfig, {"V2W_METRICS_PORT": "0"}, tmp_path / "operator.log")
        plane.kubectl("apply", "-n", "team", "-f", "-", input=yaml.safe_dump(load_example("video2world-job.yaml")))

        cond = wait(lambda: (c := accepted(plane, "team")) and c["reason"] == "ChildCRDMissing" and c,
                    90, "Accepted=False/ChildCRDMissing", operator)
        assert cond["status"] == "False" and "training-operator" in cond["message"]
        assert operator.alive()

        plane.kubectl("apply", "--server-side", "-f", str(stack.pytorchjob_crd()))
        stack.wait_established(plane, "pytorchjobs.kubeflow.org")
        cond = wait(lambda: (c := accepted(plane, "team")) and c["status"] == "True" and c, 120,
                    "Accepted=True once the CRD exists", operator)
        assert cond["reason"] == "ChildCreated"
        assert plane.kubectl("get", "pytorchjob", "v2w-bus-terminal", "-n", "team", check=False).returncode == 0
    finally:
        if operator:
            operator.stop()
        plane.stop()
