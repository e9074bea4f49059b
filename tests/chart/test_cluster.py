"""The chart on the real kube-apiserver: its manifests pass server-side validation, `helm install` works,
and the operator's ServiceAccount may do exactly what the operator needs, nothing more (SubjectAccessReview)."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from tests.chart.helm import CHART, Helm

pytestmark = pytest.mark.cluster

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")

# (group, resource, subresource) checked in namespaces, and the verbs the operator needs on each.
NAMESPACED_NEEDS: dict[tuple[str, str, str], set[str]] = {
    ("video2world.io", "video2worldjobs", ""): {"get", "list", "watch", "patch"},
    ("video2world.io", "bestofnjobs", ""): {"get", "list", "watch", "patch"},
    ("video2world.io", "video2worldjobs", "status"): {"get", "patch"},
    ("video2world.io", "bestofnjobs", "status"): {"get", "patch"},
    ("video2world.io", "video2worldpools", ""): {"get", "list", "watch", "patch"},
    ("video2world.io", "video2worldpools", "status"): {"get", "patch"},
    ("kubeflow.org", "pytorchjobs", ""): {"get", "list", "watch", "create", "patch"},
    ("kubeflow.org", "pytorchjobs", "status"): set(),
    ("trainer.kubeflow.org", "trainjobs", ""): set(),  # the trainjob backend's child (CHILD_NEEDS)
    ("trainer.kubeflow.org", "trainjobs", "status"): set(),
    ("trainer.kubeflow.org", "trainingruntimes", ""): set(),
    ("jobset.x-k8s.io", "jobsets", ""): set(),  # Trainer's and JobSet's to manage
    ("kueue.x-k8s.io", "workloads", ""): {"get", "list", "watch", "patch"},
    ("kueue.x-k8s.io", "workloads", "status"): set(),
    ("kueue.x-k8s.io", "localqueues", ""): set(),
    ("", "pods", ""): set(),
    ("", "pods", "log"): set(),
    ("", "pods", "exec"): set(),
    ("", "secrets", ""): {"get"},
    ("", "persistentvolumeclaims", ""): {"get"},
    ("", "events", ""): {"create"},
    ("events.k8s.io", "events", ""): set(),
    ("", "configmaps", ""): set(),
    ("", "serviceaccounts", ""): {"get", "create", "patch"},  # a pool's workers' own (server-side apply)
    ("", "serviceaccounts", "token"): set(),
    ("apps", "deployments", ""): {"get", "create", "patch"},  # a pool's workers
    ("batch", "jobs", ""): set(),
    ("coordination.k8s.io", "leases", ""): {"get", "list", "watch", "create", "patch"},  # pooled jobs' claims
    ("rbac.authorization.k8s.io", "roles", ""): set(),
    ("rbac.authorization.k8s.io", "rolebindings", ""): {"get", "create", "patch"},  # a pool's workers' role
    ("kopf.dev", "kopfpeerings", ""): set(),
}
# Cluster-scoped resources. Namespaces only in namespaced mode (kopf matches its --namespace patterns);
# matrix() adds them there.
CLUSTER_NEEDS: dict[tuple[str, str, str], set[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions", ""): {"get", "list", "watch"},
    ("", "namespaces", ""): set(),
    ("", "nodes", ""): set(),
    ("rbac.authorization.k8s.io", "clusterroles", ""): set(),
    ("rbac.authorization.k8s.io", "clusterrolebindings", ""): set(),
    ("kopf.dev", "clusterkopfpeerings", ""): set(),
    ("trainer.kubeflow.org", "clustertrainingruntimes", ""): set(),  # the chart (helm) installs ours
    ("kueue.x-k8s.io", "clusterqueues", ""): set(),  # quota is Kueue's and the platform's
    ("kueue.x-k8s.io", "resourceflavors", ""): set(),
    # The admission policy is the installer's (helm's) to manage; the operator never touches it.
    ("admissionregistration.k8s.io", "validatingadmissionpolicies", ""): set(),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings", ""): set(),
}


@dataclass(frozen=True)
class Ask:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""  # "" is cluster scope (or: in every namespace)
    name: str = ""


def review(kube, user: str, groups: list[str], asks: list[Ask]) -> dict[Ask, bool]:
    """One SubjectAccessReview per question, sent in one `kubectl create` (the API server decides each)."""
    items = []
    for ask in asks:
        attrs = {"verb": ask.verb, "group": ask.group, "resource": ask.resource}
        for key in ("subresource", "namespace", "name"):
            if getattr(ask, key):
                attrs[key] = getattr(ask, key)
        items.append({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}})
    out = kube.kubectl("create", "-o", "json", "-f", "-",
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})).stdout
    # kubectl prints one JSON document per created object, back to back.
    decoder, results, at = json.JSONDecoder(), [], 0
    while out[at:].strip():
        doc, end = decoder.raw_decode(out, at + len(out[at:]) - len(out[at:].lstrip()))
        results.extend(doc["items"] if doc.get("kind") == "List" else [doc])
        at = end
    assert len(results) == len(asks)
    return {ask: bool(r["status"].get("allowed")) for ask, r in zip(asks, results)}


# The child kinds, and what the operator needs on each when its backend makes it (nothing otherwise).
CHILD_NEEDS = {"pytorchjob": ("kubeflow.org", "pytorchjobs", ""), "trainjob": ("trainer.kubeflow.org", "trainjobs", "")}
CHILD_VERBS = {"get", "list", "watch", "create", "patch"}


def matrix(namespaces: list[tuple[str, bool | None]], namespaced_mode: bool = False,
           backend: str = "pytorchjob") -> Iterator[tuple[Ask, bool]]:
    """Every (verb, resource) question, with the answer the operator should get.

    `namespaces` holds (namespace, watched) pairs: watched None asks about the cluster-scoped resources;
    True or False about the namespaced ones in that namespace ("" meaning across all namespaces). `backend`
    (the chart's value) says which child kinds it may make: one, or both with auto.
    """
    cluster_needs = dict(CLUSTER_NEEDS)
    if namespaced_mode:
        cluster_needs[("", "namespaces", "")] = {"list", "watch"}
    namespaced_needs = dict(NAMESPACED_NEEDS)
    for kind, resource in CHILD_NEEDS.items():
        namespaced_needs[resource] = CHILD_VERBS if backend in (kind, "auto") else set()
    for ns, watched in namespaces:
        needs = cluster_needs if ns == "" and watched is None else namespaced_needs
        for (group, resource, sub), verbs in needs.items():
            for verb in VERBS:
                allowed = verb in verbs and (watched is None or watched)
                yield Ask(verb, group, resource, sub, ns), allowed


def sa_identity(namespace: str, name: str) -> tuple[str, list[str]]:
    return (f"system:serviceaccount:{namespace}:{name}",
            ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"])


def assert_exactly(kube, namespace: str, sa: str, expected: list[tuple[Ask, bool]]) -> None:
    user, groups = sa_identity(namespace, sa)
    answers = review(kube, user, groups, [ask for ask, _ in expected])
    wrong = [(ask, answers[ask], want) for ask, want in expected if answers[ask] != want]
    assert not wrong, "permissions differ from what the operator needs:\n" + "\n".join(
        f"  {'ALLOWED' if got else 'DENIED'} (want {'allowed' if want else 'denied'}): {a.verb} "
        f"{a.group or 'core'}/{a.resource}{'/' + a.subresource if a.subresource else ''}"
        f"{' ' + a.name if a.name else ''} in {a.namespace or 'cluster scope'}"
        for a, got, want in wrong)


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:6]
    return {"release": f"v2w-{tag}", "ns": f"v2w-sys-{tag}", "a": f"team-a-{tag}", "b": f"team-b-{tag}",
            "other": f"other-{tag}"}


@pytest.fixture
def installed(crds_applied, helm: Helm, names):
    """Installs the chart (by request.param's values), and uninstalls it afterwards."""
    kube = crds_applied
    made: list[str] = []

    def install(values: dict, namespaces: tuple[str, ...] = ()) -> str:
        for ns in namespaces:
            kube.kubectl("create", "namespace", ns)
            made.append(ns)
        result = helm.run("install", names["release"], str(CHART), "--namespace", names["ns"], "--create-namespace",
                          "-f", str(helm.values_file(values)), kubeconfig=kube.kubeconfig)
        made.append(names["ns"])
        return result.stdout

    yield install
    helm.run("uninstall", names["release"], "--namespace", names["ns"], "--wait", kubeconfig=kube.kubeconfig,
             check=False)
    for ns in made:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def get_json(kube, *args: str) -> dict:
    return json.loads(kube.kubectl("get", "-o", "json", *args).stdout)


def test_chart_crds_apply_cleanly_over_the_generated_ones(crds_applied):
    result = crds_applied.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(CHART / "crds"))
    # Ours (two jobs, the pool) and kopf's peering kinds (replicas > 1).
    assert result.stdout.count("serverside-applied (server dry run)") == 5


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_rendered_manifests_pass_server_side_validation(crds_applied, helm: Helm, names, mode):
    kube = crds_applied
    values: dict = {"networkPolicy": {"enabled": True, "metricsFrom": [{"podSelector": {}}],
                                      "apiServer": {"cidrs": ["10.0.0.1/32"]}, "s3": {"cidrs": ["10.2.0.0/16"]}},
                    "rbac": {"secretNames": ["v2w-s3"]}, "s3": {"credentialsSecret": "team-s3"}}
    namespaces = [names["ns"]]
    if mode == "namespaced":
        values["watchNamespaces"] = [names["a"], names["b"]]
        namespaces += [names["a"], names["b"]]
    for ns in namespaces:
        kube.kubectl("create", "namespace", ns)
    try:
        text = helm.template(values, release=names["release"], namespace=names["ns"]).stdout
        docs = [d for d in yaml.safe_load_all(text) if d]
        result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("(server dry run)") == len(docs)
    finally:
        for ns in namespaces:
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_install_in_cluster_mode_grants_exactly_what_the_operator_needs(installed, crds_applied, names):
    kube = crds_applied
    notes = installed({"s3": {"credentialsSecret": "team-s3"}})
    assert "It watches every namespace." in notes
    release, ns = names["release"], names["ns"]
    sa = f"{release}-video2world-operator"

    deployment = get_json(kube, "-n", ns, f"deployment/{sa}")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa
    assert "--all-namespaces" in pod["containers"][0]["args"]
    get_json(kube, "-n", ns, f"serviceaccount/{sa}")
    get_json(kube, "-n", ns, f"service/{sa}-metrics")

    expected = list(matrix([("", None), (names["other"], True), ("", True)]))
    assert_exactly(kube, ns, sa, expected)

    # The same answers through `kubectl auth can-i --as`, the way an administrator would check it.
    def can_i(*args: str) -> str:
        return kube.kubectl("auth", "can-i", *args, f"--as=system:serviceaccount:{ns}:{sa}", check=False).stdout.strip()

    assert can_i("patch", "video2worldjobs.video2world.io", "--subresource=status", "-n", names["other"]) == "yes"
    # (kubectl resolves names through discovery: no PyTorchJob CRD here, so the SAR matrix above covers those.)
    assert can_i("get", "secrets", "-n", names["other"]) == "yes"
    assert can_i("list", "secrets", "-n", names["other"]) == "no"
    assert can_i("list", "namespaces") == "no"  # kopf needs it only in namespaced mode
    assert can_i("create", "video2worldjobs.video2world.io", "-n", names["other"]) == "no"
    # Pools: the operator may bind the workers' ClusterRole, and no other role, in any namespace; the workers'
    # role holds Leases only.
    worker_role = f"{sa}-pool-worker"
    roles = ("rbac.authorization.k8s.io", "clusterroles", "")
    binds = [(Ask("bind", *roles, names["other"], worker_role), True),
             (Ask("bind", *roles, names["other"], "admin"), False),
             (Ask("bind", *roles, names["other"]), False),
             (Ask("escalate", *roles, names["other"], worker_role), False)]
    assert_exactly(kube, ns, sa, binds)
    rules = get_json(kube, f"clusterrole/{worker_role}")["rules"]
    assert rules == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "verbs": ["get", "list", "watch", "update"]}]


