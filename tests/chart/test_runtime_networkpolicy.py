"""The chart's optional NetworkPolicy for the runtime pods: what it renders, that it selects exactly the pods
the operator's PyTorchJobs make, and that the real API server takes it."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from tests.api.cases import load_example
from tests.chart.helm import CHART, Helm, find, kinds
from v2w_operator.backends import pytorchjob
from v2w_api import KINDS
from v2w_operator.config import OperatorConfig

NAME = "v2w-video2world-operator-runtime"
ON = {"runtimeNetworkPolicy": {"enabled": True, "namespaces": ["team-a", "team-b"]}}


def matches(selector: dict, labels: dict[str, str]) -> bool:
    """A LabelSelector's meaning (matchLabels and the matchExpressions operators the chart uses)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"Exists": key in labels, "DoesNotExist": key not in labels,
              "In": labels.get(key) in values, "NotIn": labels.get(key) not in values}[op]
        if not ok:
            return False
    return True


def runtime_pod_labels() -> list[dict[str, str]]:
    """The labels of every pod template the operator builds: both kinds, multi-node (Master and Worker)."""
    config = OperatorConfig(checkpoint_2b="s3://models/2b", refiner_checkpoint="s3://models/reason1",
                            guardrail_checkpoint="s3://models/guard")
    found = []
    for example in ("video2world-job.yaml", "bestofn-job.yaml"):
        doc = load_example(example)
        doc["spec"]["parallelism"] = {"gpus": 2, "gpusPerNode": 1}  # two pods
        spec = KINDS[doc["kind"]][1].model_validate(doc).spec
        pj = pytorchjob.build(doc["kind"], "some-job", "team-a", "uid-1", spec, config)
        for replica in ("Master", "Worker"):
            template_labels = pj["spec"]["pytorchReplicaSpecs"][replica]["template"]["metadata"]["labels"]
            # The training-operator adds its own labels to each pod; ours stay.
            found.append({**template_labels, "training.kubeflow.org/job-name": pj["metadata"]["name"],
                          "training.kubeflow.org/replica-type": replica.lower()})
    return found


def policies(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == NAME}


def test_off_by_default(helm: Helm):
    assert policies(helm.render()) == {}
    assert "NetworkPolicy" not in kinds(helm.render({"watchNamespaces": ["team-a"]}))


def test_one_policy_per_job_namespace_selecting_exactly_the_runtime_pods(helm: Helm):
    docs = helm.render(ON)
    found = policies(docs)
    assert sorted(found) == ["team-a", "team-b"]
    operator_pod = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for policy in found.values():
        assert policy["metadata"]["labels"]["app.kubernetes.io/component"] == "runtime"
        spec = policy["spec"]
        selector = spec["podSelector"]
        assert all(matches(selector, labels) for labels in runtime_pod_labels())
        # Not the operator, nor any other pod of the namespace, nor a pod of a foreign PyTorchJob.
        assert not matches(selector, operator_pod)
        assert not matches(selector, {})
        assert not matches(selector, {"training.kubeflow.org/job-name": "other", "app": "trainer"})
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        # In: only from the runtime pods (same namespace: a podSelector without namespaceSelector).
        assert spec["ingress"] == [{"from": [{"podSelector": selector}]}]
        pods, dns, storage = spec["egress"]
        assert pods == {"to": [{"podSelector": selector}]}
        assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
        assert storage == {"ports": [{"port": 443, "protocol": "TCP"}]}  # any address, HTTPS only


def test_storage_cidrs_ports_dns_and_extra_rules(helm: Helm):
    minio = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "minio"}}}],
             "ports": [{"port": 9000, "protocol": "TCP"}]}
    docs = helm.render({"runtimeNetworkPolicy": {
        "enabled": True, "namespaces": ["team-a"], "dns": {"enabled": False},
        "storage": {"cidrs": ["10.1.0.0/16", "192.0.2.10/32"], "ports": [443, 9000]}, "extraEgress": [minio]}})
    _, storage, extra = policies(docs)["team-a"]["spec"]["egress"]
    assert storage == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 9000, "protocol": "TCP"}],
                       "to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}, {"ipBlock": {"cidr": "192.0.2.10/32"}}]}
    assert extra == minio
    # No storage ports: nothing but the job's own pods (and DNS).
    docs = helm.render({"runtimeNetworkPolicy": {"enabled": True, "namespaces": ["team-a"], "storage": {"ports": []}}})
    assert len(policies(docs)["team-a"]["spec"]["egress"]) == 2


