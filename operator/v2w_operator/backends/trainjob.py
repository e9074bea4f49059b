"""The TrainJob backend (`trainer.kubeflow.org/v1alpha1`, Kubeflow Trainer v2 on JobSet).

Two objects, both built here from the same configuration as the PyTorchJob (`child.py`):
- `runtime(config)`: the ClusterTrainingRuntime the chart installs once: the torch ML policy, and the runtime
  pod's parts that are the same for every job (image default, command, security context, the base volumes,
  the exit-code policy and the restarts after a retryable failure);
- `build(...)`: one TrainJob per job, referencing that runtime (`spec.runtimeRef`) and carrying what is the
  job's own: through `spec.trainer` the image, arguments (the run configuration), env, node count, processes and
  resources per node; through the runtime patch of our manager the pod labels, the job's claims, nodeSelector,
  tolerations and ServiceAccount.
Trainer merges the two into a JobSet whose pods equal the PyTorchJob's (a test merges them as Trainer does and
compares). Fields Trainer v2.2 has no place for are listed in the README ("Backends").
"""

from __future__ import annotations

import copy
import re
from typing import Any

from v2w_api.spec import BestOfNJobSpec, JobSpecCommon, Video2WorldJobSpec

from ..config import OperatorConfig
from ..kueue import QUEUE_LABEL
from .base import ChildView, Failure, State, parse_time
from .child import (COMMAND, CONTAINER_SECURITY_CONTEXT, MANAGED_BY, LABEL_MANAGED_BY, POD_SECURITY_CONTEXT,
                    Unbuildable, base_volumes, child_metadata, claim_volumes, env, image, labels, output_prefix,
                    placement, resources, run_config, runtime_args)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
KIND = "TrainJob"
RUNTIME_KIND = "ClusterTrainingRuntime"
RUNTIME_PLURAL = "clustertrainingruntimes"
NODE = "node"  # the replicated job and the container the torch plugin configures (PET_* env, numNodes)
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
FRAMEWORK_LABEL = "trainer.kubeflow.org/framework"
PATCH_MANAGER = "video2world.io/operator"  # our entry in spec.runtimePatches (Kueue keeps its own)
MAX_ARG_CHARS = 65536  # the TrainJob CRD's limit on one trainer argument
# The runtime's exit codes that fail the job at once (runtime/v2w_runtime/runner.py); any other restarts it.
PERMANENT_EXIT_CODES = [1, 2, 3]
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# JobSet names its pods <name>-<replicated job>-<job index>-<pod index>; a hostname holds 63 characters.
MAX_NAME = 63 - len(f"-{NODE}-0-0")


class TrainJobBackend:
    kind = KIND
    group = GROUP
    version = VERSION
    plural = PLURAL
    install_hint = ("the TrainJob CRD (trainer.kubeflow.org/v1alpha1) is not installed; install Kubeflow Trainer v2 "
                    "(and JobSet), or set the chart's backend to pytorchjob")

    def build(self, kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
              config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
        return build(kind, name, namespace, uid, spec, config, batch_uri)

    def view(self, obj: dict[str, Any]) -> ChildView:
        return view(obj)

    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        return {"spec": {"suspend": suspend}}

    def backoff_limit(self, spec: JobSpecCommon, config: OperatorConfig) -> int:
        return config.training_runtime_max_restarts  # the runtime's, for every job (README: "Backends")


def runtime(config: OperatorConfig) -> dict[str, Any]:
    """The ClusterTrainingRuntime every TrainJob of ours references (the chart renders the same)."""
    volumes, mounts = base_volumes(config)
    container = {
        "name": NODE,
        "image": config.runtime_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(COMMAND),
        "volumeMounts": mounts,
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        # A placeholder: each TrainJob sets its node's GPUs (and CPU, memory) in spec.trainer.resourcesPerNode.
        "resources": {"limits": {config.gpu_resource_name: 1}},
    }
    pod = {
        "metadata": {"labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "spec": {
            "restartPolicy": "Never",  # retries are the JobSet's: maxRestarts below
            "automountServiceAccountToken": False,
            "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
            "volumes": volumes,
            "containers": [container],
        },
    }
    job = {
        "metadata": {"labels": {ANCESTOR_LABEL: "trainer"}},
        "spec": {
            "backoffLimit": 0,
            # Bad input, a refused guardrail and failed videos fail the job at once, as the PyTorchJob's ExitCode
            # policy does; a killed worker or an unreachable store restarts it (the JobSet's maxRestarts).
            "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
                "containerName": NODE, "operator": "In", "values": list(PERMANENT_EXIT_CODES)}}]},
            "template": pod,
        },
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": RUNTIME_KIND,
        "metadata": {"name": config.training_runtime_name,
                     "labels": {FRAMEWORK_LABEL: "torch"}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {"spec": {
                "replicatedJobs": [{"name": NODE, "replicas": 1, "template": job}],
                "failurePolicy": {
                    "maxRestarts": config.training_runtime_max_restarts,
                    "rules": [{"action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]}],
                },
            }},
        },
    }


def build(kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
          config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
    """The TrainJob for a job, owned by it (garbage-collected with it)."""
    metadata = child_metadata(kind, name, namespace, uid, spec, config)
    _check_name(metadata["name"])
    run = run_config(kind, name, spec, config, output_prefix(spec, namespace, name), batch_uri)
    par = spec.parallelism
    trainer = {
        "image": image(spec, config),
        "command": list(COMMAND),
        "args": runtime_args(kind, run, config, limit=MAX_ARG_CHARS),
        "env": env(spec, config),
        "numNodes": par.nodes,
        "numProcPerNode": par.effective_gpus_per_node,
        "resourcesPerNode": resources(spec, config),
    }
    train_spec: dict[str, Any] = {
        "runtimeRef": {"name": config.training_runtime_name, "apiGroup": GROUP, "kind": RUNTIME_KIND},
        "trainer": trainer,
        "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
            "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": _pod_patch(kind, name, spec, config)}}}],
        }}}}],
        "suspend": spec.suspend,
    }
    if spec.run_policy.active_deadline_seconds is not None:
        train_spec["activeDeadlineSeconds"] = spec.run_policy.active_deadline_seconds
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": train_spec}


