"""The chart per backend: each renders only what its backend needs (the RBAC on its child kind, and for
TrainJob the ClusterTrainingRuntime, equal to the one the operator's builder makes from the same settings)."""

from __future__ import annotations

import pytest

from v2w_operator.backends import trainjob
from v2w_operator.config import OperatorConfig

from tests.chart.helm import Helm, find, kinds
from tests.chart.test_render import FULL, env_of

PYTORCHJOB_RULE = {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"],
                   "verbs": ["get", "list", "watch", "create", "patch"]}
TRAINJOB_RULE = {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"],
                 "verbs": ["get", "list", "watch", "create", "patch"]}
TRAINER_SERVED = ("--api-versions", "trainer.kubeflow.org/v1alpha1/ClusterTrainingRuntime")


def child_rules(rules: list[dict]) -> list[dict]:
    return [r for r in rules if r["apiGroups"][0] in ("kubeflow.org", "trainer.kubeflow.org")]


@pytest.mark.parametrize("backend, rules, runtime", [
    ("pytorchjob", [PYTORCHJOB_RULE], False),
    ("trainjob", [TRAINJOB_RULE], True),
    ("auto", [PYTORCHJOB_RULE, TRAINJOB_RULE], False),  # Trainer's CRDs not served (helm template knows none)
])
def test_each_backend_renders_only_what_it_needs(helm: Helm, backend, rules, runtime):
    docs = helm.render({"backend": backend})
    assert child_rules(find(docs, "ClusterRole", FULL)["rules"]) == rules
    assert ("ClusterTrainingRuntime" in kinds(docs)) is runtime
    assert env_of(docs)["V2W_BACKEND"] == backend


def test_auto_installs_the_runtime_where_trainer_is_served(helm: Helm):
    docs = helm.render({"backend": "auto"}, extra=TRAINER_SERVED)
    assert find(docs, "ClusterTrainingRuntime", FULL)


def test_namespaced_mode_grants_the_child_kind_in_each_watched_namespace(helm: Helm):
    docs = helm.render({"backend": "trainjob", "watchNamespaces": ["team-a"]})
    assert child_rules(find(docs, "Role", FULL, "team-a")["rules"]) == [TRAINJOB_RULE]
    assert child_rules(find(docs, "ClusterRole", f"{FULL}-cluster")["rules"]) == []


@pytest.mark.parametrize("values", [
    {},
    {"cache": {"hostPath": "/var/cache/video2world"}, "gpu": {"resourceName": "amd.com/gpu"},
     "trainer": {"runtimeName": "v2w-torch", "maxRestarts": 0},
     "runtime": {"image": {"repository": "registry.example.com/v2w/runtime", "tag": "1.2.3", "pullPolicy": "Always"}}},
    {"cache": {"claimName": "checkpoint-cache"}},
], ids=["defaults", "settings", "claim"])
def test_the_charts_runtime_is_the_one_the_operator_builds(helm: Helm, values):
    """The chart cannot run Python: its template and `trainjob.runtime` are two spellings of one object, held
    equal for the settings that reach it (the operator gets the same values through its environment)."""
    docs = helm.render({"backend": "trainjob", **values})
    config = OperatorConfig.from_env(env_of(docs))
    rendered = find(docs, "ClusterTrainingRuntime")
    built = trainjob.runtime(config)
    assert rendered["metadata"]["name"] == built["metadata"]["name"] == config.training_runtime_name
    assert built["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()
    assert rendered["spec"] == built["spec"]
