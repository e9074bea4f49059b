"""The PyTorchJobs the builder makes are valid for the published PyTorchJob CRD (training-operator
1.9): a server-side dry run with strict field validation refuses unknown or mistyped fields."""

from __future__ import annotations

import pytest
import yaml

import stack
from tests.api.cases import EXAMPLES, child_examples, load_example
from v2w_operator.backends import pytorchjob
from v2w_api import KINDS
from v2w_operator.config import OperatorConfig

pytestmark = pytest.mark.cluster

CONFIG = OperatorConfig(checkpoint_2b="s3://models/2b", refiner_checkpoint="s3://models/reason1",
                        guardrail_checkpoint="s3://models/guard", s3_endpoint="http://minio:9000",
                        queue_name="team-queue", runtime_extra_args=["--num_frames", "9"])


@pytest.fixture(scope="module")
def pytorchjob_crd(kube):
    stack.install_crds(kube, EXAMPLES.parent)
    return kube


@pytest.mark.parametrize("path", child_examples(), ids=lambda p: p.name)
def test_built_pytorchjob_passes_the_crd_schema(pytorchjob_crd, path):
    doc = load_example(path.name)
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    manifest = pytorchjob.build(doc["kind"], doc["metadata"]["name"], "default", "0d3b1c2e-0000-4000-8000-000000000001",
                                spec, CONFIG, batch_uri="s3://jobs/default/batch.json")
    out = pytorchjob_crd.kubectl("create", "--dry-run=server", "--validate=strict", "-o", "yaml", "-f", "-",
                                 input=yaml.safe_dump(manifest), check=False)
    assert out.returncode == 0, out.stderr
    stored = yaml.safe_load(out.stdout)
    # Nothing was pruned: the server kept every field the builder wrote.
    assert stored["spec"]["pytorchReplicaSpecs"] == manifest["spec"]["pytorchReplicaSpecs"] or \
        _no_loss(manifest["spec"], stored["spec"])


def _no_loss(sent, kept) -> bool:
    if isinstance(sent, dict):
        return all(k in kept and _no_loss(v, kept[k]) for k, v in sent.items())
    if isinstance(sent, list):
        return len(sent) == len(kept) and all(_no_loss(a, b) for a, b in zip(sent, kept))
    return str(sent) == str(kept)


def test_the_dry_run_does_refuse_a_wrong_field(pytorchjob_crd):
    doc = load_example("video2world-job.yaml")
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    manifest = pytorchjob.build(doc["kind"], "x", "default", "0d3b1c2e-0000-4000-8000-000000000002", spec, CONFIG)
    manifest["spec"]["runPolicy"]["backoffLimits"] = 3  # a typo the schema must catch
    out = pytorchjob_crd.kubectl("create", "--dry-run=server", "--validate=strict", "-f", "-",
                                 input=yaml.safe_dump(manifest), check=False)
    assert out.returncode != 0 and "backoffLimits" in out.stderr