def _pod_patch(kind: str, name: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
               config: OperatorConfig) -> dict[str, Any]:
    """What the job adds to the runtime's pod (a strategic merge: volumes and mounts are added by name)."""
    pod: dict[str, Any] = {}
    claims, mounts = claim_volumes(spec, config)
    if claims:
        pod["volumes"] = claims
        pod["containers"] = [{"name": NODE, "volumeMounts": mounts}]
    pod.update({k: v for k, v in placement(spec).items() if k != "priorityClassName"})  # no place for it (README)
    return {"metadata": {"labels": labels(kind, name)}, **({"spec": pod} if pod else {})}


def _check_name(child: str) -> None:
    if not _LABEL_1035.match(child) or len(child) > MAX_NAME:
        raise Unbuildable(f"the TrainJob would be named {child}: Trainer v2 needs a DNS label (lower-case letters, "
                          f"digits and '-', no '.') of at most {MAX_NAME} characters for its pods' host names; "
                          "rename the job")


# Trainer's condition types (those that are True) and the state each says, first match wins.
_STATES: tuple[tuple[str, State], ...] = (("Failed", "Failed"), ("Complete", "Succeeded"), ("Suspended", "Suspended"))


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def _failure(reason: str) -> Failure | None:
    if reason == "DeadlineExceeded":  # Trainer's, at spec.activeDeadlineSeconds
        return "DeadlineExceeded"
    if reason == "ReachedMaxRestarts":  # the JobSet's, once failurePolicy.maxRestarts are used up
        return "BackoffLimitExceeded"
    return None


def _ready(obj: dict[str, Any]) -> bool:
    """Every pod of some replicated job runs (JobSet counts a child Job ready once all its pods are)."""
    return any((job.get("ready") or 0) > 0 or (job.get("succeeded") or 0) > 0
               for job in (obj.get("status") or {}).get("jobsStatus") or [])


def view(obj: dict[str, Any]) -> ChildView:
    """A TrainJob as the status reads it. Trainer says Complete, Failed and Suspended; that pods run is read from
    its JobSet's job counts (`status.jobsStatus`). It records no start time: the start is its creation, or its
    last resume (as Trainer counts activeDeadlineSeconds); the completion is its Complete or Failed condition's."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    conditions = _conditions(obj)
    suspended = bool(spec.get("suspend"))
    found = next(((state, conditions[type_]) for type_, state in _STATES if type_ in conditions), None)
    state, condition = found or ("Running" if _ready(obj) else "Created", {})
    reason, message = str(condition.get("reason") or ""), str(condition.get("message") or "")
    resumed = next((c for c in (obj.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Suspended" and c.get("status") == "False"), None)
    start = None if suspended else parse_time((resumed or {}).get("lastTransitionTime") or meta.get("creationTimestamp"))
    done = parse_time(condition.get("lastTransitionTime")) if state in ("Succeeded", "Failed") else None
    return ChildView(kind=KIND, name=meta.get("name") or "", uid=meta.get("uid"), state=state, reason=reason,
                     message=message, start_time=start, completion_time=done,
                     failure=_failure(reason) if state == "Failed" else None,
                     queue=(meta.get("labels") or {}).get(QUEUE_LABEL) or None, suspended=suspended)


BACKEND = TrainJobBackend()
