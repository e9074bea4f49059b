"""The generated CRDs on a real kube-apiserver: examples accepted, bad specs refused naming the field,
server defaults equal the pydantic defaults, the spec frozen while running, `kubectl get` columns."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from v2w_api import ALL_KINDS

from tests.api.cases import EXAMPLES, INVALID, Case, load_example

pytestmark = pytest.mark.cluster


@pytest.fixture
def namespace(crds_applied):
    name = f"t-{uuid.uuid4().hex[:8]}"
    crds_applied.kubectl("create", "namespace", name)
    yield name
    crds_applied.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(kube, namespace: str, doc: dict, check: bool = True):
    return kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=check)


def get(kube, namespace: str, kind: str, name: str) -> dict:
    return json.loads(kube.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout)


def test_examples_are_accepted_and_listed(crds_applied, namespace):
    kube = crds_applied
    for path in sorted(EXAMPLES.glob("*.yaml")):
        apply(kube, namespace, load_example(path.name))
    table = kube.kubectl("get", "v2wjobs", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "PROGRESS", "GPUS", "AGE"], table
    assert "bus-terminal" in table and "city-batch" in table
    bon = kube.kubectl("get", "bonjobs", "-n", namespace).stdout
    assert bon.splitlines()[0].split() == ["NAME", "PHASE", "PROGRESS", "GPUS", "BEST", "AGE"]
    assert "bus-terminal-best-of-5" in bon
    both = kube.kubectl("get", "video2world", "-n", namespace, "-o", "name").stdout.split()
    assert "video2worldjob.video2world.io/bus-terminal" in both
    assert "bestofnjob.video2world.io/bus-terminal-best-of-5" in both
    wide = kube.kubectl("get", "v2wjob", "-n", namespace, "-o", "wide").stdout
    assert "MODEL" in wide.splitlines()[0] and "14B" in wide


def drop_empty(node):
    """An empty map or list means the same as an absent one."""
    if isinstance(node, dict):
        return {k: drop_empty(v) for k, v in node.items() if v not in ({}, [])}
    if isinstance(node, list):
        return [drop_empty(v) for v in node]
    return node


def test_server_defaults_equal_pydantic_defaults(crds_applied, namespace):
    kube = crds_applied
    for path in sorted(EXAMPLES.glob("*.yaml")):
        doc = load_example(path.name)
        apply(kube, namespace, doc)
        stored = get(kube, namespace, doc["kind"], doc["metadata"]["name"])
        parsed = ALL_KINDS[doc["kind"]][1].model_validate(doc)
        assert drop_empty(stored["spec"]) == drop_empty(parsed.spec.to_wire()), path.name


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_spec_is_refused_at_apply_naming_the_field(crds_applied, namespace, case: Case):
    result = apply(crds_applied, namespace, case.manifest(), check=False)
    assert result.returncode != 0, f"{case.id} was accepted"
    message = result.stderr
    assert case.field in message, f"{case.id}: {message}"
    # Readable: no raw regex, and no "rules were not checked" line (enums and required fields are rules too)
    assert "should match" not in message and "rules were not checked" not in message, message
    if case.message:
        assert case.message in message, message


def test_a_name_the_pytorchjob_controller_would_refuse_is_refused_at_apply(crds_applied, namespace):
    doc = load_example("video2world-job.yaml")
    doc["metadata"]["name"] = "bus.terminal"
    refused = apply(crds_applied, namespace, doc, check=False)
    assert refused.returncode != 0 and "metadata.name must not contain '.'" in refused.stderr, refused.stderr
    doc["metadata"]["name"] = "x" * 49
    refused = apply(crds_applied, namespace, doc, check=False)
    assert refused.returncode != 0 and "at most 48 characters" in refused.stderr, refused.stderr


@pytest.mark.parametrize("child", [{"pytorchJobName": "v2w-bus-terminal"},
                                   {"childKind": "TrainJob", "childName": "v2w-bus-terminal"}],
                         ids=["pytorchJobName", "childName"])
def test_spec_is_frozen_once_the_child_exists_except_suspend(crds_applied, namespace, child):
    """Once the status names the child (childName; pytorchJobName in statuses of older releases)."""
    kube = crds_applied
    doc = load_example("video2world-job.yaml")
    doc["metadata"]["name"] = f"frozen-{len(child)}"
    apply(kube, namespace, doc)
    name = doc["metadata"]["name"]
    # Before the child exists (e.g. waiting for its Secret): still editable.
    kube.kubectl("patch", "-n", namespace, "v2wjob", name, "--type=merge", "-p", '{"spec":{"generation":{"seed":7}}}')
    kube.kubectl("patch", "-n", namespace, "v2wjob", name, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {"phase": "Suspended", **child}}))
    refused = kube.kubectl("patch", "-n", namespace, "v2wjob", name, "--type=merge",
                           "-p", '{"spec":{"generation":{"seed":8}}}', check=False)
    assert refused.returncode != 0 and "spec is immutable" in refused.stderr, refused.stderr
    kube.kubectl("patch", "-n", namespace, "v2wjob", name, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    stored = get(kube, namespace, "v2wjob", name)
    assert stored["spec"]["suspend"] is True and stored["spec"]["generation"]["seed"] == 7


def test_explain_teaches_the_api(crds_applied):
    out = crds_applied.kubectl("explain", "video2worldjob.spec.parallelism").stdout
    assert "contextParallelSize" in out and "GPUs that share one video" in out


def test_server_and_models_read_a_blank_prompt_alike(crds_applied, namespace):
    from tests.api.test_models import BLANK_PROMPTS, NOT_BLANK_PROMPTS

    for i, prompt in enumerate(BLANK_PROMPTS + NOT_BLANK_PROMPTS):
        doc = load_example("video2world-job.yaml")
        doc["metadata"]["name"] = f"prompt-{i}"
        doc["spec"]["input"]["prompt"] = prompt
        result = crds_applied.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                      input=json.dumps(doc), check=False)
        if prompt in BLANK_PROMPTS:
            assert result.returncode != 0, ascii(prompt)
            assert "spec.input.prompt: Invalid value" in result.stderr, result.stderr
            assert "must not be empty or only white space" in result.stderr, result.stderr
        else:
            assert result.returncode == 0, (ascii(prompt), result.stderr)


def test_kubectl_apply_f_examples_applies_every_file(crds_applied):
    """`kubectl apply -f examples/`, as a new user types it: every file there is a manifest that applies
    (the seed's batch JSON lives under assets/video2world/, not here)."""
    import stack

    kube = crds_applied
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(stack.pytorchjob_crd()))
    stack.wait_established(kube, "pytorchjobs.kubeflow.org")
    result = kube.kubectl("apply", "--dry-run=server", "-f", str(EXAMPLES), check=False)
    assert result.returncode == 0, result.stderr
    manifests = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    names = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in manifests}
    assert all(f"/{name} created (server dry run)" in result.stdout or f"/{name} configured (server dry run)"
               in result.stdout or f"/{name} unchanged (server dry run)" in result.stdout for name in names), result.stdout
