"""`helm lint` and `helm template` of the chart: what it renders for each mode, and what its schema refuses."""

from __future__ import annotations

import pytest

from v2w_operator.config import OperatorConfig

from tests.chart.helm import CHART, Helm, find, kinds

FULL = "v2w-video2world-operator"

ALL_SETTINGS = {
    "backend": "auto",
    "trainer": {"runtimeName": "v2w-runtime", "maxRestarts": 5},
    "runtime": {"image": {"repository": "registry.example.com/v2w/runtime", "tag": "1.2.3", "pullPolicy": "Always"},
                "pvcMountRoot": "/data/pvc", "extraArgs": ["--log-level", "debug", "--note=two words"]},
    "checkpoints": {
        "model2B": "pvc://ckpt/Cosmos-Predict2-2B-Video2World",
        "model14B": "s3://ckpt-bucket/Cosmos-Predict2-14B-Video2World",
        "refiner": "pvc://ckpt/Cosmos-Reason1-7B",
        "guardrail": "s3://ckpt-bucket/guardrail",
    },
    "s3": {"endpoint": "http://minio.storage:9000", "region": "eu-west-1", "credentialsSecret": "team-s3"},
    "links": {"publicEndpoint": "https://s3.example.com", "ttlSeconds": 3600},
    "gpu": {"resourceName": "amd.com/gpu"},
    "kueue": {"queueName": "gpu-queue"},
    "pollIntervalSeconds": 2.5,
    "replicas": 2,
    "peering": {"lifetimeSeconds": 20},
    "metrics": {"port": 9191},
    "cache": {"claimName": "checkpoint-cache", "sizeLimit": "500Gi"},
    "policy": {"images": {"allowedPrefixes": ["registry.example.com/v2w/", "mirror.example.org/v2w"]},
               "serviceAccounts": {"allowed": ["runner", "runner-gpu"]},
               "inputs": {"allowedHosts": ["files.corp.internal", "*.svc.cluster.local"],
                          "allowedCIDRs": ["10.20.0.0/16", "fd00:ec2::/32"]}},
}


def container(docs: list[dict]) -> dict:
    deployment = find(docs, "Deployment", FULL)
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(docs: list[dict]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs)["env"] if "value" in e}


@pytest.mark.parametrize("values", [
    {},
    {"watchNamespaces": ["team-a", "team-b"]},
    {**ALL_SETTINGS, "metrics": {"serviceMonitor": {"enabled": True}},
     "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {}}],
                       "apiServer": {"cidrs": ["10.0.0.1/32"]}, "s3": {"cidrs": ["10.1.0.0/16"], "ports": [9000]}},
     "rbac": {"secretNames": ["team-s3"]}},
], ids=["defaults", "namespaced", "everything-on"])
def test_helm_lint_strict(helm: Helm, values):
    args = ["lint", str(CHART), "--strict", "--namespace", "v2w-system"]
    if values:
        args += ["-f", str(helm.values_file(values))]
    result = helm.run(*args)
    assert "0 chart(s) failed" in result.stdout


def test_defaults_render_the_operator_its_rbac_and_metrics_service(helm: Helm):
    docs = helm.render()
    assert kinds(docs) == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                           "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    # The role each pool's RoleBinding gives its workers: Leases only.
    assert find(docs, "ClusterRole", f"{FULL}-pool-worker")["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "update"]}]
    assert env_of(docs)["V2W_POOL_WORKER_CLUSTER_ROLE"] == f"{FULL}-pool-worker"
    deployment = find(docs, "Deployment", FULL, "v2w-system")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}, "two kopf --standalone operators must never overlap"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == FULL
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    c = container(docs)
    assert c["image"] == "video2world/operator:0.1.0"
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    service = find(docs, "Service", f"{FULL}-metrics")
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]


def test_cluster_mode_runs_kopf_on_all_namespaces(helm: Helm):
    args = container(helm.render())["args"]
    assert args == [
        "--standalone", "--liveness=http://0.0.0.0:8080/healthz", "--log-format=full", "--all-namespaces",
        "-m", "v2w_operator.handlers",
    ]