@pytest.mark.parametrize("backend", ["trainjob", "auto"])
def test_each_backend_grants_its_child_kinds_only(installed, crds_applied, names, backend):
    """backend trainjob: TrainJobs and nothing on PyTorchJobs (and the ClusterTrainingRuntime is installed);
    auto: both kinds. (The default, pytorchjob, is the test above.)"""
    import stack

    kube = crds_applied
    stack.install_trainer_crds(kube)  # a chart for trainjob installs a ClusterTrainingRuntime
    installed({"backend": backend, "trainer": {"runtimeName": f"{names['release']}-runtime"}})
    release, ns = names["release"], names["ns"]
    sa = f"{release}-video2world-operator"
    assert_exactly(kube, ns, sa, list(matrix([("", None), (names["other"], True), ("", True)], backend=backend)))
    runtimes = get_json(kube, "clustertrainingruntimes")["items"]
    assert [r["metadata"]["name"] for r in runtimes if r["metadata"]["name"] == f"{release}-runtime"] == \
        [f"{release}-runtime"]


def test_install_in_namespaced_mode_grants_only_the_watched_namespaces(installed, crds_applied, names):
    kube = crds_applied
    notes = installed({"watchNamespaces": [names["a"], names["b"]]}, namespaces=(names["a"], names["b"]))
    assert f"the namespaces {names['a']}, {names['b']}" in notes
    release, ns = names["release"], names["ns"]
    sa = f"{release}-video2world-operator"

    args = get_json(kube, "-n", ns, f"deployment/{sa}")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={names['a']}" in args and f"--namespace={names['b']}" in args
    assert "--all-namespaces" not in args
    for watched in (names["a"], names["b"]):
        get_json(kube, "-n", watched, f"role/{sa}")
        get_json(kube, "-n", watched, f"rolebinding/{sa}")

    expected = list(matrix([
        ("", None),               # cluster-scoped resources: CRDs only
        (names["a"], True),
        (names["b"], True),
        (names["other"], False),  # not watched: nothing
        (ns, False),              # not even its own namespace
        ("", False),              # nothing across all namespaces
    ], namespaced_mode=True))
    assert_exactly(kube, ns, sa, expected)


