"""Builds what runs a Video2WorldPool's workers: their configuration, Deployment, ServiceAccount and RoleBinding.

Pure functions of the pool, like the PyTorchJob builder. A worker pod is a job's runtime pod (the same image,
security context, volumes, cache, S3 environment: `child.pod_template` makes both) with three differences:
it runs `v2w_runtime.worker` with the pool's `WorkerConfig`, it knows its own name and namespace (its claims
carry them), and it talks to the API server as the pool's own ServiceAccount, bound to the chart's worker role
(Leases only: it reads its jobs' settings from their Leases and writes its claims there, nothing else).
"""

from __future__ import annotations

import hashlib
from typing import Any

from v2w_api import API_VERSION, VIDEO2WORLD_POOL
from v2w_api.lease import LABEL_POOL, LEASE_DURATION_SECONDS
from v2w_api.pool import Video2WorldPoolSpec
from v2w_api.spec import GenerationSpec, JobSpecCommon, OutputSpec
from v2w_api.worker import WorkerConfig

from .backends import child
from .config import OperatorConfig

CONTAINER_NAME = "worker"
WORKER_MODULE = "v2w_runtime.worker"
ANNOTATION_CONFIG_HASH = "video2world.io/worker-config-sha256"
READY_FILE = "/tmp/v2w-worker-ready"  # on the pod's own /tmp volume


def resource_name(pool: str) -> str:
    """The Deployment, ServiceAccount and RoleBinding of a pool are all named so."""
    return f"v2wpool-{pool}"


def labels(pool: str) -> dict[str, str]:
    return {LABEL_POOL: pool, child.LABEL_MANAGED_BY: child.MANAGED_BY}


def selector(pool: str) -> str:
    """The worker pods' label selector, as the scale subresource and `kubectl` take it."""
    return f"{LABEL_POOL}={pool}"


def worker_config(pool: str, spec: Video2WorldPoolSpec, config: OperatorConfig) -> WorkerConfig:
    """What each worker loads, with the operator's default checkpoints filled in as `child.run_config` fills
    them into a job's run: so a job and its pool compare equal where both leave a default."""
    model = spec.model.model_copy(update={"checkpoint": spec.model.checkpoint or config.default_checkpoint(spec.model.size)})
    refiner = spec.prompt_refiner.model_copy(
        update={"checkpoint": spec.prompt_refiner.checkpoint or config.refiner_checkpoint})
    guardrail = spec.guardrail
    if guardrail.enabled:
        guardrail = guardrail.model_copy(update={"checkpoint": guardrail.checkpoint or config.guardrail_checkpoint})
    return WorkerConfig(pool=pool, model=model,
                        generation=GenerationSpec(resolution=spec.generation.resolution, fps=spec.generation.fps),
                        prompt_refiner=refiner, guardrail=guardrail, parallelism=spec.parallelism,
                        performance=spec.performance, critic=spec.critic, input_hosts=config.input_hosts,
                        lease_duration_seconds=LEASE_DURATION_SECONDS)


def job_shaped(spec: Video2WorldPoolSpec) -> JobSpecCommon:
    """The pool's settings in the shape the runtime pod builder reads (a job's groups; no output prefix: each
    job brings its own)."""
    output = OutputSpec.model_construct(uri="", endpoint=spec.output.endpoint, region=spec.output.region,
                                        credentials_secret=spec.output.credentials_secret, cleanup_policy="Retain")
    return JobSpecCommon.model_construct(
        model=spec.model, generation=GenerationSpec(resolution=spec.generation.resolution, fps=spec.generation.fps),
        prompt_refiner=spec.prompt_refiner, guardrail=spec.guardrail, parallelism=spec.parallelism,
        performance=spec.performance, output=output, scheduling=spec.scheduling,
        run_policy=JobSpecCommon.model_fields["run_policy"].default_factory(), suspend=False, pool_ref=None)


