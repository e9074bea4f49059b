"""The TrainJobs and the ClusterTrainingRuntime the TrainJob backend builds are valid for Kubeflow Trainer
v2.2.0's published CRDs (fetched by build.sh from its Go module): a server-side dry run with strict field
validation refuses unknown or mistyped fields and runs the CRDs' CEL rules (a DNS-1035 name, immutable fields)."""

from __future__ import annotations

import pytest
import yaml

import stack
from tests.api.cases import child_examples, load_example
from tests.cluster.test_pytorchjob_schema import _no_loss
from v2w_api import KINDS
from v2w_operator.backends import trainjob
from v2w_operator.config import OperatorConfig

pytestmark = pytest.mark.cluster

CONFIG = OperatorConfig(backend="trainjob", checkpoint_2b="pvc://models/2b", refiner_checkpoint="s3://models/reason1",
                        guardrail_checkpoint="s3://models/guard", s3_endpoint="http://minio:9000",
                        queue_name="team-queue", cache_host_path="/var/cache/v2w", runtime_extra_args=["--num_frames", "9"])


@pytest.fixture(scope="module")
def trainer_crds(kube):
    stack.install_trainer_crds(kube)
    return kube


def dry_run(kube, manifest: dict):
    return kube.kubectl("create", "--dry-run=server", "--validate=strict", "-o", "yaml", "-f", "-",
                        input=yaml.safe_dump(manifest), check=False)


@pytest.mark.parametrize("path", child_examples(), ids=lambda p: p.name)
def test_built_trainjob_passes_the_crd_schema(trainer_crds, path):
    doc = load_example(path.name)
    doc["spec"]["model"] = {**doc["spec"].get("model", {}), "checkpoint": "pvc://models/2b"}  # a claim to mount
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    manifest = trainjob.build(doc["kind"], doc["metadata"]["name"], "default", "0d3b1c2e-0000-4000-8000-000000000001",
                              spec, CONFIG, batch_uri="s3://jobs/default/batch.json")
    out = dry_run(trainer_crds, manifest)
    assert out.returncode == 0, out.stderr
    stored = yaml.safe_load(out.stdout)
    assert _no_loss(manifest["spec"], stored["spec"]), "the server pruned fields the builder wrote"


def test_the_runtime_passes_the_crd_schema(trainer_crds):
    manifest = trainjob.runtime(CONFIG)
    out = dry_run(trainer_crds, manifest)
    assert out.returncode == 0, out.stderr
    assert _no_loss(manifest["spec"], yaml.safe_load(out.stdout)["spec"])


def test_the_dry_run_does_refuse_a_wrong_field(trainer_crds):
    doc = load_example("video2world-job.yaml")
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    manifest = trainjob.build(doc["kind"], "x", "default", "0d3b1c2e-0000-4000-8000-000000000002", spec, CONFIG)
    manifest["spec"]["trainer"]["numProcsPerNode"] = 1  # a typo the schema must catch
    out = dry_run(trainer_crds, manifest)
    assert out.returncode != 0 and "numProcsPerNode" in out.stderr
