"""The runtime → operator contract: `progress.json` and `result.json` next to the job's results.

The runtime (rank 0) rewrites progress.json at stage changes and every few sampler steps, and writes
result.json last; its presence together with the exit code is what "done" means. The operator reads
both and copies what users need into the resource status. Unknown keys are ignored on read so that a
newer runtime can add fields without breaking an older operator.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import ConfigDict, Field

from .base import API_VERSION, APIModel

PROGRESS_FILE = "progress.json"
RESULT_FILE = "result.json"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ManifestModel(APIModel):
    model_config = APIModel.model_config | ConfigDict(extra="ignore")


class Stage(str, Enum):
    STARTING = "starting"
    LOADING = "loading"
    GUARDRAIL = "guardrail"
    REFINING = "refining"
    ENCODING = "encoding"
    SAMPLING = "sampling"
    DECODING = "decoding"
    WRITING = "writing"
    CRITIC = "critic"
    UPLOADING = "uploading"
    DONE = "done"
    FAILED = "failed"


class ColdStartFigures(ManifestModel):
    """Seconds from the pod's start (its container's process) to the end of the first sampling step, and where
    they went (the runtime's `coldstart` module says how each part is measured)."""

    seconds: float = Field(..., ge=0, description="From the container's process start to the end of the first sampling step.")
    download: float = Field(0.0, ge=0, description="Fetching checkpoints through the node's cache (near 0 when warm).")
    load: float = Field(0.0, ge=0, description="Loading the models onto the GPU, downloads not counted.")
    compile: float = Field(0.0, ge=0, description="From the start of sampling to the end of the first step: prompt and "
                           "conditioning encoding and the first step's forwards, kernels compiled or from the cache.")
    other: float = Field(0.0, ge=0, description="The rest: interpreter start, imports, rank setup, input, guardrail, refiner.")


class ProgressManifest(ManifestModel):
    """progress.json: where the run is now."""

    api_version: Literal["video2world.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["Progress"] = "Progress"
    stage: Stage = Field(..., description="What the runtime is doing.")
    videos_done: int = Field(0, ge=0, description="Videos finished (written, blocked or failed).")
    videos_total: int = Field(..., ge=0, description="Videos the run makes in all.")
    current: str | None = Field(None, description="Output name of the video being worked on.")
    step: int = Field(0, ge=0, description="Sampler step of the current video.")
    total_steps: int = Field(0, ge=0, description="Sampler steps per video.")
    message: str | None = Field(None, description="A short note on the stage.")
    cold_start: ColdStartFigures | None = Field(None, description="Set once the first sampling step has ended.")
    updated_at: datetime = Field(default_factory=utcnow, description="When this file was written.")

    def summary(self) -> str:
        text = f"{self.videos_done}/{self.videos_total} videos"
        if self.stage == Stage.SAMPLING and self.total_steps:
            text += f", step {self.step}/{self.total_steps}"
        elif self.stage not in (Stage.DONE,):
            text += f", {self.stage.value}"
        return text


VideoStatus = Literal["succeeded", "blocked", "failed", "skipped"]


class CriticTrials(ManifestModel):
    """How the critic's K answers about one video came out."""

    total: int = Field(..., ge=0)
    parsed: int = Field(..., ge=0, description="Trials whose answer could be read.")
    no_anomaly: int = Field(..., ge=0, description="Parsed trials that found no anomaly.")
    anomaly: int = Field(..., ge=0, description="Parsed trials that found an anomaly.")
    unparsable: int = Field(..., ge=0, description="Trials excluded from the score.")


class VideoResult(ManifestModel):
    """One video the run made, blocked, failed or skipped."""

    name: str = Field(..., description="Output name (file name without folders).")
    status: VideoStatus
    input: str | None = Field(None, description="The conditioning input it came from.")
    uri: str | None = Field(None, description="Where the MP4 is; unset unless status is succeeded.")
    seed: int | None = None
    prompt: str | None = Field(None, description="The prompt as given.")
    refined_prompt: str | None = Field(None, description="The prompt after the refiner, when it ran.")
    reason: str | None = Field(None, description="Why the video was blocked, failed or skipped.")
    guardrail_checked: bool | None = Field(
        None, description="Whether the guardrail checked this video's prompts and frames: false when it was "
        "disabled (or the video was not made by this system); unset in results of runtimes before this field.")
    guardrail_components: list[str] = Field(
        default_factory=list, description="The guardrail components that ran on this video, in order: blocklist, "
        "llama_guard, video_safety_filter, face_blur.")
    files: dict[str, str] = Field(default_factory=dict, description="Side files by role (prompt, record, report, critique).")
    score: int | None = Field(None, ge=0, le=100, description="Critic score 0-100 (best-of-N).")
    trials: CriticTrials | None = None
    report_uri: str | None = None
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    warnings: list[str] = Field(default_factory=list)


class WorkerRecord(ManifestModel):
    """The pool worker that ran the job (unset when a PyTorchJob of its own ran it)."""

    pod: str = Field(..., description="The worker's pod.")
    loads: int = Field(..., ge=0, description="Times the worker's process loaded the models (1: loaded once, at its start).")
    jobs_served: int = Field(..., ge=1, description="Jobs the worker's process has run, this one included.")


class ResultManifest(ManifestModel):
    """result.json: the run's final record, written last."""

    api_version: Literal["video2world.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["Result"] = "Result"
    mode: Literal["video2world", "bestofn"] = Field(..., description="Which program wrote it.")
    succeeded: bool = Field(..., description="True when every video succeeded or was blocked by the guardrail.")
    message: str | None = Field(None, description="Summary; on failure, what went wrong.")
    started_at: datetime
    finished_at: datetime = Field(default_factory=utcnow)
    videos: list[VideoResult] = Field(default_factory=list)
    best: str | None = Field(None, description="Name of the best video (best-of-N).")
    index_uri: str | None = Field(None, description="index.html ranking all videos (best-of-N).")
    cold_start: ColdStartFigures | None = Field(None, description="The run's cold start (unset when it sampled nothing).")
    settings: dict = Field(default_factory=dict, description="Every setting of the run (no secrets).")
    versions: dict[str, str] = Field(default_factory=dict, description="Code and library versions.")
    worker: WorkerRecord | None = Field(None, description="The pool worker that ran the job, when a pool ran it.")

    def counts(self) -> dict[str, int]:
        out = {"succeeded": 0, "blocked": 0, "failed": 0, "skipped": 0}
        for video in self.videos:
            out[video.status] += 1
        return out

    def best_video(self) -> VideoResult | None:
        return next((v for v in self.videos if v.name == self.best), None)
