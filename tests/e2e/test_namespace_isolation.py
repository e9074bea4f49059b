"""A namespace's user cannot make the operator read a Secret or mount a PVC of another namespace.

It holds by construction (no reference in the spec has a namespace; the operator looks a Secret up in the
job's own namespace; a pod's claim reference has no namespace either); these tests show it on the real API
server, as a user who may only create and read jobs in their namespace."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

import stack  # hack/localstack/stack.py
from tests.chart.test_cluster import Ask, review
from tests.e2e.helpers import DISABLED, condition, make_claim, phase_is, s3_key

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

JOBS = "video2worldjobs"
GROUP = "video2world.io"


def _namespace_user(e2e, namespace: str) -> str:
    """A user bound to a Role in `namespace` that allows create and get of Video2WorldJobs, nothing else."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "v2w-submitter", "namespace": namespace},
            "rules": [{"apiGroups": [GROUP], "resources": [JOBS], "verbs": ["create", "get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "v2w-submitter", "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "v2w-submitter"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}
    e2e.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    return user


def _apply_as(e2e, user: str, namespace: str, doc: dict, *flags: str):
    return e2e.kubectl("apply", f"--as={user}", "-n", namespace, *flags, "-f", "-", input=yaml.safe_dump(doc),
                       check=False)


def test_a_namespace_user_cannot_point_the_operator_at_another_namespaces_secret(e2e):
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"e2e-a-{tag}", f"e2e-b-{tag}"
    for ns in (ns_a, ns_b):
        e2e.kubectl("create", "namespace", ns)
    e2e.secret(ns_b, "team-b-s3")  # real, working credentials, but in B only
    user = _namespace_user(e2e, ns_a)

    # The user's own rights (SubjectAccessReview): jobs in A, and no Secret anywhere.
    asks = {Ask("create", GROUP, JOBS, namespace=ns_a): True, Ask("get", GROUP, JOBS, namespace=ns_a): True,
            Ask("create", GROUP, JOBS, namespace=ns_b): False}
    for ns in (ns_a, ns_b):
        for verb in ("get", "list", "watch"):
            asks[Ask(verb, "", "secrets", namespace=ns)] = False
        asks[Ask("get", "", "secrets", namespace=ns, name="team-b-s3")] = False
        asks[Ask("create", "", "pods", namespace=ns)] = False
        asks[Ask("create", "kubeflow.org", "pytorchjobs", namespace=ns)] = False
    answers = review(e2e.kube, user, ["system:authenticated"], list(asks))
    assert answers == asks, {f"{a.verb} {a.resource} in {a.namespace}": answers[a] for a in asks if answers[a] != asks[a]}

    job = e2e.job("Video2WorldJob", "borrow", {
        "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "A quiet street."},
        "output": {"credentialsSecret": {"name": "team-b-s3"}}, **DISABLED})

    # A namespace field (or a Pod-style secretKeyRef, or a qualified name) is refused at apply time.
    tricks = {
        "namespace": ({"name": "team-b-s3", "namespace": ns_b}, 'unknown field "spec.output.credentialsSecret.namespace"'),
        "secretKeyRef": ({"name": "team-b-s3", "secretKeyRef": {"name": "team-b-s3", "namespace": ns_b}},
                         'unknown field "spec.output.credentialsSecret.secretKeyRef"'),
        "qualified": ({"name": f"{ns_b}/team-b-s3"}, "spec.output.credentialsSecret.name"),
    }
    for what, (ref, message) in tricks.items():
        bad = json.loads(json.dumps(job))
        bad["metadata"]["name"] = f"trick-{what.lower()}"
        bad["spec"]["output"]["credentialsSecret"] = ref
        refused = _apply_as(e2e, user, ns_a, bad)
        assert refused.returncode != 0 and message in refused.stderr, (what, refused.stdout, refused.stderr)
    # A client that skips validation gets the unknown field pruned: only the name reaches the operator.
    sneaky = json.loads(json.dumps(job))
    sneaky["metadata"]["name"] = "sneaky"
    sneaky["spec"]["output"]["credentialsSecret"]["namespace"] = ns_b
    applied = _apply_as(e2e, user, ns_a, sneaky, "--validate=false")
    assert applied.returncode == 0, applied.stderr
    assert "namespace" not in e2e.get(ns_a, "v2wjob", "sneaky")["spec"]["output"]["credentialsSecret"]

    applied = _apply_as(e2e, user, ns_a, job)
    assert applied.returncode == 0, applied.stderr
    for name in ("borrow", "sneaky"):
        obj, _ = e2e.wait_for(ns_a, "v2wjob", name,
                              lambda o: (condition(o, "Accepted") or {}).get("reason") == "SecretMissing", timeout=60,
                              what="Accepted=False/SecretMissing")
        accepted = condition(obj, "Accepted")
        assert accepted["status"] == "False" and obj["status"]["phase"] == "Pending"
        assert accepted["message"] == f"Secret team-b-s3 not found in namespace {ns_a}; create it", accepted
        assert ns_b not in json.dumps(obj["status"])
    for ns in (ns_a, ns_b):
        assert json.loads(e2e.kubectl("get", "pytorchjobs", "-n", ns, "-o", "json").stdout)["items"] == []
    events = json.loads(e2e.kubectl("get", "events", "-n", ns_a, "-o", "json").stdout)["items"]
    assert {e["involvedObject"]["name"] for e in events if e["reason"] == "SecretMissing"} >= {"borrow", "sneaky"}
    assert json.loads(e2e.kubectl("get", "events", "-n", ns_b, "-o", "json").stdout)["items"] == []
    for ns in (ns_a, ns_b):
        e2e.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_pvc_uris_mount_only_claims_of_the_jobs_own_namespace(e2e):
    ns = e2e.namespace()
    for claim in ("models-a", "weights", "inputs-a"):
        _claim(e2e, ns, claim)
    doc = e2e.job("Video2WorldJob", "on-pvc", {
        "model": {"checkpoint": "pvc://models-a/video2world", "ditPath": "pvc://weights/dit.safetensors"},
        "input": {"uri": "pvc://inputs-a/clips/in.jpg", "prompt": "A tram turns a corner."},
        "suspend": True, **DISABLED})
    e2e.apply(ns, doc)
    e2e.wait_for(ns, "v2wjob", "on-pvc", phase_is("Suspended"), timeout=60, what="Suspended")
    pj = e2e.get(ns, "pytorchjob", "v2w-on-pvc")
    assert pj["metadata"]["namespace"] == ns
    for replica in pj["spec"]["pytorchReplicaSpecs"].values():
        pod = replica["template"]["spec"]
        claims = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        # Only a claim name: Kubernetes resolves it in the pod's (the job's) namespace.
        assert sorted(c["claimName"] for c in claims) == ["inputs-a", "models-a", "weights"]
        assert all(set(c) == {"claimName", "readOnly"} and c["readOnly"] is True for c in claims), claims
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert all(mounts[f"/mnt/pvc/{c['claimName']}"]["readOnly"] for c in claims), mounts

    # A pod can name no other namespace's claim: the Pod API has no such field (strict validation on the
    # API server), so the runtime pods built from this template mount claims of `ns` only.
    template = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns, **template["metadata"]},
           "spec": template["spec"]}
    ok = e2e.kubectl("create", "--dry-run=server", "--validate=strict", "-f", "-", input=json.dumps(pod), check=False)
    assert ok.returncode == 0, ok.stderr
    other = json.loads(json.dumps(pod))
    next(v for v in other["spec"]["volumes"] if "persistentVolumeClaim" in v)["persistentVolumeClaim"]["namespace"] = "kube-system"
    refused = e2e.kubectl("create", "--dry-run=server", "--validate=strict", "-f", "-", input=json.dumps(other),
                          check=False)
    assert refused.returncode != 0 and "unknown field" in refused.stderr and "namespace" in refused.stderr, refused.stderr

    # Claim names that are not plain names, and paths that climb, are refused at apply time, naming the field.
    bad_uris = ["pvc://../x.jpg", "pvc://claim/../../other/x.jpg", "pvc://claim/..", "pvc://Bad_Claim/x.jpg",
                "pvc:///x.jpg", "pvc://-claim/x.jpg", "pvc://claim.other/x.jpg", "pvc://%2e%2e/x.jpg",
                "pvc://claim name/x.jpg", "pvc://", f"pvc://{'a' * 10}/\u2028x.jpg"]
    for field, path in (("spec.input.uri", ("input", "uri")), ("spec.model.checkpoint", ("model", "checkpoint"))):
        for uri in bad_uris:
            bad = json.loads(json.dumps(doc))
            bad["metadata"]["name"] = "bad-pvc"
            bad["spec"][path[0]][path[1]] = uri
            refused = e2e.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False)
            assert refused.returncode != 0 and field in refused.stderr, (uri, refused.stdout, refused.stderr)
    # Results go to S3 only: an output on a claim is refused as well.
    bad = json.loads(json.dumps(doc))
    bad["metadata"]["name"] = "bad-pvc"
    bad["spec"]["output"]["uri"] = "pvc://results-a/out"
    refused = e2e.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0 and "spec.output.uri" in refused.stderr, refused.stderr
    assert e2e.get(ns, "v2wjob", "bad-pvc") is None