def test_namespaced_mode_runs_kopf_on_the_listed_namespaces_with_roles_there(helm: Helm):
    docs = helm.render({"watchNamespaces": ["team-a", "team-b"], "logging": {"verbose": True, "format": "json"}})
    args = container(docs)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--verbose" in args and "--log-format=json" in args
    assert kinds(docs) == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "Role",
                           "RoleBinding", "RoleBinding", "Service", "ServiceAccount", "ValidatingAdmissionPolicy",
                           "ValidatingAdmissionPolicyBinding"]
    cluster_role = find(docs, "ClusterRole", f"{FULL}-cluster")
    assert cluster_role["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]
    for ns in ("team-a", "team-b"):
        binding = find(docs, "RoleBinding", FULL, ns)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": "v2w-system"}]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULL}
        find(docs, "Role", FULL, ns)


def test_two_replicas_elect_one_through_kopf_peering_with_least_privilege(helm: Helm):
    docs = helm.render({"replicas": 2, "podDisruptionBudget": {"enabled": True}})
    spec = find(docs, "Deployment", FULL, "v2w-system")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    args = container(docs)["args"]
    assert f"--peering={FULL}" in args and "--standalone" not in args
    env = container(docs)["env"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    assert env_of(docs)["V2W_PEERING_LIFETIME_SECONDS"] == "10"
    peering = find(docs, "ClusterKopfPeering", FULL)
    assert peering["apiVersion"] == "kopf.dev/v1"
    rules = find(docs, "ClusterRole", FULL)["rules"]
    assert [r for r in rules if r["apiGroups"] == ["kopf.dev"]] == [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch"]},
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "resourceNames": [FULL], "verbs": ["patch"]},
    ]
    pdb = find(docs, "PodDisruptionBudget", FULL, "v2w-system")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_namespaced_peering_uses_a_kopfpeering_and_a_role_rule_in_each_namespace(helm: Helm):
    docs = helm.render({"replicas": 2, "watchNamespaces": ["team-a", "team-b"]})
    for ns in ("team-a", "team-b"):
        find(docs, "KopfPeering", FULL, ns)
        rules = find(docs, "Role", FULL, ns)["rules"]
        assert {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "resourceNames": [FULL],
                "verbs": ["patch"]} in rules
    assert not [r for r in find(docs, "ClusterRole", f"{FULL}-cluster")["rules"] if r["apiGroups"] == ["kopf.dev"]]


def test_every_operator_setting_is_mapped_from_values(helm: Helm):
    env = env_of(helm.render(ALL_SETTINGS))
    # the cache's hostPath is exclusive with its claim: test_cache_values_reach_the_operator renders it
    expected = {f"V2W_{name.upper()}" for name in OperatorConfig.model_fields} - {"V2W_CACHE_HOST_PATH"}
    assert expected <= set(env), f"settings the chart cannot set: {sorted(expected - set(env))}"
    config = OperatorConfig.from_env(env)
    assert config.model_dump() == {
        "backend": "auto",
        "training_runtime_name": "v2w-runtime",
        "training_runtime_max_restarts": 5,
        "runtime_image": "registry.example.com/v2w/runtime:1.2.3",
        "image_pull_policy": "Always",
        "checkpoint_2b": "pvc://ckpt/Cosmos-Predict2-2B-Video2World",
        "checkpoint_14b": "s3://ckpt-bucket/Cosmos-Predict2-14B-Video2World",
        "refiner_checkpoint": "pvc://ckpt/Cosmos-Reason1-7B",
        "guardrail_checkpoint": "s3://ckpt-bucket/guardrail",
        "s3_endpoint": "http://minio.storage:9000",
        "s3_region": "eu-west-1",
        "credentials_secret": "team-s3",
        "links_public_endpoint": "https://s3.example.com",
        "links_ttl_seconds": 3600,
        "gpu_resource_name": "amd.com/gpu",
        "queue_name": "gpu-queue",
        "pvc_mount_root": "/data/pvc",
        "cache_host_path": None,
        "cache_claim_name": "checkpoint-cache",
        "cache_size_limit": "500Gi",
        "poll_interval_seconds": 2.5,
        "peering_lifetime_seconds": 20,
        "metrics_port": 9191,
        "pool_worker_cluster_role": "v2w-video2world-operator-pool-worker",
        "runtime_extra_args": ["--log-level", "debug", "--note=two words"],
        "policy_image_prefixes": ["registry.example.com/v2w/", "mirror.example.org/v2w"],
        "policy_service_accounts": ["runner", "runner-gpu"],
        "policy_allowed_hosts": ["files.corp.internal", "*.svc.cluster.local"],
        "policy_allowed_cidrs": ["10.20.0.0/16", "fd00:ec2::/32"],
    }


def test_cache_values_reach_the_operator(helm: Helm):
    config = OperatorConfig.from_env(env_of(helm.render({"cache": {"hostPath": "/var/cache/video2world"}})))
    assert (config.cache_host_path, config.cache_claim_name, config.cache_size_limit) == (
        "/var/cache/video2world", None, None)
    defaults = OperatorConfig.from_env(env_of(helm.render()))
    assert defaults.cache_host_path is None and defaults.cache_claim_name is None  # each pod's emptyDir


def test_unset_defaults_leave_the_operator_defaults(helm: Helm):
    env = env_of(helm.render())
    config = OperatorConfig.from_env(env)
    assert config.runtime_image == "video2world/runtime:0.1.0"
    assert config.checkpoint_2b is None and config.credentials_secret is None and config.queue_name is None
    assert config.gpu_resource_name == "nvidia.com/gpu"
    assert config.metrics_port == 9090


def test_metrics_off_removes_service_and_port_and_tells_the_operator(helm: Helm):
    docs = helm.render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert "Service" not in kinds(docs) and "ServiceMonitor" not in kinds(docs)
    assert env_of(docs)["V2W_METRICS_PORT"] == "0"
    assert [p["name"] for p in container(docs)["ports"]] == ["health"]


def test_service_monitor_renders_when_enabled(helm: Helm):
    docs = helm.render({"metrics": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}}})
    monitor = find(docs, "ServiceMonitor", FULL, "v2w-system")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = find(docs, "Service", f"{FULL}-metrics")
    # The monitor must select the metrics Service and name one of its ports.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["v2w-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_network_policy_allows_only_metrics_in_and_dns_api_s3_out(helm: Helm):
    assert "NetworkPolicy" not in kinds(helm.render())
    docs = helm.render({"networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "apiServer": {"cidrs": ["10.0.0.1/32"]},
        "s3": {"cidrs": ["10.1.0.0/16"], "ports": [9000]},
    }})
    policy = find(docs, "NetworkPolicy", FULL)["spec"]
    assert policy["podSelector"]["matchLabels"] == find(docs, "Deployment", FULL)["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                                  "ports": [{"port": "metrics", "protocol": "TCP"}]}]
    dns, api, s3 = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert api == {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
                   "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    assert s3 == {"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"port": 9000, "protocol": "TCP"}]}