def test_two_replicas_get_peering_and_may_patch_only_their_peering_object(installed, crds_applied, names):
    kube = crds_applied
    installed({"replicas": 2, "podDisruptionBudget": {"enabled": True}})
    ns, sa = names["ns"], f"{names['release']}-video2world-operator"
    deployment = get_json(kube, "-n", ns, f"deployment/{sa}")
    assert deployment["spec"]["replicas"] == 2
    assert f"--peering={sa}" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    get_json(kube, f"clusterkopfpeering/{sa}")
    get_json(kube, "-n", ns, f"poddisruptionbudget/{sa}")
    peering = ("kopf.dev", "clusterkopfpeerings")
    expected = [(Ask(verb, *peering), verb in ("list", "watch")) for verb in VERBS]
    expected += [(Ask(verb, *peering, name=name), (verb == "patch" and name == sa) or verb in ("list", "watch"))
                 for verb in ("get", "patch", "update", "delete") for name in (sa, "someone-else")]
    expected += [(Ask(verb, "kopf.dev", "kopfpeerings", "", names["other"]), False) for verb in VERBS]
    assert_exactly(kube, ns, sa, expected)


def test_secret_names_limit_reads_to_those_secrets(installed, crds_applied, names):
    kube = crds_applied
    installed({"watchNamespaces": [names["a"]], "rbac": {"secretNames": ["job-s3"]},
               "s3": {"credentialsSecret": "default-s3"}}, namespaces=(names["a"],))
    sa = f"{names['release']}-video2world-operator"
    expected = [(Ask(verb, "", "secrets", "", names["a"], secret), verb == "get" and secret != "other-secret")
                for verb, secret in itertools.product(("get", "list", "watch", "update", "delete"),
                                                      ("job-s3", "default-s3", "other-secret"))]
    expected.append((Ask("get", "", "secrets", "", names["a"]), False))  # unnamed get is a list in disguise
    assert_exactly(kube, names["ns"], sa, expected)


