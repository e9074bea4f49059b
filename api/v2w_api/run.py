"""The run configuration: one typed description of what one run of the runtime does.

The operator makes it from a job's spec and renders it into the PyTorchJob (one `--config` argument, YAML
a person can read in `kubectl get pytorchjob -o yaml`); the seed's command-line flags build the same
object (`v2w_runtime.cli`); the runtime parses it once and passes it down. It is made of the API's own
groups, so every default and every rule is the API's; only what a job spec does not say (where this run
writes, and the runtime's test and debug knobs) is defined here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal, Self

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .base import API_VERSION, APIModel
from .manifest import PROGRESS_FILE, RESULT_FILE
from .policy import InputHostPolicy
from .spec import (
    DEFAULT_NEGATIVE_PROMPT,
    BestOfNSpec,
    GenerationSpec,
    GuardrailSpec,
    InputSpec,
    ModelSpec,
    ParallelismSpec,
    PerformanceSpec,
    PromptRefinerSpec,
    check_five_frame_input,
)
from .uris import LOCAL_PATHS, InputURI, S3URI

# Where the seed's download script puts each model (relative to the working directory): the runtime's
# defaults when neither the job nor the operator names a checkpoint.
DEFAULT_CHECKPOINTS = {
    "2B": "checkpoints/nvidia/Cosmos-Predict2-2B-Video2World",
    "14B": "checkpoints/nvidia/Cosmos-Predict2-14B-Video2World",
}
DEFAULT_REFINER_CHECKPOINT = "checkpoints/nvidia/Cosmos-Reason1-7B"
DEFAULT_GUARDRAIL_CHECKPOINT = "checkpoints/nvidia/Cosmos-Guardrail1"
# Upstream's checkpoints/ tree (what the seed guide's download script writes) keeps the refiner's and the
# guardrail's models next to the Video2World ones. When the run's model comes from such a tree, these folders
# of the same tree are the defaults of the refiner (and so the critic) and of the guardrail. Whether a
# checkpoint is such a tree the runtime finds out (`v2w_runtime.checkpoints`); the rule is here.
UPSTREAM_TREE_DEFAULTS = {"refiner": "nvidia/Cosmos-Reason1-7B", "guardrail": "nvidia/Cosmos-Guardrail1"}

# One container argument holds the rendered configuration; Linux refuses a single argument above 128 KiB.
MAX_RENDERED_BYTES = 120 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RunConfigError(ValueError):
    """A run configuration that cannot be used; the message names the key (or the file) and what is wrong."""


class RunOutput(APIModel):
    """Where this run writes its files."""

    uri: S3URI = Field(
        ...,
        description=(
            "S3 prefix of the job's results (`<spec.output.uri>/<namespace>/<name>`), or a local folder when the "
            "runtime is started by hand."
        ),
    )
    video_name: str | None = Field(
        None, max_length=255,
        description="File name of the one video of a single-input run (`<job name>.mp4` for a job).",
    )
    record_name: str | None = Field(
        None, max_length=200,
        description=(
            "Names this run's own progress and result files, `<recordName>.progress.json` and "
            "`<recordName>.result.json`, so that runs started by hand into one folder keep each its own (the "
            "command line sets it to the --save_path's stem, or the batch file's). Unset: `progress.json` and "
            "`result.json`, the files the operator reads under a job's prefix."
        ),
    )

    @model_validator(mode="after")
    def _check_name(self) -> "RunOutput":
        for what, name in (("output video name", self.video_name), ("record name", self.record_name)):
            if name is not None and (not name.strip() or "/" in name or "\\" in name or name in (".", "..")
                                     or _CONTROL.search(name)):
                raise ValueError(f"{what} {name!r} must be one file name (no folders, no control characters)")
        return self

    @property
    def progress_file(self) -> str:
        """The name of this run's progress file in its output folder or prefix."""
        return f"{self.record_name}.{PROGRESS_FILE}" if self.record_name else PROGRESS_FILE

    @property
    def result_file(self) -> str:
        """The name of this run's result file in its output folder or prefix (written last)."""
        return f"{self.record_name}.{RESULT_FILE}" if self.record_name else RESULT_FILE


