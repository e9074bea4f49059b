"""The PyTorchJob backend (`kubeflow.org/v1`, the Kubeflow training-operator): the default child of a job.

The runtime pod is `child.pod_template`; this module wraps it in Master (and Worker) replicas and maps the
job's run policy onto the PyTorchJob's `runPolicy`, and reads a PyTorchJob's conditions back as a `ChildView`.
"""

from __future__ import annotations

from typing import Any

from v2w_api.spec import BestOfNJobSpec, JobSpecCommon, Video2WorldJobSpec

from ..config import OperatorConfig
from ..kueue import QUEUE_LABEL
from .base import ChildView, Failure, State, parse_time
from .child import child_metadata, output_prefix, pod_template, run_config, runtime_args

GROUP = "kubeflow.org"
VERSION = "v1"
PLURAL = "pytorchjobs"
KIND = "PyTorchJob"
CONTAINER_NAME = "pytorch"  # the training-operator finds the main container by this name


class PyTorchJobBackend:
    kind = KIND
    group = GROUP
    version = VERSION
    plural = PLURAL
    install_hint = ("the PyTorchJob CRD (kubeflow.org/v1) is not installed; install the Kubeflow training-operator, "
                    "or set the chart's backend to trainjob")

    def build(self, kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
              config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
        return build(kind, name, namespace, uid, spec, config, batch_uri)

    def view(self, obj: dict[str, Any]) -> ChildView:
        return view(obj)

    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        return {"spec": {"runPolicy": {"suspend": suspend}}}

    def backoff_limit(self, spec: JobSpecCommon, config: OperatorConfig) -> int:
        return spec.run_policy.backoff_limit


def build(kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
          config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
    """The PyTorchJob for a job, owned by it (garbage-collected with it)."""
    run = run_config(kind, name, spec, config, output_prefix(spec, namespace, name), batch_uri)
    template = pod_template(kind, name, spec, config, runtime_args(kind, run, config), CONTAINER_NAME)
    par = spec.parallelism
    # Bad input, a refused guardrail and failed videos (exit 1-3) fail the job at once; a killed worker or an
    # unreachable store (137, 143, 138) restarts it, up to runPolicy.backoffLimit (runtime/v2w_runtime/runner.py).
    replica = {"restartPolicy": "ExitCode", "template": template}
    replica_specs: dict[str, Any] = {"Master": {"replicas": 1, **replica}}
    if par.nodes > 1:
        replica_specs["Worker"] = {"replicas": par.nodes - 1, **replica}
    run_policy: dict[str, Any] = {
        "cleanPodPolicy": "None",  # keep finished pods for their logs; ttlSecondsAfterFinished removes them
        "backoffLimit": spec.run_policy.backoff_limit,
        "suspend": spec.suspend,
    }
    if spec.run_policy.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = spec.run_policy.active_deadline_seconds
    if spec.run_policy.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = spec.run_policy.ttl_seconds_after_finished
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": child_metadata(kind, name, namespace, uid, spec, config),
        "spec": {
            "nprocPerNode": str(par.effective_gpus_per_node),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replica_specs,
        },
    }


def state(obj: dict[str, Any]) -> tuple[State, dict[str, Any]]:
    """The PyTorchJob's current state (Succeeded, Failed, Suspended, Restarting, Running, Created) and its condition."""
    conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
    order: tuple[State, ...] = ("Succeeded", "Failed", "Suspended", "Restarting", "Running", "Created")
    for name in order:
        cond = conditions.get(name)
        if cond and cond.get("status") == "True":
            return name, cond
    return "Created", {}


def _failure(reason: str, message: str) -> Failure | None:
    if "Deadline" in reason or "deadline" in message:
        return "DeadlineExceeded"
    if "BackoffLimit" in reason or "backoff" in message.lower():
        return "BackoffLimitExceeded"
    return None


def view(obj: dict[str, Any]) -> ChildView:
    """A PyTorchJob as the status reads it: the state its conditions say, and what Kueue acts on."""
    name, condition = state(obj)
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return ChildView(
        kind=KIND, name=meta.get("name") or "", uid=meta.get("uid"), state=name, reason=reason, message=message,
        start_time=parse_time(status.get("startTime")), completion_time=parse_time(status.get("completionTime")),
        failure=_failure(reason, message) if name == "Failed" else None,
        queue=(meta.get("labels") or {}).get(QUEUE_LABEL) or None,
        suspended=bool(((obj.get("spec") or {}).get("runPolicy") or {}).get("suspend")))


BACKEND = PyTorchJobBackend()
