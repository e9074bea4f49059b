"""The chart's ValidatingAdmissionPolicy on the real kube-apiserver: every case of tests/policy_cases.py is
applied (server-side dry run) and refused exactly when the operator's Python refuses it, with the same message;
the rendered CEL holds the Python module's ranges and patterns; the operator's own patches never meet it."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml

from tests.chart.helm import Helm, find
from tests.policy_cases import CASES, VALUES, Case
from v2w_api import policy

pytestmark = pytest.mark.cluster

FULL = "v2w-video2world-operator"
DENIED = "denied request: "


def rendered_policy(helm: Helm, values: dict, release: str = "v2w") -> list[dict]:
    return [d for d in helm.render(values, release=release) if d["kind"].startswith("ValidatingAdmissionPolicy")]


def test_the_cel_holds_the_python_ranges_and_patterns(helm: Helm):
    vap = find(rendered_policy(helm, VALUES), "ValidatingAdmissionPolicy", f"{FULL}-policy")
    text = json.dumps(vap)
    for cidr, label in policy.REFUSED_NETWORKS:
        assert json.dumps(f"['{cidr}', '{label}']")[1:-1] in text, cidr
    for pattern in (policy.HTTP_URI_SHAPE, policy.HOST_NAME, policy.NUMERIC_HOST, policy.REFUSED_NAMES):
        assert json.dumps(f"r'{pattern}'")[1:-1] in text, pattern
    assert vap["spec"]["matchConditions"] == [
        {"name": "spec-written", "expression": "request.operation == 'CREATE' || object.spec != oldObject.spec"}]


def test_off_by_value_and_scoped_to_the_watched_namespaces(helm: Helm):
    assert rendered_policy(helm, {"policy": {"admission": {"enabled": False}}}) == []
    binding = find(rendered_policy(helm, {"watchNamespaces": ["team-a"]}), "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]
    assert "matchResources" not in find(rendered_policy(helm, {}), "ValidatingAdmissionPolicyBinding")["spec"]


@pytest.fixture(scope="module")
def guarded_namespace(crds_applied, helm: Helm):
    """A namespace under the table's policy (the binding names only it, so other tests' jobs never meet it)."""
    kube = crds_applied
    ns = f"policy-{uuid.uuid4().hex[:6]}"
    release = f"p{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    # A job from before the policy, which the policy would refuse.
    legacy = next(c for c in CASES if c.name == "input http://169.254.169.254/latest/meta-data/")
    assert apply(kube, ns, legacy, "legacy", dry_run=False).returncode == 0
    docs = rendered_policy(helm, {**VALUES, "watchNamespaces": [ns]}, release)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    probe = next(c for c in CASES if c.refused)
    deadline = time.monotonic() + 60
    while apply(kube, ns, probe, "probe").returncode == 0:  # the API server loads a new policy within seconds
        assert time.monotonic() < deadline, "the admission policy never took effect"
        time.sleep(0.5)
    yield kube, ns
    kube.kubectl("delete", "-f", "-", input=yaml.safe_dump_all(docs), check=False)
    kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def apply(kube, ns: str, case: Case, name: str, dry_run: bool = True):
    args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return kube.kubectl(*args, input=yaml.safe_dump(case.document(ns, name)), check=False)


def refusal(result) -> str | None:
    if result.returncode == 0:
        return None
    assert DENIED in result.stderr, result.stderr  # refused by the policy, not by the CRD's schema
    return result.stderr.split(DENIED, 1)[1].strip()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_api_server_refuses_what_the_operator_refuses(guarded_namespace, case: Case):
    kube, ns = guarded_namespace
    expected = case.python_message()
    assert (expected is not None) == case.refused, expected
    assert refusal(apply(kube, ns, case, f"c-{uuid.uuid4().hex[:8]}")) == expected
    for field in case.fields:
        assert f"{field}: " in expected


def test_a_spec_changed_to_a_refused_one_is_refused(guarded_namespace):
    kube, ns = guarded_namespace
    fine = next(c for c in CASES if c.name == "input https://example.com/in.jpg")
    name = f"u-{uuid.uuid4().hex[:6]}"
    assert apply(kube, ns, fine, name, dry_run=False).returncode == 0
    patched = kube.kubectl("patch", "-n", ns, f"v2wjob/{name}", "--type=merge", "-p",
                           json.dumps({"spec": {"input": {"uri": "http://169.254.169.254/latest"}}}), check=False)
    assert refusal(patched) == ("spec.input.uri: host 169.254.169.254 is in the refused range 169.254.0.0/16 "
                                "(link-local, cloud metadata): allow it with policy.inputs.allowedCIDRs")
    kube.kubectl("delete", "-n", ns, f"v2wjob/{name}")


def test_a_job_older_than_the_policy_still_takes_the_operators_patches(guarded_namespace):
    """kopf's annotations and finalizers change no spec, so they pass even where the spec would not; the operator
    itself then fails such a job with PolicyDenied (before it has a PyTorchJob) or leaves it running."""
    kube, ns = guarded_namespace
    kube.kubectl("annotate", "-n", ns, "v2wjob/legacy", "video2world.io/last-handled-configuration=x")
    kube.kubectl("patch", "-n", ns, "v2wjob/legacy", "--type=merge", "-p",
                 json.dumps({"metadata": {"finalizers": ["video2world.io/cleanup"]}}))
    kube.kubectl("patch", "-n", ns, "v2wjob/legacy", "--type=merge", "-p", json.dumps({"metadata": {"finalizers": None}}))
    suspended = kube.kubectl("patch", "-n", ns, "v2wjob/legacy", "--type=merge", "-p",
                             json.dumps({"spec": {"suspend": True}}), check=False)
    assert "spec.input.uri: host 169.254.169.254" in (refusal(suspended) or "")