def test_runtime_pods_pass_the_restricted_pod_security_standard(e2e):
    """Whoever may create jobs in a namespace gets pods made there; a namespace that enforces the
    `restricted` Pod Security Standard still admits them (non-root, no privilege escalation, no capabilities,
    RuntimeDefault seccomp), and the root filesystem is read-only on top."""
    ns = e2e.namespace()
    e2e.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    _claim(e2e, ns, "inputs-a")
    e2e.apply(ns, e2e.job("Video2WorldJob", "strict", {
        "input": {"uri": "pvc://inputs-a/in.jpg", "prompt": "A tram turns a corner."}, "suspend": True, **DISABLED}))
    e2e.wait_for(ns, "v2wjob", "strict", phase_is("Suspended"), timeout=60, what="Suspended")
    template = e2e.get(ns, "pytorchjob", "v2w-strict")["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns, **template["metadata"]},
           "spec": template["spec"]}
    admitted = e2e.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert admitted.returncode == 0 and "Warning" not in admitted.stderr, admitted.stderr
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    # The check is live: the same pod with one capability added is refused.
    loose = json.loads(json.dumps(pod))
    loose["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_RAW"]
    refused = e2e.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(loose), check=False)
    assert refused.returncode != 0 and "PodSecurity" in refused.stderr, refused.stderr


