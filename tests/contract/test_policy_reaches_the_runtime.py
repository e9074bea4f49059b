"""The platform's policy on http(s) inputs travels in the run configuration: the operator's real builder renders it
into the PyTorchJob, the runtime's real parser reads it back, and the runtime's entry point fetches every input
under it. One contract, as every other setting (test_spec_reaches_the_runtime.py)."""

from __future__ import annotations

import pytest

from tests.contract.test_spec_reaches_the_runtime import base
from v2w_api import KINDS
from v2w_api.policy import InputHostPolicy
from v2w_operator.backends import pytorchjob
from v2w_operator.config import OperatorConfig
from v2w_runtime import runner, storage
from v2w_runtime.cli import parse

PROGRAMS = {"v2w_runtime.video2world": "video2world", "v2w_runtime.bestofn": "bestofn"}


def rendered_args(kind: str, config: OperatorConfig) -> tuple[str, list[str]]:
    doc = {"apiVersion": "video2world.io/v1alpha1", "kind": kind, "metadata": {"name": "job-a"}, "spec": base(kind)}
    spec = KINDS[kind][1].model_validate(doc).spec
    pj = pytorchjob.build(kind, "job-a", "team-a", "uid-1", spec, config)
    args = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    return PROGRAMS[args[1]], args[2:]


@pytest.mark.parametrize("kind", ["Video2WorldJob", "BestOfNJob"])
def test_the_operators_policy_is_what_the_runtime_reads(kind):
    config = OperatorConfig.from_env({"V2W_POLICY_ALLOWED_HOSTS": "files.corp.internal *.svc.cluster.local",
                                      "V2W_POLICY_ALLOWED_CIDRS": "10.20.0.0/16 fd00:ec2::/32"})
    program, args = rendered_args(kind, config)
    assert "allowedCIDRs:" in args[1]  # readable in `kubectl get pytorchjob -o yaml`
    assert parse(program, args).input_hosts == InputHostPolicy(
        allowed_hosts=["files.corp.internal", "*.svc.cluster.local"], allowed_cidrs=["10.20.0.0/16", "fd00:ec2::/32"])


def test_with_no_exceptions_a_job_still_carries_the_policy():
    """An empty policy is the strict one; only a run started by hand has none."""
    program, args = rendered_args("Video2WorldJob", OperatorConfig())
    assert parse(program, args).input_hosts == InputHostPolicy()
    assert parse("video2world", ["--input_path", "in.jpg", "--prompt", "a bus"]).input_hosts is None


def test_the_runtime_fetches_under_the_rendered_policy(monkeypatch):
    config = OperatorConfig(policy_allowed_cidrs=["10.20.0.0/16"])
    program, args = rendered_args("Video2WorldJob", config)
    monkeypatch.setattr(runner, "verify_only", lambda config, mode: 0)  # stop right after the setup
    try:
        assert runner.main(program, lambda run: 1, [*args, "--verify_only"]) == 0
        assert storage._input_hosts == config.input_hosts
        with pytest.raises(storage.StorageError, match="refused range 169.254.0.0/16"):
            storage.http_download_file("http://169.254.169.254/latest/meta-data/", storage.Path("/nonexistent/x"))
    finally:
        storage.use_input_hosts(None)
