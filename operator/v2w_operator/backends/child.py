"""What every backend's child shares: its name, owner and labels, and the runtime pod it runs.

One module owns the translation from our spec to the runtime pod (run configuration, command, env, volumes,
security context, scheduling), so each backend only wraps that pod in its own kind of child and the two can
never drift apart. The child's name is deterministic (`v2w-<name>` / `bon-<name>`), which is what makes
creation idempotent across retries and restarts. What the runtime does travels as one run configuration
(`v2w_api.run.RunConfig`), rendered as YAML into the container's `--config` argument: a person reads it in
`kubectl get <child> -o yaml`, and the runtime parses it with the same models.
"""

from __future__ import annotations

import copy
from typing import Any

from v2w_api import API_VERSION, BEST_OF_N_JOB, VIDEO2WORLD_JOB, BestOfNJobSpec, Video2WorldJobSpec
from v2w_api.run import MAX_RENDERED_BYTES, RunConfig, RunOutput
from v2w_api.spec import JobSpecCommon

from .. import kueue
from ..config import OperatorConfig

LABEL_JOB_NAME = "video2world.io/job-name"
LABEL_JOB_KIND = "video2world.io/job-kind"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "video2world-operator"
KUEUE_QUEUE_LABEL = kueue.QUEUE_LABEL

CACHE_DIR = "/var/cache/v2w"
SHM_DIR = "/dev/shm"
RUNTIME_UID = 10001  # the runtime image's user and group (Dockerfile.runtime); a test holds the two together

_PREFIXES = {VIDEO2WORLD_JOB.kind: "v2w", BEST_OF_N_JOB.kind: "bon"}
_MODULES = {VIDEO2WORLD_JOB.kind: "v2w_runtime.video2world", BEST_OF_N_JOB.kind: "v2w_runtime.bestofn"}


def child_name(kind: str, name: str) -> str:
    return f"{_PREFIXES[kind]}-{name}"


def parent_of(child: str) -> tuple[str, str] | None:
    """The (kind, name) of the job whose child is named `child` (`child_name` read backwards), else None."""
    for kind, prefix in _PREFIXES.items():
        if child.startswith(f"{prefix}-") and len(child) > len(prefix) + 1:
            return kind, child[len(prefix) + 1:]
    return None


def output_prefix(spec: JobSpecCommon, namespace: str, name: str) -> str:
    """`s3://bucket/prefix/<namespace>/<name>`: every file of the job lives below it."""
    return f"{spec.output.uri.rstrip('/')}/{namespace}/{name}"


class Unbuildable(ValueError):
    """The job's child cannot be built from its spec: the job fails, naming why."""


class RunConfigTooLarge(Unbuildable):
    """The rendered run configuration does not fit one container argument."""


def run_config(kind: str, name: str, spec: Video2WorldJobSpec | BestOfNJobSpec, config: OperatorConfig,
               prefix: str, batch_uri: str | None = None) -> RunConfig:
    """What the runtime does for this job: the spec's groups, with the operator's default checkpoints filled in."""
    model = spec.model.model_copy(update={"checkpoint": spec.model.checkpoint or config.default_checkpoint(spec.model.size)})
    refiner = spec.prompt_refiner.model_copy(
        update={"checkpoint": spec.prompt_refiner.checkpoint or config.refiner_checkpoint})  # the critic's too
    guardrail = spec.guardrail
    if guardrail.enabled:
        guardrail = guardrail.model_copy(update={"checkpoint": guardrail.checkpoint or config.guardrail_checkpoint})
    common = dict(model=model, input=spec.input, generation=spec.generation, prompt_refiner=refiner,
                  guardrail=guardrail, parallelism=spec.parallelism, performance=spec.performance,
                  input_hosts=config.input_hosts)
    if isinstance(spec, Video2WorldJobSpec):
        # A single video is named after its job; an inline batch was stored beside the results (batch_uri).
        output = RunOutput(uri=prefix, video_name=f"{name}.mp4" if spec.input is not None else None)
        staged = batch_uri if spec.batch is not None else None
        return RunConfig(**common, batch_uri=spec.batch_uri or staged, output=output)
    return RunConfig(**common, best_of_n=spec.best_of_n, output=RunOutput(uri=prefix))