def test_namespaces_default_to_the_watched_ones_and_are_required(helm: Helm):
    docs = helm.render({"watchNamespaces": ["team-a", "team-c"], "runtimeNetworkPolicy": {"enabled": True}})
    assert sorted(policies(docs)) == ["team-a", "team-c"]
    result = helm.template({"runtimeNetworkPolicy": {"enabled": True}}, check=False)
    assert result.returncode != 0 and "runtimeNetworkPolicy.namespaces: list the namespaces" in result.stderr


def test_helm_lint_strict_with_it_on(helm: Helm):
    result = helm.run("lint", str(CHART), "--strict", "--namespace", "v2w-system", "-f", str(helm.values_file(ON)))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values, field", [
    ({"runtimeNetworkPolicy": {"enabled": "yes"}}, "enabled"),
    ({"runtimeNetworkPolicy": {"namespaces": ["Team_A"]}}, "namespaces"),
    ({"runtimeNetworkPolicy": {"storage": {"cidrs": ["10.0.0.1"]}}}, "cidrs"),
    ({"runtimeNetworkPolicy": {"storage": {"ports": [0]}}}, "ports"),
    ({"runtimeNetworkPolicy": {"dns": {"ports": [70000]}}}, "ports"),
    ({"runtimeNetworkPolicy": {"ingressFrom": []}}, "ingressFrom"),
    ({"runtimeNetworkPolicy": {"extraEgress": "all"}}, "extraEgress"),
])
def test_schema_refuses_bad_values_naming_them(helm: Helm, values, field):
    result = helm.template(values, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr, result.stderr


@pytest.mark.cluster
def test_the_api_server_takes_the_policies_as_rendered(kube, helm: Helm):
    tag = uuid.uuid4().hex[:6]
    namespaces = [f"jobs-a-{tag}", f"jobs-b-{tag}"]
    values = {"runtimeNetworkPolicy": {
        "enabled": True, "namespaces": namespaces, "storage": {"cidrs": ["10.1.0.0/16"], "ports": [443, 9000]},
        "extraEgress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "minio"}}}],
                         "ports": [{"port": 9000, "protocol": "TCP"}]}]}}
    for ns in namespaces:
        kube.kubectl("create", "namespace", ns)
    try:
        text = helm.template(values, extra=("--show-only", "templates/runtime-networkpolicy.yaml")).stdout
        rendered = policies([d for d in yaml.safe_load_all(text) if d])
        applied = kube.kubectl("apply", "--validate=strict", "-f", "-", input=text, check=False)
        assert applied.returncode == 0, applied.stderr
        for ns in namespaces:
            stored = json.loads(kube.kubectl("get", "networkpolicy", NAME, "-n", ns, "-o", "json").stdout)
            # Stored as written: the server neither dropped nor rewrote a rule.
            assert stored["spec"] == rendered[ns]["spec"], json.dumps(stored["spec"], indent=1)
    finally:
        for ns in namespaces:
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_pool_workers_get_their_own_policy_with_the_api_server_and_not_the_jobs_pods(helm: Helm):
    from v2w_api.pool import Video2WorldPoolSpec
    from v2w_operator import workers

    docs = helm.render({**ON, "networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]}}})
    found = {d["metadata"]["namespace"]: d for d in docs
             if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "v2w-video2world-operator-pool-workers"}
    assert sorted(found) == ["team-a", "team-b"]
    config = OperatorConfig(checkpoint_2b="s3://models/2b")
    worker = workers.deployment("fast", "team-a", "u", Video2WorldPoolSpec(), config)["spec"]["template"]["metadata"]
    for policy in found.values():
        spec = policy["spec"]
        assert matches(spec["podSelector"], worker["labels"])
        assert not any(matches(spec["podSelector"], labels) for labels in runtime_pod_labels())
        assert not matches(policies(docs)[policy["metadata"]["namespace"]]["spec"]["podSelector"], worker["labels"])
        assert "ingress" not in spec and spec["policyTypes"] == ["Ingress", "Egress"]  # nothing reaches a worker
        dns, storage, api = spec["egress"]
        assert api == {"ports": [{"port": 6443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}