def test_network_policy_without_scrapers_denies_all_ingress(helm: Helm):
    docs = helm.render({"networkPolicy": {"enabled": True}})
    assert find(docs, "NetworkPolicy", FULL)["spec"]["ingress"] == []


def test_secret_names_narrow_secret_access(helm: Helm):
    docs = helm.render({"rbac": {"secretNames": ["a-s3", "b-s3"]}, "s3": {"credentialsSecret": "default-s3"}})
    rules = find(docs, "ClusterRole", FULL)["rules"]
    (secrets,) = [r for r in rules if r["resources"] == ["secrets"]]
    assert secrets == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                       "resourceNames": ["a-s3", "b-s3", "default-s3"]}


def test_existing_service_account_and_no_rbac(helm: Helm):
    docs = helm.render({"serviceAccount": {"create": False, "name": "platform-sa"}, "rbac": {"create": False}})
    assert kinds(docs) == ["Deployment", "Service", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert find(docs, "Deployment", FULL)["spec"]["template"]["spec"]["serviceAccountName"] == "platform-sa"
    result = helm.template({"serviceAccount": {"create": False}}, check=False)
    assert result.returncode != 0 and "serviceAccount.name is required" in result.stderr


@pytest.mark.parametrize("values, field", [
    ({"imagee": {}}, "imagee"),
    ({"checkpoints": {"model2B": "http://hub.example/model"}}, "model2B"),
    ({"checkpoints": {"model14B": "pvc://Bad_Claim/x"}}, "model14B"),
    ({"gpu": {"resourceName": "gpu"}}, "resourceName"),
    ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
    ({"s3": {"endpoint": "minio:9000"}}, "endpoint"),
    ({"pollIntervalSeconds": 0}, "pollIntervalSeconds"),
    ({"logging": {"format": "xml"}}, "format"),
    ({"securityContext": {"allowPrivilegeEscalation": True, "readOnlyRootFilesystem": True}}, "allowPrivilegeEscalation"),
    ({"securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
    ({"securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                          "capabilities": {"add": ["NET_ADMIN"]}}}, "add"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    ({"rbac": {"secretNames": ["Not A Name"]}}, "secretNames"),
    ({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}, "cidrs"),
    ({"runtime": {"extraArgs": ["--note='quoted'"]}}, "extraArgs"),
    ({"cache": {"hostPath": "var/cache"}}, "hostPath"),
    ({"cache": {"hostPath": "/var/cache/v2w", "claimName": "cache"}}, "cache"),
    ({"cache": {"sizeLimit": "lots"}}, "sizeLimit"),
    ({"policy": {"images": {"allowedPrefixes": ["has space/"]}}}, "allowedPrefixes"),
    ({"policy": {"serviceAccounts": {"allowed": ["Admin"]}}}, "allowed"),
    ({"policy": {"inputs": {"allowedHosts": ["bad host"]}}}, "allowedHosts"),
    ({"policy": {"inputs": {"allowedCIDRs": ["10.0.0.1"]}}}, "allowedCIDRs"),
    ({"policy": {"admissoin": {}}}, "admissoin"),
    ({"backend": "mpijob"}, "backend"),
    ({"trainer": {"maxRestarts": -1}}, "maxRestarts"),
    ({"trainer": {"runtimeName": "Not A Name"}}, "runtimeName"),
])
def test_schema_refuses_bad_values_naming_them(helm: Helm, values, field):
    result = helm.template(values, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr, result.stderr
