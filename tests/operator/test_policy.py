"""The operator's side of the platform's policy: the shared table of cases (the same one the API server's admission
policy runs, tests/chart/test_admission_policy.py), its settings from the chart's environment, and a job it
refuses: Failed with PolicyDenied, and no PyTorchJob."""

from __future__ import annotations

import kopf
import pytest

from tests.operator.test_handlers import cluster, conditions, ensure, job  # noqa: F401 (the fixture)
from tests.policy_cases import CASES, POLICY, RUNTIME_IMAGE, Case
from v2w_api.policy import JobPolicy, http_host, image_allowed
from v2w_operator import handlers
from v2w_operator.config import OperatorConfig


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_table(case: Case):
    message = case.python_message()
    assert (message is not None) == case.refused, message
    if message:
        assert [part.split(": ", 1)[0] for part in message.split("; ")] == list(case.fields)


def test_the_defaults_refuse_every_override_and_every_private_host():
    strict = JobPolicy()
    assert not image_allowed("registry.example.com/x:1", RUNTIME_IMAGE, strict.image_prefixes)
    assert image_allowed(RUNTIME_IMAGE, RUNTIME_IMAGE, strict.image_prefixes)
    assert strict.service_account_violation("default") is None and strict.service_account_violation(None) is None
    assert str(strict.service_account_violation("admin")) == (
        "spec.scheduling.serviceAccountName: ServiceAccount admin is not allowed: a job may name default "
        "(policy.serviceAccounts.allowed)")
    for uri in ("http://10.0.0.1/a.jpg", "http://[fd00:ec2::254]/", "http://metadata.google.internal/"):
        assert strict.inputs.uri_refusal(uri), uri
    assert strict.inputs.uri_refusal("https://example.com/a.jpg") is None


@pytest.mark.parametrize("uri, host", [
    ("http://a:b@Example.COM:8080/x?y#z", "example.com"),
    ("https://[FE80::1]:443/p", "fe80::1"),
    ("http://h?q=@evil", "h"),
    ("http://h#@evil", "h"),
    ("http://a@b@c/", None),
])
def test_the_host_is_read_as_the_admission_policy_reads_it(uri, host):
    assert http_host(uri) == host


def test_settings_come_from_the_charts_environment():
    config = OperatorConfig.from_env({
        "V2W_POLICY_IMAGE_PREFIXES": "registry.example.com/video2world mirror.example.org/",
        "V2W_POLICY_SERVICE_ACCOUNTS": "v2w-runner",
        "V2W_POLICY_ALLOWED_HOSTS": "files.corp.internal *.svc.cluster.local",
        "V2W_POLICY_ALLOWED_CIDRS": "10.20.0.0/16 fd00:ec2::/32",
        "V2W_RUNTIME_IMAGE": RUNTIME_IMAGE,
    })
    assert config.policy == POLICY
    assert config.input_hosts == POLICY.inputs
    assert OperatorConfig.from_env({"V2W_POLICY_IMAGE_PREFIXES": ""}).policy == JobPolicy()


@pytest.mark.parametrize("env", [{"V2W_POLICY_ALLOWED_CIDRS": "10.0.0.1"}, {"V2W_POLICY_ALLOWED_CIDRS": "10.0.0.1/8"},
                                 {"V2W_POLICY_ALLOWED_HOSTS": "10.0.0.1"}])
def test_a_bad_policy_value_stops_the_operator_naming_it(env):
    with pytest.raises(ValueError, match="10.0.0.1"):
        OperatorConfig.from_env(env)


def test_a_refused_job_fails_with_policy_denied_and_gets_no_pytorchjob(cluster, monkeypatch):  # noqa: F811
    api, events, _ = cluster
    monkeypatch.setattr(handlers, "CONFIG", handlers.CONFIG.model_copy(update={"policy_allowed_cidrs": ["10.20.0.0/16"]}))

    def refused(spec):
        spec["input"]["uri"] = "http://169.254.169.254/latest/meta-data/"
        spec.setdefault("scheduling", {})["serviceAccountName"] = "admin"

    doc = job(mutate=refused)
    with pytest.raises(kopf.PermanentError):
        ensure(doc)
    written = doc["_patch"]
    message = ("spec.scheduling.serviceAccountName: ServiceAccount admin is not allowed: a job may name default "
               "(policy.serviceAccounts.allowed); spec.input.uri: host 169.254.169.254 is in the refused range "
               "169.254.0.0/16 (link-local, cloud metadata): allow it with policy.inputs.allowedCIDRs")
    assert written["phase"] == "Failed" and written["message"] == message
    assert conditions(written) == {"Accepted": ("False", "PolicyDenied"), "Failed": ("True", "PolicyDenied")}
    assert events[-1] == ("Warning", "PolicyDenied", message) and api.creates == 0

    allowed = job(name="job-b", mutate=lambda spec: spec["input"].update(uri="http://10.20.1.2/in.jpg"))
    assert ensure(allowed)["phase"] == "Pending" and api.creates == 1


def test_a_job_that_has_its_pytorchjob_is_not_failed_by_a_later_policy(cluster):  # noqa: F811
    api, _, _ = cluster
    doc = job(mutate=lambda spec: spec["input"].update(uri="http://169.254.169.254/in.jpg"))
    api.objects[("team-a", "v2w-job-a")] = {"metadata": {"name": "v2w-job-a"}}
    doc["status"] = {"phase": "Running", "pytorchJobName": "v2w-job-a"}
    assert "phase" not in ensure(doc) and api.creates == 0