def _claim(uri: str | None) -> str | None:
    return uri[len("pvc://"):].split("/", 1)[0] if uri and uri.startswith("pvc://") else None


def volume_claims(spec: Video2WorldPoolSpec, config: OperatorConfig) -> set[str]:
    """The PersistentVolumeClaims the workers mount: the job pod's for the pool's settings, and the critic's."""
    critic = _claim(spec.critic.checkpoint if spec.critic else None)
    return child.volume_claims(job_shaped(spec), config) | ({critic} if critic else set())


def worker_args(pool: str, spec: Video2WorldPoolSpec, config: OperatorConfig) -> list[str]:
    return ["--module", WORKER_MODULE, "--config", worker_config(pool, spec, config).to_yaml(),
            *config.runtime_extra_args]


def _owner(pool: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": VIDEO2WORLD_POOL.kind, "name": pool, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


def _metadata(pool: str, namespace: str, uid: str) -> dict[str, Any]:
    return {"name": resource_name(pool), "namespace": namespace, "labels": labels(pool),
            "ownerReferences": [_owner(pool, uid)]}


def pod_template(pool: str, spec: Video2WorldPoolSpec, config: OperatorConfig) -> dict[str, Any]:
    args = worker_args(pool, spec, config)
    template = child.pod_template(VIDEO2WORLD_POOL.kind, pool, job_shaped(spec), config, args, CONTAINER_NAME)
    template["metadata"] = {"labels": labels(pool),
                            # A changed configuration is a changed template: the Deployment rolls the workers.
                            "annotations": {ANNOTATION_CONFIG_HASH: hashlib.sha256(args[3].encode()).hexdigest()}}
    pod = template["spec"]
    container = pod["containers"][0]
    container["env"] += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "V2W_READY_FILE", "value": READY_FILE},
        # torchrun (v2w-launch) on one pod: its GPUs' processes, and a rendezvous of its own on a free local port
        # (a PyTorchJob's controller sets these for its pods; nothing does for a Deployment's).
        {"name": "PET_NPROC_PER_NODE", "value": str(spec.parallelism.effective_gpus_per_node)},
        {"name": "PET_STANDALONE", "value": "1"},
    ]
    # Ready once the worker has its models loaded (it writes the file then, and removes it when it stops).
    container["readinessProbe"] = {"exec": {"command": ["test", "-e", READY_FILE]}, "periodSeconds": 2}
    claim = _claim(spec.critic.checkpoint if spec.critic else None)
    if claim and not any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in pod["volumes"]):
        volume = f"pvc-{len(pod['volumes'])}"
        pod["volumes"].append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        container["volumeMounts"].append({"name": volume, "mountPath": f"{config.pvc_mount_root}/{claim}",
                                          "readOnly": True})
    # The worker claims jobs through the API server, as the pool's own ServiceAccount (Leases only).
    pod["serviceAccountName"] = resource_name(pool)
    pod["automountServiceAccountToken"] = True
    # On a stop (scale down, a new spec) the worker lets its job's Lease go, so another worker takes it at once.
    pod["terminationGracePeriodSeconds"] = LEASE_DURATION_SECONDS
    return template


def deployment(pool: str, namespace: str, uid: str, spec: Video2WorldPoolSpec, config: OperatorConfig) -> dict[str, Any]:
    """The workers: one pod each, owned by the pool. A rollout replaces them one at a time and never asks for
    more GPUs than the pool holds (maxSurge 0)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(pool, namespace, uid),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {LABEL_POOL: pool}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": pod_template(pool, spec, config),
        },
    }


def service_account(pool: str, namespace: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(pool, namespace, uid)}


def role_binding(pool: str, namespace: str, uid: str, cluster_role: str) -> dict[str, Any]:
    """The pool's ServiceAccount gets the chart's worker role in the pool's namespace only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(pool, namespace, uid),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": resource_name(pool), "namespace": namespace}],
    }
