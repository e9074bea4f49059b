"""The configuration of one pool worker: what it loads once and keeps on its GPUs, and which jobs it can serve.

The operator renders it from a `Video2WorldPool` into the worker Deployment's `--config` argument, as it renders
a job's `RunConfig` into a PyTorchJob. A job's run can go to a worker only when everything the worker fixed at
load time is the same in the run: `mismatches` names what is not (the operator's PoolMismatch check, and the
worker's own check before it runs a claimed job). What a run may choose for itself (input, prompt, steps,
guidance, seed, the critic's trials, debug sizes) is left out of the comparison.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import API_VERSION
from .lease import LEASE_DURATION_SECONDS, RENEW_EVERY_SECONDS
from .policy import InputHostPolicy
from .run import CheckpointDefaults, DebugSettings, RenderedConfig, RunConfig
from .spec import (CriticSpec, GenerationSpec, GuardrailSpec, ModelSpec, ParallelismSpec, PerformanceSpec,
                   PromptRefinerSpec)


class WorkerConfig(CheckpointDefaults, RenderedConfig):
    """What one worker of a pool loads and serves."""

    api_version: Literal["video2world.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["WorkerConfig"] = "WorkerConfig"
    pool: str = Field(..., min_length=1, max_length=253, description="The pool whose jobs' Leases this worker claims.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model and its weights, loaded once.")
    generation: GenerationSpec = Field(
        default_factory=GenerationSpec,
        description="resolution and fps pick the DiT variant that is loaded; a run's other generation settings are its own.",
    )
    prompt_refiner: PromptRefinerSpec = Field(default_factory=PromptRefinerSpec, description="The prompt refiner.")
    guardrail: GuardrailSpec = Field(default_factory=GuardrailSpec, description="Safety checks, loaded once.")
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec, description="GPUs of one worker (one pod).")
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec, description="Speed options, applied at load.")
    critic: CriticSpec | None = Field(
        None, description="The best-of-N critic the worker keeps loaded; unset: the pool serves no best-of-N job.")
    input_hosts: InputHostPolicy | None = Field(None, description="The platform's policy on http(s) inputs.")
    debug: DebugSettings = Field(default_factory=DebugSettings, description="Test and debug knobs (device).")
    lease_duration_seconds: int = Field(
        LEASE_DURATION_SECONDS, ge=2, le=3600,
        description="A worker that has not renewed its claim for this long loses it to another worker.")
    renew_seconds: float = Field(RENEW_EVERY_SECONDS, gt=0, le=600, description="How often a worker renews its claim.")

    @property
    def critic_checkpoint(self) -> str | None:
        if self.critic is None:
            return None
        return self.critic.checkpoint or self.refiner_checkpoint


def mismatches(worker: WorkerConfig, run: RunConfig) -> list[str]:
    """The settings, in the API's spelling, in which `run` differs from what `worker` loaded: empty when the
    worker can run it. Pure: both sides are read as rendered, defaults resolved alike."""
    pairs: list[tuple[str, Any, Any]] = [
        ("model.size", worker.model.size, run.model.size),
        ("model.checkpoint", worker.checkpoint, run.checkpoint),
        ("model.ditPath", worker.model.dit_path, run.model.dit_path),
        ("model.dtype", worker.model.dtype, run.model.dtype),
        ("generation.resolution", worker.generation.resolution, run.generation.resolution),
        ("generation.fps", worker.generation.fps, run.generation.fps),
        ("promptRefiner.enabled", worker.prompt_refiner.enabled, run.prompt_refiner.enabled),
        ("guardrail.enabled", worker.guardrail.enabled, run.guardrail.enabled),
        ("guardrail.blocklist", sorted(worker.guardrail.blocklist), sorted(run.guardrail.blocklist)),
        ("guardrail.pixelateFaces", worker.guardrail.pixelate_faces, run.guardrail.pixelate_faces),
        ("parallelism.gpus", worker.parallelism.gpus, run.parallelism.gpus),
        ("parallelism.contextParallelSize", worker.parallelism.context_parallel_size,
         run.parallelism.context_parallel_size),
        ("parallelism.cfgParallel", worker.parallelism.cfg_parallel, run.parallelism.cfg_parallel),
        ("performance.attentionBackend", worker.performance.attention_backend, run.performance.attention_backend),
        ("performance.compile", worker.performance.compile, run.performance.compile),
        ("performance.splitBatch", worker.performance.split_batch, run.performance.split_batch),
        ("performance.fastMode", worker.performance.fast_mode, run.performance.fast_mode),
        ("performance.stepCacheInterval", worker.performance.step_cache_interval,
         run.performance.step_cache_interval),
        ("debug.device", worker.debug.device, run.debug.device),
    ]
    # Checkpoints of parts that are off are not loaded: they cannot differ.
    if worker.prompt_refiner.enabled and run.prompt_refiner.enabled:
        pairs.append(("promptRefiner.checkpoint", worker.refiner_checkpoint, run.refiner_checkpoint))
    if worker.guardrail.enabled and run.guardrail.enabled:
        pairs.append(("guardrail.checkpoint", worker.guardrail_checkpoint, run.guardrail_checkpoint))
    # A worker is one pod: the same GPUs over more pods is another layout.
    if worker.parallelism.gpus == run.parallelism.gpus:
        pairs.append(("parallelism.gpusPerNode", worker.parallelism.effective_gpus_per_node,
                      run.parallelism.effective_gpus_per_node))
    # With several GPUs the layout (CFG halves or not) is fixed at load by whether guidance is on.
    if worker.parallelism.gpus > 1:
        pairs.append(("generation.guidance", worker.generation.guidance > 1.0, run.generation.guidance > 1.0))
    out = [name for name, mine, theirs in pairs if mine != theirs]
    if run.best_of_n is not None:
        if worker.critic is None:
            out.append("bestOfN.critic")
        elif worker.critic_checkpoint != run.critic_checkpoint:
            out.append("bestOfN.critic.checkpoint")
    return out


def describe_mismatches(pool: str, fields: list[str]) -> str:
    """One line for a condition or a Lease's message: which settings keep the pool from running the job."""
    return f"pool {pool} cannot run this job: it differs in {', '.join(fields)}"


__all__ = ["WorkerConfig", "describe_mismatches", "mismatches"]
