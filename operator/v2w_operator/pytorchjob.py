"""Builds the Kubeflow PyTorchJob that runs one Video2WorldJob or BestOfNJob.

One module owns the whole translation from our spec to the child resource, so handlers stay thin and
the result can be checked against the PyTorchJob CRD schema in tests. The name is deterministic
(`v2w-<name>` / `bon-<name>`), which is what makes creation idempotent across retries and restarts.
"""

from __future__ import annotations

from typing import Any

from .api import BEST_OF_N_JOB, VIDEO2WORLD_JOB, BestOfNJobSpec, Video2WorldJobSpec
from .api.spec import JobSpecCommon
from .config import OperatorConfig

PYTORCHJOB_GROUP = "kubeflow.org"
PYTORCHJOB_VERSION = "v1"
PYTORCHJOB_PLURAL = "pytorchjobs"
CONTAINER_NAME = "pytorch"  # the training-operator finds the main container by this name

LABEL_JOB_NAME = "video2world.io/job-name"
LABEL_JOB_KIND = "video2world.io/job-kind"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "video2world-operator"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

CACHE_DIR = "/var/cache/v2w"
SHM_DIR = "/dev/shm"
RUNTIME_UID = 1000

_PREFIXES = {VIDEO2WORLD_JOB.kind: "v2w", BEST_OF_N_JOB.kind: "bon"}
_MODULES = {VIDEO2WORLD_JOB.kind: "v2w_runtime.video2world", BEST_OF_N_JOB.kind: "v2w_runtime.bestofn"}


def child_name(kind: str, name: str) -> str:
    return f"{_PREFIXES[kind]}-{name}"


def output_prefix(spec: JobSpecCommon, namespace: str, name: str) -> str:
    """`s3://bucket/prefix/<namespace>/<name>`: every file of the job lives below it."""
    return f"{spec.output.uri.rstrip('/')}/{namespace}/{name}"


def _flag(args: list[str], name: str, value: Any) -> None:
    if value is not None:
        args += [f"--{name}", str(value)]


def runtime_args(kind: str, name: str, spec: Video2WorldJobSpec | BestOfNJobSpec, config: OperatorConfig,
                 prefix: str, batch_uri: str | None = None) -> list[str]:
    """The runtime CLI's own flags (the seed's, kept compatible) for this spec."""
    args: list[str] = []
    gen = spec.generation
    _flag(args, "model_size", spec.model.size)
    _flag(args, "checkpoint_dir", spec.model.checkpoint or config.default_checkpoint(spec.model.size))
    _flag(args, "dit_path", spec.model.dit_path)
    _flag(args, "dtype", spec.model.dtype)
    _flag(args, "num_conditional_frames", gen.num_conditional_frames)
    _flag(args, "resolution", gen.resolution)
    _flag(args, "aspect_ratio", gen.aspect_ratio)
    _flag(args, "fps", gen.fps)
    _flag(args, "num_steps", gen.num_steps)
    _flag(args, "guidance", gen.guidance)
    _flag(args, "seed", gen.seed)
    own_negative = spec.input.negative_prompt if spec.input is not None else None
    _flag(args, "negative_prompt", own_negative if own_negative is not None else gen.negative_prompt)
    par = spec.parallelism
    _flag(args, "num_gpus", par.gpus)
    _flag(args, "context_parallel_size", par.context_parallel_size)
    if par.cfg_parallel is not None:
        args.append("--cfg_parallel" if par.cfg_parallel else "--no-cfg_parallel")
    perf = spec.performance
    if perf.attention_backend != "auto":
        _flag(args, "attention_backend", perf.attention_backend)
    if perf.compile:
        args.append("--compile")
    if perf.fast_mode != "off":
        _flag(args, "fast_mode", perf.fast_mode)
        _flag(args, "step_cache_interval", perf.step_cache_interval)
    if spec.prompt_refiner.enabled:
        _flag(args, "refiner_checkpoint", spec.prompt_refiner.checkpoint or config.refiner_checkpoint)
    else:
        args.append("--disable_prompt_refiner")
    if spec.guardrail.enabled:
        _flag(args, "guardrail_checkpoint", spec.guardrail.checkpoint or config.guardrail_checkpoint)
        for word in spec.guardrail.blocklist:
            _flag(args, "guardrail_blocklist", word)
        if not spec.guardrail.pixelate_faces:
            args.append("--no_face_pixelation")
    else:
        args.append("--disable_guardrail")
    _flag(args, "output_uri", prefix)

    if isinstance(spec, Video2WorldJobSpec):
        if spec.input is not None:
            _flag(args, "save_path", f"{name}.mp4")  # a single video is named after its job
            _flag(args, "input_path", spec.input.uri)
            _flag(args, "prompt", spec.input.prompt)
        else:
            _flag(args, "batch_input_json", spec.batch_uri or batch_uri)
    else:
        bon = spec.best_of_n
        if spec.input is not None:
            _flag(args, "input_path", spec.input.uri)
            _flag(args, "prompt", spec.input.prompt)
        _flag(args, "num_generations", bon.num_generations)
        _flag(args, "num_critic_trials", bon.critic.num_trials)
        _flag(args, "critic_checkpoint", bon.critic.checkpoint or spec.prompt_refiner.checkpoint or config.refiner_checkpoint)
        if bon.skip_generation:
            args.append("--skip_generation")
            _flag(args, "videos_uri", bon.videos_uri)
    return args + list(config.runtime_extra_args)


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


