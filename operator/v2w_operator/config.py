"""Operator settings, read once from the environment (the Helm chart sets them from its values)."""

from __future__ import annotations

import os
import shlex

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from v2w_api.policy import InputHostPolicy, JobPolicy

# Space-separated lists in the environment (the chart renders the policy values so).
_LISTS = ("policy_image_prefixes", "policy_service_accounts", "policy_allowed_hosts", "policy_allowed_cidrs")


class OperatorConfig(BaseModel):
    """Defaults the operator fills into jobs that leave them out, and its own knobs."""

    backend: Literal["pytorchjob", "trainjob", "auto"] = Field(
        "pytorchjob", description="What kind of child runs a job's pods: a Kubeflow PyTorchJob (training-operator v1), "
        "a Kubeflow Trainer v2 TrainJob, or auto: the one whose CRD is served when the operator starts (PyTorchJob "
        "when both are).")
    training_runtime_name: str = Field(
        "video2world", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The ClusterTrainingRuntime the TrainJobs reference (the chart installs it).")
    training_runtime_max_restarts: int = Field(
        3, ge=0, le=100, description="How often the ClusterTrainingRuntime restarts a TrainJob's pods after a "
        "retryable failure (its JobSet failurePolicy.maxRestarts): Trainer v2 has no per-job backoffLimit.")
    runtime_image: str = Field("video2world/runtime:0.1.0", description="Image of the runtime pods.")
    image_pull_policy: str = Field("IfNotPresent")
    checkpoint_2b: str | None = Field(None, description="Default checkpoint URI of the 2B model.")
    checkpoint_14b: str | None = Field(None, description="Default checkpoint URI of the 14B model.")
    refiner_checkpoint: str | None = Field(None, description="Default Cosmos-Reason1 checkpoint (refiner and critic).")
    guardrail_checkpoint: str | None = Field(None, description="Default guardrail checkpoint folder.")
    s3_endpoint: str | None = Field(None, description="Default S3 endpoint (MinIO and other S3-compatible stores).")
    s3_region: str | None = Field(None)
    credentials_secret: str | None = Field(None, description="Default Secret name with S3 credentials.")
    links_public_endpoint: str | None = Field(
        None,
        description="S3 endpoint that people's browsers reach; when set, the status carries presigned HTTPS links to "
        "every video, report and index.",
    )
    links_ttl_seconds: int = Field(
        86400, ge=60, le=604800, description="Lifetime of those links (SigV4 allows 7 days at most); renewed before."
    )
    gpu_resource_name: str = Field("nvidia.com/gpu")
    queue_name: str | None = Field(None, description="Default Kueue LocalQueue.")
    pvc_mount_root: str = Field("/mnt/pvc", description="Where pvc://<claim>/ volumes are mounted in runtime pods.")
    cache_host_path: str | None = Field(
        None, pattern=r"^/", description="A node directory the runtime pods keep the checkpoints they download from "
        "S3 in, shared by every job on the node (a hostPath volume); it must exist, writable by the runtime's user.")
    cache_claim_name: str | None = Field(
        None, description="A ReadWriteMany PersistentVolumeClaim (in each job's namespace) shared as that cache by "
        "every node; exclusive with cache_host_path. Neither: each pod downloads into its own emptyDir.")
    cache_size_limit: str | None = Field(
        None, pattern=r"^\d+(\.\d+)?([KMGTPE]i?|[kmgtpe])?$",
        description="Bytes the cache may hold (a Kubernetes quantity, e.g. 500Gi); beyond it the least recently "
        "used checkpoints no job holds are evicted. Unset: no limit but the disk's.")
    poll_interval_seconds: float = Field(10.0, gt=0, description="How often progress.json is read while a job runs.")
    peering_lifetime_seconds: int = Field(
        10, ge=2, le=600,
        description="With several replicas (kopf --peering): how long a replica's keep-alive holds; a standby takes over "
        "this long at most after the acting one died without a goodbye.",
    )
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus metrics port; 0 turns it off.")
    pool_worker_cluster_role: str | None = Field(
        None, description="The ClusterRole (the chart's `<release>-pool-worker`) that each pool's RoleBinding gives its "
        "workers: Leases only.")
    runtime_extra_args: list[str] = Field(
        default_factory=list,
        description="Flags the platform team appends to every runtime command (a shell-quoted string in the "
        "environment), e.g. the runtime's debug knobs on a test cluster.",
    )
    policy_image_prefixes: list[str] = Field(
        default_factory=list, description="Image prefixes spec.scheduling.image may name (chart policy.images)."
    )
    policy_service_accounts: list[str] = Field(
        default_factory=list, description="ServiceAccounts a job may name besides default (chart policy.serviceAccounts)."
    )
    policy_allowed_hosts: list[str] = Field(
        default_factory=list, description="Input host names allowed although refused (chart policy.inputs.allowedHosts)."
    )
    policy_allowed_cidrs: list[str] = Field(
        default_factory=list, description="Input address ranges allowed although refused (chart policy.inputs.allowedCIDRs)."
    )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "OperatorConfig":
        env = dict(os.environ if env is None else env)
        values = {}
        for name in cls.model_fields:
            key = f"V2W_{name.upper()}"
            if env.get(key) not in (None, ""):
                if name == "runtime_extra_args":
                    values[name] = shlex.split(env[key])
                elif name in _LISTS:
                    values[name] = env[key].split()
                else:
                    values[name] = env[key]
        return cls.model_validate(values)

    @model_validator(mode="after")
    def _check_policy(self) -> "OperatorConfig":
        _ = self.policy  # a bad policy value stops the operator at start, naming the value
        return self

    @model_validator(mode="after")
    def _one_cache_volume(self) -> "OperatorConfig":
        if self.cache_host_path and self.cache_claim_name:
            raise ValueError("cache_host_path and cache_claim_name are exclusive: the cache is one volume")
        return self

    @property
    def input_hosts(self) -> InputHostPolicy:
        """The policy on http(s) inputs, as the runtime gets it in its run configuration."""
        return InputHostPolicy(allowed_hosts=self.policy_allowed_hosts, allowed_cidrs=self.policy_allowed_cidrs)

    @property
    def policy(self) -> JobPolicy:
        return JobPolicy(image_prefixes=self.policy_image_prefixes, service_accounts=self.policy_service_accounts,
                         inputs=self.input_hosts)

    def default_checkpoint(self, size: str) -> str | None:
        return self.checkpoint_2b if size == "2B" else self.checkpoint_14b
