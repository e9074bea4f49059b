"""The Video2WorldPool: N warm workers of one model, size and layout, kept loaded on GPUs, that run the jobs
naming the pool (`spec.poolRef`) one after another without a pod start or a model load per job.

Each group has the job's own type, so a pool is written as the jobs it serves are; the groups a worker fixes at
load time (model, resolution and fps, refiner, guardrail, GPUs, performance, critic) are what a job's settings
are compared with (`v2w_api.worker.mismatches`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from .base import API_VERSION, APIModel, cel
from .spec import (CriticSpec, GuardrailSpec, ModelSpec, ParallelismSpec, PerformanceSpec, PromptRefinerSpec,
                   Resolution, S3Endpoint, S3Region, SchedulingSpec, SecretKeyRef)

# A worker is one pod: its GPUs are one node's (multi-node workers are not in v1alpha1).
ONE_NODE_RULE = ("has(self.gpusPerNode) ? self.gpusPerNode == self.gpus : self.gpus <= 8")
ONE_NODE_MESSAGE = "a pool worker is one pod: gpus must fit one node (at most 8, or gpusPerNode equal to gpus)"


class PoolGenerationSpec(APIModel):
    """The generation settings a worker loads its DiT for (upstream has one variant per resolution and fps)."""

    resolution: Resolution = Field(720, description="Output height class the workers serve: 480 or 720.")
    fps: int = Field(16, ge=1, le=60, description="Frames per second the workers serve.")


class PoolOutputSpec(APIModel):
    """The S3 store the workers write to. A job may use the pool only with the same credentials Secret,
    endpoint and region: the workers hold that Secret's credentials, never a job's own."""

    endpoint: S3Endpoint | None = Field(
        None, description="S3 endpoint URL for MinIO and other S3-compatible stores; AWS when unset.")
    region: S3Region | None = Field(None, description="S3 region.")
    credentials_secret: SecretKeyRef | None = Field(
        None, description="Secret with the S3 credentials, in the pool's namespace; unset: the operator's default "
        "(or the pods' own identity).")


class Video2WorldPoolSpec(APIModel):
    """N workers that keep one model loaded, and the settings of every job they can run."""

    model_config = APIModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(f"!has(self.parallelism) || ({ONE_NODE_RULE.replace('self.', 'self.parallelism.')})",
                    ONE_NODE_MESSAGE, ".parallelism"),
                cel("!has(self.scheduling) || !has(self.scheduling.queueName)",
                    "a pool's workers are not queued through Kueue: leave scheduling.queueName unset",
                    ".scheduling.queueName"),
                cel("!has(self.scheduling) || !has(self.scheduling.serviceAccountName)",
                    "a pool's workers run as the pool's own ServiceAccount: leave scheduling.serviceAccountName unset",
                    ".scheduling.serviceAccountName"),
            ]
        }
    }

    replicas: int = Field(1, ge=0, le=256, description="Workers to keep running (0 stops them all; jobs wait).")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model and its weights, loaded once per worker.")
    generation: PoolGenerationSpec = Field(default_factory=PoolGenerationSpec,
                                           description="The resolution and fps the workers serve.")
    prompt_refiner: PromptRefinerSpec = Field(default_factory=PromptRefinerSpec, description="The prompt refiner.")
    guardrail: GuardrailSpec = Field(default_factory=GuardrailSpec, description="Safety checks.")
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec,
                                         description="GPUs of one worker (one pod) and their layout.")
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec, description="Speed options of the sampler.")
    critic: CriticSpec | None = Field(
        None, description="The best-of-N critic the workers keep loaded; unset: the pool runs no BestOfNJob.")
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec, description="Worker pod placement and resources.")
    output: PoolOutputSpec = Field(default_factory=PoolOutputSpec, description="The S3 store and credentials of the workers.")

    @model_validator(mode="after")
    def _check(self) -> "Video2WorldPoolSpec":
        if self.parallelism.nodes != 1:
            raise ValueError(ONE_NODE_MESSAGE)
        if self.scheduling.queue_name is not None:
            raise ValueError("a pool's workers are not queued through Kueue: leave scheduling.queueName unset")
        if self.scheduling.service_account_name is not None:
            raise ValueError("a pool's workers run as the pool's own ServiceAccount: leave "
                             "scheduling.serviceAccountName unset")
        return self


PoolConditionType = Literal["Ready", "Progressing"]


class PoolCondition(APIModel):
    """One observation of the pool (metav1.Condition)."""

    type: PoolConditionType = Field(..., description="Ready (every wanted worker is up) or Progressing.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., max_length=1024, description="One CamelCase word saying why.")
    message: str = Field("", max_length=32768, description="What happened and what to do about it.")
    last_transition_time: datetime = Field(..., description="When the status last changed.")
    observed_generation: int | None = Field(None, ge=0, description="The spec generation this condition is about.")


class Video2WorldPoolStatus(APIModel):
    """What the operator observed of the pool. Written only by the operator."""

    replicas: int = Field(0, ge=0, description="Worker pods that exist (the scale subresource reads it).")
    ready_replicas: int = Field(0, ge=0, description="Workers up and ready (their pods are Ready).")
    busy_workers: int = Field(0, ge=0, description="Workers running a job (holding a job's Lease).")
    queue_length: int = Field(0, ge=0, description="Jobs of the pool waiting for a worker.")
    selector: str | None = Field(None, description="Label selector of the worker pods (for the scale subresource).")
    deployment_name: str | None = Field(None, description="The Deployment that runs the workers.")
    conditions: list[PoolCondition] = Field(default_factory=list, description="Latest observations of the pool.")
    observed_generation: int | None = Field(None, ge=0, description="The spec generation the status is about.")
    message: str | None = Field(None, description="Human-readable summary.")


class Video2WorldPool(APIModel):
    """Warm workers that keep a model loaded and run the jobs that name the pool, one after another."""

    api_version: Literal["video2world.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["Video2WorldPool"] = "Video2WorldPool"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: Video2WorldPoolSpec
    status: Video2WorldPoolStatus | None = None
