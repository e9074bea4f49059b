"""Both backends run the same pod: the TrainJob's pod, merged from the ClusterTrainingRuntime and the TrainJob as
Trainer v2.2 merges them, equals the PyTorchJob's pod template, for every example and the spec fields that reach
the pod (claims, placement, resources, image, several nodes).

Trainer's merge (pkg/runtime/core/trainingruntime.go and the torch plugin): the runtime's job template, then a
strategic merge patch of each runtimePatches entry (volumes and containers by name, volumeMounts by mountPath,
maps merged, other fields replaced), then spec.trainer: image, command, args, env (merged by name) and
resourcesPerNode (replacing the container's resources) on the container named `node`, plus its PET_* env."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.api.cases import child_examples, load_example
from v2w_api import KINDS
from v2w_operator.backends import pytorchjob, trainjob
from v2w_operator.config import OperatorConfig

CONFIG = OperatorConfig(checkpoint_2b="pvc://models/2b", refiner_checkpoint="s3://models/reason1",
                        guardrail_checkpoint="s3://models/guard", s3_endpoint="http://minio:9000",
                        queue_name="team-queue", cache_claim_name="v2w-cache", runtime_extra_args=["--num_frames", "9"])
MERGE_KEYS = {"volumes": "name", "containers": "name", "volumeMounts": "mountPath", "env": "name"}


def merge(base: Any, patch: Any, key: str = "") -> Any:
    """A strategic merge patch, for the fields a pod template has here."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        by = MERGE_KEYS[key]
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            at = next((i for i, have in enumerate(out) if have[by] == item[by]), None)
            if at is None:
                out.append(copy.deepcopy(item))
            else:
                out[at] = merge(out[at], item)
        return out
    return copy.deepcopy(patch)


def trainjob_pod(tj: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    template = copy.deepcopy(job["template"])
    for patch in tj["spec"].get("runtimePatches") or []:
        for rjob in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            if rjob["name"] == job["name"]:
                template = merge(template, rjob["template"])
    pod = template["spec"]["template"]
    trainer = tj["spec"]["trainer"]
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == trainjob.NODE]
    container.update(image=trainer["image"], command=trainer["command"], args=trainer["args"],
                     resources=trainer["resourcesPerNode"])
    container["env"] = merge(container.get("env") or [], trainer["env"], "env")
    return pod


def cases() -> list[tuple[str, dict[str, Any]]]:
    found = [(path.name, {}) for path in child_examples()]
    found.append(("video2world-job.yaml", {
        "parallelism": {"gpus": 4, "gpusPerNode": 2},
        "scheduling": {"image": "registry.example.com/v2w/runtime:2", "cpu": "8", "memory": "64Gi",
                       "nodeSelector": {"pool": "h100"}, "serviceAccountName": "runner",
                       "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "output": {"uri": "s3://v2w-results/jobs", "credentialsSecret": {"name": "team-s3"}, "region": "eu-west-1"},
    }))
    return found


@pytest.mark.parametrize("example, change", cases(), ids=lambda c: c if isinstance(c, str) else ("changed" if c else "as-is"))
def test_the_trainjob_pod_is_the_pytorchjob_pod(example, change):
    doc = load_example(example)
    doc["spec"].update(change)
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    pj = pytorchjob.build(doc["kind"], "job-a", "team-a", "uid-1", spec, CONFIG, batch_uri="s3://v2w-results/jobs/team-a/job-a/batch.json")
    tj = trainjob.build(doc["kind"], "job-a", "team-a", "uid-1", spec, CONFIG, batch_uri="s3://v2w-results/jobs/team-a/job-a/batch.json")
    expected = copy.deepcopy(pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"])
    got = trainjob_pod(tj, trainjob.runtime(CONFIG))

    # What differs by design: the container's name (each controller looks for its own), the restart policy
    # (the PyTorchJob's is on the replica; the TrainJob's pods never restart in place, their JobSet does) and a
    # pod PriorityClass (no place for it in Trainer v2.2's runtime patch: README, "Backends").
    assert got["spec"].pop("restartPolicy") == "Never"
    expected["spec"].pop("priorityClassName", None)
    expected["spec"]["containers"][0]["name"] = trainjob.NODE
    assert got == expected
    assert tj["spec"]["trainer"]["numNodes"] * tj["spec"]["trainer"]["numProcPerNode"] == spec.parallelism.gpus
    assert tj["spec"]["trainer"]["numProcPerNode"] == int(pj["spec"]["nprocPerNode"])