class DebugSettings(APIModel):
    """Test and debug knobs of the runtime. A job spec never sets them (the models are trained on 93 frames
    at the API's sizes); a platform team may set them for every job through the operator's
    `runtime.extraArgs`, e.g. to run tiny models on CPUs."""

    num_frames: int | None = Field(None, ge=2, le=1024, description="Frames per video (4k+1) instead of 93.")
    height: int | None = Field(None, gt=0, le=4096, description="Output height instead of the resolution's (multiple of 16).")
    width: int | None = Field(None, gt=0, le=4096, description="Output width instead of the resolution's (multiple of 16).")
    device: Literal["cuda", "cpu"] | None = Field(None, description="Device; unset: CUDA when available.")

    @field_validator("num_frames")
    @classmethod
    def _four_k_plus_one(cls, value: int | None) -> int | None:
        if value is not None and (value - 1) % 4:
            raise ValueError(f"must be 4k+1 (e.g. 9 or 93), not {value}")
        return value

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, value: int | None) -> int | None:
        if value is not None and value % 16:
            raise ValueError(f"must be a multiple of 16, not {value}")
        return value


class RenderedConfig(APIModel):
    """A configuration the operator renders into one container argument (block YAML a person can read) and the
    runtime parses back with the same model: a job's `RunConfig`, a pool worker's `WorkerConfig`."""

    def record(self) -> dict[str, Any]:
        """Every setting, as written into each video's record and result.json (there are no secrets in it)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_yaml(self) -> str:
        """The container argument's form: block YAML, groups in the model's order, unset left out."""
        return yaml.safe_dump(self.record(), sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def parse(cls, data: Any, source: str) -> Self:
        """A configuration from parsed YAML/JSON; RunConfigError names `source` and every bad key."""
        if not isinstance(data, dict):
            raise RunConfigError(f"{source}: expected a mapping of settings, found {type(data).__name__}")
        try:
            return cls.model_validate(data, context={LOCAL_PATHS: True})
        except ValidationError as exc:
            raise RunConfigError(f"{source}: {describe_errors(exc)}") from None

    @classmethod
    def from_yaml(cls, text: str, source: str) -> Self:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RunConfigError(f"{source}: not valid YAML or JSON ({exc})") from None
        return cls.parse(data, source)


class CheckpointDefaults:
    """The checkpoint defaults a configuration with `model`, `prompt_refiner` and `guardrail` resolves, once, here:
    a run's (both programs) and a pool worker's alike, so an unset field and the default it stands for compare equal."""

    if TYPE_CHECKING:  # the models' own fields (declared here, pydantic would reorder them)
        model: ModelSpec
        prompt_refiner: PromptRefinerSpec
        guardrail: GuardrailSpec

    @property
    def checkpoint(self) -> str:
        return self.model.checkpoint or DEFAULT_CHECKPOINTS[self.model.size]

    @property
    def refiner_checkpoint(self) -> str:
        return self.prompt_refiner.checkpoint or DEFAULT_REFINER_CHECKPOINT

    @property
    def guardrail_checkpoint(self) -> str:
        return self.guardrail.checkpoint or DEFAULT_GUARDRAIL_CHECKPOINT


class RunConfig(CheckpointDefaults, RenderedConfig):
    """What one run of `v2w_runtime.video2world` or `v2w_runtime.bestofn` does."""

    api_version: Literal["video2world.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["RunConfig"] = "RunConfig"
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model and its weights.")
    input: InputSpec | None = Field(None, description="The one input and prompt (single video, best-of-N).")
    batch_uri: InputURI | None = Field(
        None, description="Batch JSON file: a list of {input_video, prompt, output_video} (video2world only)."
    )
    generation: GenerationSpec = Field(default_factory=GenerationSpec, description="Sampling settings.")
    prompt_refiner: PromptRefinerSpec = Field(default_factory=PromptRefinerSpec, description="The prompt refiner.")
    guardrail: GuardrailSpec = Field(default_factory=GuardrailSpec, description="Safety checks.")
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec, description="GPUs and their layout.")
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec, description="Speed options of the sampler.")
    best_of_n: BestOfNSpec | None = Field(
        None, alias="bestOfN", description="Best-of-N: generations and the critic (bestofn only)."
    )
    output: RunOutput = Field(..., description="Where the files go.")
    debug: DebugSettings = Field(default_factory=DebugSettings, description="Test and debug knobs.")
    input_hosts: InputHostPolicy | None = Field(
        None,
        description=(
            "The platform's policy on http(s) inputs (the operator always sets it): the runtime refuses to connect to "
            "a loopback, link-local, private or metadata address, after DNS, unless allowed here. Unset (a run "
            "started by hand): any host."
        ),
    )
    verify_only: bool | None = Field(
        None,
        description=(
            "When true: check every checkpoint the run would load (the model in its layout, the post-trained DiT, "
            "the refiner, the critic, the guardrail folder) and exit 0 when all are there and whole, 2 when not, "
            "without loading weights or writing any file."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        if self.input is not None and self.batch_uri is not None:
            raise ValueError("give either input or batchUri, not both")
        if self.best_of_n is None:
            if self.input is None and self.batch_uri is None:
                raise ValueError("input or batchUri is required")
        else:
            if self.batch_uri is not None:
                raise ValueError("best-of-N takes one input and prompt, not a batch (batchUri)")
            if self.input is None and not self.best_of_n.skip_generation:
                raise ValueError("input is required unless bestOfN.skipGeneration is set")
        check_five_frame_input(self.generation.num_conditional_frames, self.input.uri if self.input else None)
        if self.num_frames <= self.generation.num_conditional_frames:
            raise ValueError(f"numFrames {self.num_frames} leaves nothing to generate after "
                             f"{self.generation.num_conditional_frames} conditioning frames")
        return self

    @property
    def critic_checkpoint(self) -> str:
        critic = self.best_of_n.critic.checkpoint if self.best_of_n else None
        return critic or self.refiner_checkpoint

    def with_upstream_tree(self, tree: str | None) -> "RunConfig":
        """This configuration with the checkpoints it leaves unset taken from the upstream checkpoints/ tree
        `tree` (a folder, `pvc://` path or `s3://` prefix) its model comes from: the refiner's, and so the
        critic's, and the guardrail's. Unchanged when `tree` is None (the model is in another layout)."""
        if tree is None:
            return self

        def inside(rel: str) -> str:
            return f"{tree.rstrip('/')}/{rel}"

        update: dict[str, Any] = {}
        if self.prompt_refiner.checkpoint is None:
            update["prompt_refiner"] = self.prompt_refiner.model_copy(
                update={"checkpoint": inside(UPSTREAM_TREE_DEFAULTS["refiner"])})
        if self.guardrail.checkpoint is None:
            update["guardrail"] = self.guardrail.model_copy(
                update={"checkpoint": inside(UPSTREAM_TREE_DEFAULTS["guardrail"])})
        return self.model_copy(update=update) if update else self

    @property
    def negative_prompt(self) -> str:
        """The input's own negative prompt, else the generation's, else the built-in text."""
        own = self.input.negative_prompt if self.input else None
        if own is not None:
            return own
        return self.generation.negative_prompt if self.generation.negative_prompt is not None else DEFAULT_NEGATIVE_PROMPT

    @property
    def num_frames(self) -> int:
        return self.debug.num_frames or self.generation.num_frames



def describe_errors(exc: ValidationError) -> str:
    """Each pydantic error as `key.path: what is wrong`, unknown keys as such."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown key {loc}")
        else:
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)


__all__ = [
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_GUARDRAIL_CHECKPOINT",
    "DEFAULT_REFINER_CHECKPOINT",
    "MAX_RENDERED_BYTES",
    "UPSTREAM_TREE_DEFAULTS",
    "DebugSettings",
    "RunConfig",
    "RunConfigError",
    "RunOutput",
    "describe_errors",
]