def test_uninstall_removes_rbac_but_keeps_crds_and_jobs(installed, crds_applied, helm: Helm, names):
    kube = crds_applied
    installed({})
    sa = f"{names['release']}-video2world-operator"
    get_json(kube, f"clusterrole/{sa}")
    get_json(kube, f"validatingadmissionpolicy/{sa}-policy")
    helm.run("uninstall", names["release"], "--namespace", names["ns"], "--wait", kubeconfig=kube.kubeconfig)
    gone = kube.kubectl("get", f"clusterrole/{sa}", f"clusterrolebinding/{sa}", f"validatingadmissionpolicy/{sa}-policy",
                        f"validatingadmissionpolicybinding/{sa}-policy", check=False)
    assert gone.returncode != 0 and gone.stderr.count("NotFound") == 4, gone.stderr
    user, groups = sa_identity(names["ns"], sa)
    assert not any(review(kube, user, groups, [Ask("list", "video2world.io", "video2worldjobs")]).values())
    for crd in ("video2worldjobs.video2world.io", "bestofnjobs.video2world.io"):
        get_json(kube, f"crd/{crd}")


def test_notes_tell_what_to_apply_next(crds_applied, helm: Helm):
    # `helm template` does not render NOTES.txt; a dry-run of `helm install` prints it.
    out = helm.run("install", "v2w", str(CHART), "--namespace", "v2w-system", "--dry-run=client",
                   kubeconfig=crds_applied.kubeconfig).stdout
    for text in ("rollout status deploy/v2w-video2world-operator", "pytorchjobs.kubeflow.org",
                 "create secret generic v2w-s3", "kubectl -n <namespace> apply -f", "get v2wjobs",
                 "every job must name"):
        assert text in out, f"NOTES lack {text!r}"