def runtime_args(kind: str, run: RunConfig, config: OperatorConfig, limit: int = MAX_RENDERED_BYTES) -> list[str]:
    """torchrun's arguments: the program, its run configuration, then the platform's extra flags.

    `limit`: the bytes one argument may hold in the child (a backend's CRD may allow fewer than a container)."""
    rendered = run.to_yaml()
    size = len(rendered.encode())
    if size > limit:
        raise RunConfigTooLarge(
            f"the run configuration is {size} bytes, more than the {limit} one container argument "
            "holds: shorten the prompts or the guardrail blocklist"
        )
    return ["--module", _MODULES[kind], "--config", rendered, *config.runtime_extra_args]


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """The reference that makes a child belong to its job: garbage-collected with it, found by its uid."""
    return {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


def batch_json(spec: Video2WorldJobSpec) -> list[dict[str, Any]]:
    """The inline batch in the seed's batch-JSON form, which the operator stores next to the results."""
    entries = []
    for entry in spec.batch or []:
        name = entry.output if entry.output.endswith(".mp4") else f"{entry.output}.mp4"
        item: dict[str, Any] = {"input_video": entry.input, "prompt": entry.prompt, "output_video": name}
        if entry.negative_prompt is not None:
            item["negative_prompt"] = entry.negative_prompt
        if entry.seed is not None:
            item["seed"] = entry.seed
        entries.append(item)
    return entries


def env(spec: JobSpecCommon, config: OperatorConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    secret = spec.output.credentials_secret
    secret_name = secret.name if secret else config.credentials_secret
    if secret_name:
        # Mounted by reference: the operator never copies a credential into the child.
        for var, key in (
            ("AWS_ACCESS_KEY_ID", secret.access_key_id_key if secret else "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", secret.secret_access_key_key if secret else "AWS_SECRET_ACCESS_KEY"),
        ):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
    endpoint = spec.output.endpoint or config.s3_endpoint
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    region = spec.output.region or config.s3_region
    if region:
        env.append({"name": "AWS_REGION", "value": region})
    env += [
        {"name": "V2W_PVC_ROOT", "value": config.pvc_mount_root},
        {"name": "V2W_CACHE_DIR", "value": CACHE_DIR},
        *([{"name": "V2W_CACHE_SIZE_LIMIT", "value": config.cache_size_limit}] if config.cache_size_limit else []),
        {"name": "HOME", "value": CACHE_DIR},  # as in the image: on the cache volume, writable
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    return env


def volume_claims(spec: JobSpecCommon, config: OperatorConfig) -> set[str]:
    """The PersistentVolumeClaims the pods mount: every `pvc://` URI of the spec, and of the operator's default
    checkpoints the job uses (what `run_config` fills in)."""
    refiner = spec.prompt_refiner.checkpoint or config.refiner_checkpoint
    guardrail = (spec.guardrail.checkpoint or config.guardrail_checkpoint) if spec.guardrail.enabled else None
    defaults = [spec.model.checkpoint or config.default_checkpoint(spec.model.size), refiner, guardrail]
    return spec.volume_claims() | {uri[len("pvc://"):].split("/", 1)[0] for uri in defaults
                                   if uri and uri.startswith("pvc://")}


def _cache_volume(config: OperatorConfig) -> dict[str, Any]:
    """$V2W_CACHE_DIR: the node's directory or a shared claim when the platform has one, else the pod's own."""
    if config.cache_host_path:
        # "Directory", not "DirectoryOrCreate": a directory the kubelet creates is root's, unwritable to the
        # runtime's user; a missing one is named in the pod's events instead.
        return {"hostPath": {"path": config.cache_host_path, "type": "Directory"}}
    if config.cache_claim_name:
        return {"persistentVolumeClaim": {"claimName": config.cache_claim_name}}
    return {"emptyDir": {}}


# The runtime pod's own volumes, the same on every job: writable /tmp, the checkpoint cache, a real /dev/shm.
_BASE_MOUNTS = (("tmp", "/tmp"), ("cache", CACHE_DIR), ("dshm", SHM_DIR))
# Read-only root, no privileges, the image's user: the same for every backend (the chart's runtime too).
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUNTIME_UID,
    "runAsGroup": RUNTIME_UID,
    "fsGroup": RUNTIME_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
COMMAND = ["v2w-launch"]  # torchrun, with the failing worker's exit code as the container's


def base_volumes(config: OperatorConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes (and their mounts) every runtime pod has, whatever its job."""
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", **_cache_volume(config)},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},  # NCCL and data loaders need a real /dev/shm
    ]
    return volumes, [{"name": name, "mountPath": path} for name, path in _BASE_MOUNTS]


def claim_volumes(spec: JobSpecCommon, config: OperatorConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The job's own volumes: each PersistentVolumeClaim it reads, read-only under the platform's mount root."""
    volumes, mounts = [], []
    for i, claim in enumerate(sorted(volume_claims(spec, config))):
        volumes.append({"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": f"pvc-{i}", "mountPath": f"{config.pvc_mount_root}/{claim}", "readOnly": True})
    return volumes, mounts


def resources(spec: JobSpecCommon, config: OperatorConfig) -> dict[str, Any]:
    """Each pod's resources: its node's GPUs (limits), and the CPU and memory the job asks for (requests)."""
    sched = spec.scheduling
    found: dict[str, Any] = {
        "limits": {sched.gpu_resource_name or config.gpu_resource_name: spec.parallelism.effective_gpus_per_node}}
    requests = {k: v for k, v in (("cpu", sched.cpu), ("memory", sched.memory)) if v}
    if requests:
        found["requests"] = requests
    return found


def image(spec: JobSpecCommon, config: OperatorConfig) -> str:
    return spec.scheduling.image or config.runtime_image


def labels(kind: str, name: str) -> dict[str, str]:
    """The labels of a job's child and its pods: whose they are, and who manages them."""
    return {LABEL_JOB_NAME: name, LABEL_JOB_KIND: kind, LABEL_MANAGED_BY: MANAGED_BY}


def placement(spec: JobSpecCommon) -> dict[str, Any]:
    """The pod spec's scheduling fields the job sets: nodeSelector, tolerations, priority, ServiceAccount."""
    sched = spec.scheduling
    found: dict[str, Any] = {}
    if sched.node_selector:
        found["nodeSelector"] = dict(sched.node_selector)
    if sched.tolerations:
        found["tolerations"] = [t.to_wire() for t in sched.tolerations]
    if sched.priority_class_name:
        found["priorityClassName"] = sched.priority_class_name
    if sched.service_account_name:
        found["serviceAccountName"] = sched.service_account_name
    return found


def pod_template(kind: str, name: str, spec: JobSpecCommon, config: OperatorConfig, args: list[str],
                 container_name: str) -> dict[str, Any]:
    """The runtime pod: one container named as the backend's controller expects, running `v2w-launch args`."""
    volumes, mounts = base_volumes(config)
    claims, claim_mounts = claim_volumes(spec, config)
    container = {
        "name": container_name,
        "image": image(spec, config),
        "imagePullPolicy": config.image_pull_policy,
        "command": list(COMMAND),
        "args": args,
        "env": env(spec, config),
        "resources": resources(spec, config),
        "volumeMounts": mounts + claim_mounts,
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes + claims,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "automountServiceAccountToken": False,
        **placement(spec),
    }
    return {"metadata": {"labels": labels(kind, name)}, "spec": pod_spec}


def queue_name(spec: JobSpecCommon, config: OperatorConfig) -> str | None:
    """The Kueue LocalQueue the job's child goes to: its own, else the platform's default, else none."""
    return spec.scheduling.queue_name or config.queue_name


def child_labels(kind: str, name: str, spec: JobSpecCommon, config: OperatorConfig) -> dict[str, str]:
    """The child's labels: `labels`, and the Kueue queue label when Kueue is to manage it."""
    found = labels(kind, name)
    queue = queue_name(spec, config)
    if queue and not spec.suspend:
        # Created suspended, it gets the label when it is resumed: with the label Kueue would admit and start it
        # (it unsuspends what it admits), and the user's suspend would lose (see kueue.py).
        found[kueue.QUEUE_LABEL] = queue
    return found


def child_metadata(kind: str, name: str, namespace: str, uid: str, spec: JobSpecCommon,
                   config: OperatorConfig) -> dict[str, Any]:
    """The child's metadata: its deterministic name, its labels, and its owner (it is garbage-collected with it)."""
    return {"name": child_name(kind, name), "namespace": namespace, "labels": child_labels(kind, name, spec, config),
            "ownerReferences": [owner_reference(kind, name, uid)]}