_claim = make_claim


def test_a_claim_name_resolves_in_the_jobs_own_namespace(e2e):
    """Jobs in A and B name the same claim, which holds the input in B only. B's job reads it; A's job waits
    for a claim of that name in A (ClaimMissing, naming A), and once A has one, sees A's, not B's."""
    ns_a, ns_b = e2e.namespace(), e2e.namespace()
    _claim(e2e, ns_b, "shared")
    folder = e2e.workdir / "pvcs" / ns_b / "shared" / "clips"
    folder.mkdir(parents=True)
    (folder / "in.jpg").write_bytes(stack.sample_image(5, (96, 64)))
    spec = {"input": {"uri": "pvc://shared/clips/in.jpg", "prompt": "A tram turns a corner."},
            "runPolicy": {"backoffLimit": 0}, **DISABLED}
    for ns in (ns_b, ns_a):
        e2e.apply(ns, e2e.job("Video2WorldJob", "from-claim", spec))

    waiting, _ = e2e.wait_for(ns_a, "v2wjob", "from-claim",
                              lambda o: (condition(o, "Accepted") or {}).get("reason") == "ClaimMissing", timeout=60,
                              what="Accepted=False/ClaimMissing")
    assert f"PersistentVolumeClaim shared not found in namespace {ns_a}" in condition(waiting, "Accepted")["message"]
    assert waiting["status"]["phase"] == "Pending" and e2e.get(ns_a, "pytorchjob", "v2w-from-claim") is None
    pod_log = e2e.workdir / "executor" / "logs" / f"{ns_a}_v2w-from-claim_master-0.log"
    assert not pod_log.exists()
    _claim(e2e, ns_a, "shared")  # an empty claim of the same name in A

    b, _ = e2e.wait_for(ns_b, "v2wjob", "from-claim", phase_is("Succeeded", "Failed"), what="a final phase")
    assert b["status"]["phase"] == "Succeeded", b["status"]
    bucket, key = s3_key(b["status"]["outputs"][0]["uri"])
    assert e2e.minio.client().head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000
    a, _ = e2e.wait_for(ns_a, "v2wjob", "from-claim", phase_is("Succeeded", "Failed"), what="a final phase")
    assert a["status"]["phase"] == "Failed" and "pvc://shared/clips/in.jpg" in a["status"]["message"], a["status"]
    assert "no such file" in a["status"]["message"], a["status"]["message"]