def _env(spec: JobSpecCommon, config: OperatorConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    secret = spec.output.credentials_secret
    secret_name = secret.name if secret else config.credentials_secret
    if secret_name:
        # Mounted by reference: the operator never copies a credential into the PyTorchJob.
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
        {"name": "HOME", "value": "/tmp/home"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    return env


def _volumes(spec: JobSpecCommon, config: OperatorConfig) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},  # NCCL and data loaders need a real /dev/shm
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "dshm", "mountPath": SHM_DIR},
    ]
    for i, claim in enumerate(sorted(spec.volume_claims())):
        volumes.append({"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": f"pvc-{i}", "mountPath": f"{config.pvc_mount_root}/{claim}", "readOnly": True})
    return volumes, mounts


def _pod_template(kind: str, name: str, spec: JobSpecCommon, config: OperatorConfig, args: list[str]) -> dict:
    sched = spec.scheduling
    labels = {LABEL_JOB_NAME: name, LABEL_JOB_KIND: kind, LABEL_MANAGED_BY: MANAGED_BY}
    volumes, mounts = _volumes(spec, config)
    resources: dict[str, Any] = {"limits": {sched.gpu_resource_name or config.gpu_resource_name: spec.parallelism.effective_gpus_per_node}}
    requests = {k: v for k, v in (("cpu", sched.cpu), ("memory", sched.memory)) if v}
    if requests:
        resources["requests"] = requests
    container = {
        "name": CONTAINER_NAME,
        "image": sched.image or config.runtime_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["torchrun"],
        "args": ["--module", _MODULES[kind], *args],
        "env": _env(spec, config),
        "resources": resources,
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
    }
    if sched.node_selector:
        pod_spec["nodeSelector"] = dict(sched.node_selector)
    if sched.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in sched.tolerations]
    if sched.priority_class_name:
        pod_spec["priorityClassName"] = sched.priority_class_name
    if sched.service_account_name:
        pod_spec["serviceAccountName"] = sched.service_account_name
    return {"metadata": {"labels": labels}, "spec": pod_spec}


def build(kind: str, name: str, namespace: str, uid: str, spec: Video2WorldJobSpec | BestOfNJobSpec,
          config: OperatorConfig, batch_uri: str | None = None) -> dict[str, Any]:
    """The PyTorchJob for a job, owned by it (garbage-collected with it)."""
    prefix = output_prefix(spec, namespace, name)
    args = runtime_args(kind, name, spec, config, prefix, batch_uri)
    template = _pod_template(kind, name, spec, config, args)
    par = spec.parallelism
    replica = {"restartPolicy": "OnFailure", "template": template}
    replica_specs: dict[str, Any] = {"Master": {"replicas": 1, **replica}}
    if par.nodes > 1:
        replica_specs["Worker"] = {"replicas": par.nodes - 1, **replica}
    labels = {LABEL_JOB_NAME: name, LABEL_JOB_KIND: kind, LABEL_MANAGED_BY: MANAGED_BY}
    queue = spec.scheduling.queue_name or config.queue_name
    if queue:
        labels[KUEUE_QUEUE_LABEL] = queue
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
        "apiVersion": f"{PYTORCHJOB_GROUP}/{PYTORCHJOB_VERSION}",
        "kind": "PyTorchJob",
        "metadata": {
            "name": child_name(kind, name),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "video2world.io/v1alpha1",
                "kind": kind,
                "name": name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "nprocPerNode": str(par.effective_gpus_per_node),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replica_specs,
        },
    }
