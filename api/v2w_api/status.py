"""The status of both kinds: phase, conditions, progress, outputs and scores (Kubernetes conventions)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import Field

from .base import APIModel


class Phase(str, Enum):
    PENDING = "Pending"
    QUEUED = "Queued"  # Kueue holds the child until its Workload is admitted
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class ConditionType(str, Enum):
    ACCEPTED = "Accepted"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(str, Enum):
    """Values of `conditions[].reason`: one word a script can match on."""

    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    POLICY_DENIED = "PolicyDenied"
    # The job's child (a PyTorchJob or a TrainJob: the message names its kind) was created, its CRD is not
    # served, or it was deleted before the job finished.
    CHILD_CREATED = "ChildCreated"
    CHILD_CRD_MISSING = "ChildCRDMissing"
    CHILD_DELETED = "ChildDeleted"
    POOL_NOT_FOUND = "PoolNotFound"  # a pooled job's pool does not exist (yet)
    POOL_MISMATCH = "PoolMismatch"  # a pooled job's pool cannot run it (the message names each field)
    SECRET_MISSING = "SecretMissing"
    CLAIM_MISSING = "ClaimMissing"
    STORAGE_UNREACHABLE = "StorageUnreachable"
    WAITING_FOR_PODS = "WaitingForPods"
    PODS_RUNNING = "PodsRunning"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    ADMITTED = "Admitted"
    COMPLETED = "Completed"
    COMPLETED_WITH_FAILURES = "CompletedWithFailures"
    RUNTIME_FAILED = "RuntimeFailed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    GUARDRAIL_BLOCKED = "GuardrailBlocked"
    # The words of releases before the TrainJob backend, as names of the same members (code that imports them keeps
    # working); conditions carry the neutral words above (README: "Backends").
    PYTORCHJOB_CREATED = "ChildCreated"
    PYTORCHJOB_CRD_MISSING = "ChildCRDMissing"
    PYTORCHJOB_DELETED = "ChildDeleted"


# What each neutral reason was called before (scripts that match the old word can match either).
LEGACY_REASONS = {Reason.CHILD_CREATED: "PyTorchJobCreated", Reason.CHILD_CRD_MISSING: "PyTorchJobCRDMissing",
                  Reason.CHILD_DELETED: "PyTorchJobDeleted"}


class Condition(APIModel):
    """One observation of the job's state (metav1.Condition)."""

    type: ConditionType = Field(..., description="Accepted, Queued, Running, Suspended, Succeeded or Failed.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., max_length=1024, description="One CamelCase word saying why (a Queued condition's is "
                        "Kueue's, from the Workload).")
    message: str = Field("", max_length=32768, description="What happened and what to do about it.")
    last_transition_time: datetime = Field(..., description="When the status last changed.")
    observed_generation: int | None = Field(None, ge=0, description="The spec generation this condition is about.")


class Progress(APIModel):
    """Where the run is, from the runtime's progress.json."""

    stage: str | None = Field(None, description="Current stage: loading, refining, sampling, decoding, critic, uploading.")
    step: int | None = Field(None, ge=0, description="Sampler step of the current video.")
    total_steps: int | None = Field(None, ge=0, description="Sampler steps per video.")
    videos_done: int = Field(0, ge=0, description="Videos finished (written, blocked or failed).")
    videos_total: int | None = Field(None, ge=0, description="Videos the job makes in all.")
    summary: str | None = Field(None, description="Short form for `kubectl get`, e.g. `1/3 videos, step 12/35`.")
    updated_at: datetime | None = Field(None, description="When the runtime last reported.")


class ColdStart(APIModel):
    """How long the job took from its pod's start to its first sampling step, from the runtime's report."""

    seconds: float = Field(..., ge=0, description="Seconds from the container's process start to the end of the first "
                           "sampling step (scheduling and image pull, before the container runs, are not included).")
    download: float = Field(0.0, ge=0, description="Of which fetching checkpoints through the node's cache.")
    load: float = Field(0.0, ge=0, description="Of which loading the models, downloads not counted.")
    compile: float = Field(0.0, ge=0, description="Of which sampling up to the end of the first step: encoding and the "
                           "first forwards, with their kernels compiled or taken from the compile cache.")
    other: float = Field(0.0, ge=0, description="Of which the rest: start-up, imports, rank setup, input, guardrail, refiner.")


Verdict = Literal["Passed", "Blocked", "Failed", "Skipped", "NotChecked"]


class OutputStatus(APIModel):
    """One produced (or refused) video."""

    name: str = Field(..., description="Output name.")
    uri: str | None = Field(None, description="S3 URI of the MP4; unset when no video was written.")
    verdict: Verdict = Field(..., description="Passed (written, the guardrail let it through), Blocked (guardrail), "
                             "Failed, Skipped, or NotChecked (written with the guardrail disabled: nothing checked it).")
    reason: str | None = Field(None, description="Why it was blocked or failed.")
    seed: int | None = Field(None, description="Seed the video was sampled with.")
    score: int | None = Field(None, ge=0, le=100, description="Critic score, 0-100 (best-of-N).")
    report_uri: str | None = Field(None, description="S3 URI of the HTML report (best-of-N).")
    url: str | None = Field(None, description="HTTPS link to the MP4 (presigned; when the operator makes links).")
    report_url: str | None = Field(None, description="HTTPS link to the report (presigned; when the operator makes links).")


class BestStatus(APIModel):
    """The winner of a best-of-N job."""

    name: str = Field(..., description="Output name of the best video.")
    uri: str = Field(..., description="S3 URI of the best video.")
    score: int = Field(..., ge=0, le=100, description="Its critic score, 0-100.")
    seed: int | None = Field(None, description="Its seed.")
    report_uri: str | None = Field(None, description="Its HTML report.")
    url: str | None = Field(None, description="HTTPS link to the best video (presigned; when the operator makes links).")
    report_url: str | None = Field(None, description="HTTPS link to its report (presigned; when the operator makes links).")


class JobStatus(APIModel):
    """What the operator observed. Written only by the operator."""

    phase: Phase | None = Field(None, description="Pending, Queued (waiting for Kueue), Running, Suspended, Succeeded or Failed.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations of the job's state.")
    observed_generation: int | None = Field(None, ge=0, description="The spec generation the status is about.")
    start_time: datetime | None = Field(None, description="When the child's pods were started.")
    completion_time: datetime | None = Field(None, description="When the job finished.")
    child_kind: str | None = Field(None, description="Kind of the child that runs the job's pods: PyTorchJob or TrainJob.")
    child_name: str | None = Field(None, description="Name of the child (in the job's namespace); set once it exists.")
    pytorch_job_name: str | None = Field(
        None, alias="pytorchJobName",
        description="Name of the child when it is a PyTorchJob (the name of childName before the TrainJob backend).")
    output_prefix: str | None = Field(None, description="S3 prefix that holds this job's results.")
    progress: Progress | None = Field(None, description="Progress while running.")
    cold_start: ColdStart | None = Field(None, description="Seconds from the pod's start to the first sampling step, "
                                         "split into download, load and compile (set once the first step has ended).")
    outputs: list[OutputStatus] = Field(default_factory=list, description="Every video the job made or refused.")
    result_uri: str | None = Field(None, description="S3 URI of result.json.")
    links_expire_at: datetime | None = Field(
        None, description="When the HTTPS links in this status stop working; the operator renews them before."
    )
    message: str | None = Field(None, description="Human-readable summary of the latest state.")

    @property
    def is_terminal(self) -> bool:
        """True once the job has succeeded or failed: nothing moves it after that."""
        return self.phase is not None and self.phase.is_terminal

    @property
    def child(self) -> str | None:
        """The child's name once it exists (a status written before childName has only pytorchJobName)."""
        return self.child_name or self.pytorch_job_name


class Video2WorldJobStatus(JobStatus):
    """Status of a Video2WorldJob."""


class BestOfNJobStatus(JobStatus):
    """Status of a BestOfNJob."""

    best: BestStatus | None = Field(None, description="The best video.")
    index_uri: str | None = Field(None, description="S3 URI of index.html, all videos ranked best first.")
    index_url: str | None = Field(None, description="HTTPS link to index.html (presigned; when the operator makes links).")

