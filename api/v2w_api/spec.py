"""The spec of both kinds, built from small groups that `kubectl explain` shows one by one.

Each constraint stands twice on purpose: as a pydantic check (the operator parses every spec through
these models) and as a schema bound or CEL rule in the generated CRD (the API server refuses a bad
spec at `kubectl apply`). `tests/test_api_models.py` and `tests/test_crd_validation.py` keep the two in step.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from .base import (
    DNS_SUBDOMAIN,
    NOT_SPACE,
    OUTPUT_NAME,
    APIModel,
    cel,
    is_blank,
    matching,
    is_image_uri,
)
from .uris import BatchInputURI, InputURI, S3URI, StorageURI

ModelSize = Literal["2B", "14B"]
DType = Literal["bfloat16", "float16", "float32"]
AspectRatio = Literal["16:9", "4:3", "1:1", "3:4", "9:16"]
Resolution = Literal[480, 720]
ConditionalFrames = Literal[1, 5]
CONTEXT_PARALLEL_SIZES = (1, 2, 4, 8)
ContextParallelSize = Literal[CONTEXT_PARALLEL_SIZES]
AttentionBackend = Literal["auto", "default", "fa4", "cudnn", "flash", "efficient", "math"]
FastMode = Literal["off", "step_cache"]

BLANK_PROMPT = "must not be empty or only white space"


def _not_blank(value: str) -> str:
    if is_blank(value):
        raise PydanticCustomError("blank_prompt", BLANK_PROMPT)
    return value


# A prompt says what to generate: empty or white space only is refused, with one rule on both sides (the
# pydantic check and the CRD's CEL rule read white space alike, see `base.WHITE_SPACE`).
Prompt = Annotated[
    str,
    StringConstraints(max_length=16384),
    AfterValidator(_not_blank),
    Field(json_schema_extra={"x-kubernetes-validations": [cel("self.trim() != ''", BLANK_PROMPT)]}),
]
NegativePrompt = Annotated[str, StringConstraints(max_length=16384)]
OutputName = matching(OUTPUT_NAME, "must be one file name: up to 128 letters, digits, '.', '_' or '-', starting "
                      "with a letter or digit (no folders)", 128)
DNS_NAME_MESSAGE = ("must be a lower-case DNS name: a-z, 0-9, '-' and '.', starting and ending with a letter or "
                    "digit")
DNSName = matching(DNS_SUBDOMAIN, DNS_NAME_MESSAGE, 253)



class ModelSpec(APIModel):
    """Which Cosmos-Predict2 Video2World model runs, and where its weights come from."""

    size: ModelSize = Field("2B", description="Model size: 2B or 14B.")
    checkpoint: StorageURI | None = Field(
        None,
        description=(
            "Diffusers-format checkpoint folder (transformer, vae, text_encoder, tokenizer, scheduler): "
            "`pvc://<claim>/<path>` or `s3://<bucket>/<prefix>`. Defaults to the operator's configured "
            "checkpoint for the model size."
        ),
    )
    dit_path: StorageURI | None = Field(
        None,
        description="Post-trained DiT weights (a safetensors file) that replace the transformer's weights.",
    )
    dtype: DType | None = Field(
        None, description="Compute dtype of the transformer and the VAE; unset: bfloat16 on GPUs, float32 on CPUs."
    )



class InputSpec(APIModel):
    """One conditioning input and its prompt."""

    uri: InputURI = Field(
        ...,
        description="Conditioning image or video: `s3://`, `pvc://<claim>/<path>` or `http(s)://`.",
    )
    prompt: Prompt = Field(..., description="Text prompt describing the video to generate.")
    negative_prompt: NegativePrompt | None = Field(
        None, description="Overrides `generation.negativePrompt` for this input."
    )



class BatchEntry(APIModel):
    """One entry of a batch: the seed's `{input_video, prompt, output_video}` with a safe output name."""

    input: BatchInputURI = Field(..., description="Conditioning image or video URI (at most 1024 characters).")
    prompt: Prompt = Field(..., description="Text prompt for this entry.")
    output: OutputName = Field(
        ...,
        description=(
            "Output file name (one path segment, `.mp4` added when missing), written under the job's "
            "output prefix."
        ),
    )
    negative_prompt: NegativePrompt | None = Field(None, description="Overrides the negative prompt for this entry.")
    seed: Annotated[int, Field(ge=0, le=4294967295)] | None = Field(
        None, description="Overrides `generation.seed` for this entry."
    )



# Our own wording of what a generated video should avoid; the runtime uses it when none is given.
DEFAULT_NEGATIVE_PROMPT = (
    "Blurry, out-of-focus or low-resolution footage; heavy compression, blocking, banding or noise; "
    "flicker, jitter, stutter and sudden jumps between frames; frozen or barely moving scenes; warped, "
    "melting or duplicated objects and people; limbs, hands or faces with the wrong shape; objects that "
    "appear, vanish or pass through each other; motion that breaks physics; washed-out, oversaturated, "
    "over- or underexposed colours; overlaid text, watermarks or logos; a cheap, artificial look."
)


class GenerationSpec(APIModel):
    """Sampling settings, as the seed's CLI flags."""

    num_conditional_frames: ConditionalFrames = Field(
        1, description="Frames to condition on: 1 (image, or a video's last frame) or 5 (a video's last 5 frames)."
    )
    resolution: Resolution = Field(720, description="Output height class: 480 (832x480 at 16:9) or 720 (1280x704).")
    aspect_ratio: AspectRatio = Field("16:9", description="Output aspect ratio.")
    fps: int = Field(16, ge=1, le=60, description="Frames per second of the output video.")
    num_frames: Literal[93] = Field(93, description="Frames per generated video (the models are trained on 93).")
    guidance: float = Field(7.0, ge=0.0, le=30.0, description="Classifier-free guidance scale; 1 or less turns it off.")
    num_steps: int = Field(35, ge=1, le=200, description="Sampling steps.")
    seed: int = Field(0, ge=0, le=4294967295, description="Random seed; each batch entry or generation derives its own.")
    negative_prompt: NegativePrompt | None = Field(
        None,
        description="What to avoid in the video (used when guidance is on); unset means the runtime's built-in text.",
    )


class PromptRefinerSpec(APIModel):
    """The Cosmos-Reason1 prompt refiner that expands short prompts (on by default, as upstream)."""

    enabled: bool = Field(True, description="Refine the prompt before generation.")
    checkpoint: StorageURI | None = Field(
        None, description="Cosmos-Reason1 (Qwen2.5-VL) checkpoint folder; defaults to the operator's configured one."
    )
    offload_to_cpu: bool = Field(True, description="Move the refiner to CPU memory after use so the DiT has the GPU.")
    max_new_tokens: int = Field(512, ge=1, le=4096, description="Upper bound on the refined prompt's tokens.")



class GuardrailSpec(APIModel):
    """Text and video safety checks (on by default, as upstream). When on and a model cannot run, nothing is generated."""

    enabled: bool = Field(True, description="Check prompts and videos; a block is recorded and produces no video.")
    checkpoint: StorageURI | None = Field(
        None,
        description="Folder with the guard models (LLM text classifier, SigLIP video classifier); defaults to the operator's.",
    )
    blocklist: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=1000,
        description="Extra words or phrases to block, added to the built-in blocklist.",
    )
    pixelate_faces: bool = Field(True, description="Pixelate detected faces in every written video.")



def group_size(context_parallel_size: int | None, cfg_parallel: bool | None) -> int:
    """GPUs that make one video together: the Ulysses size, times 2 with CFG parallelism."""
    return (context_parallel_size or 1) * (2 if cfg_parallel else 1)


def check_group(gpus: int, context_parallel_size: int | None, cfg_parallel: bool | None) -> None:
    """The one rule of a layout: the GPUs split into whole groups. ValueError names the sizes."""
    size = group_size(context_parallel_size, cfg_parallel)
    if gpus % size:
        raise ValueError(
            f"gpus ({gpus}) must be a multiple of contextParallelSize ({context_parallel_size or 1})"
            + (" times 2 with cfgParallel" if cfg_parallel else "")
        )


class ParallelismSpec(APIModel):
    """How many GPUs run the job and how one video is split across them."""

    model_config = APIModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "!has(self.contextParallelSize) || self.gpus % (self.contextParallelSize * "
                    "(has(self.cfgParallel) && self.cfgParallel ? 2 : 1)) == 0",
                    "gpus must be a multiple of contextParallelSize (times 2 with cfgParallel)",
                    ".contextParallelSize",
                ),
                cel(
                    "!has(self.cfgParallel) || !self.cfgParallel || self.gpus % 2 == 0",
                    "cfgParallel needs an even number of gpus",
                    ".cfgParallel",
                ),
                cel(
                    "!has(self.gpusPerNode) || self.gpus % self.gpusPerNode == 0",
                    "gpus must be a multiple of gpusPerNode",
                    ".gpusPerNode",
                ),
                cel(
                    "has(self.gpusPerNode) || self.gpus <= 8 || self.gpus % 8 == 0",
                    "more than 8 gpus need gpusPerNode, or a multiple of 8",
                    ".gpus",
                ),
            ]
        }
    }

    gpus: int = Field(1, ge=1, le=256, description="GPUs in all, across every pod of the PyTorchJob.")
    gpus_per_node: int | None = Field(
        None, ge=1, le=16, description="GPUs per pod (torchrun's nproc_per_node); defaults to min(gpus, 8)."
    )
    context_parallel_size: ContextParallelSize | None = Field(
        None,
        description=(
            "GPUs that share one video's latent sequence (Ulysses): 1, 2, 4 or 8. Unset: the runtime picks "
            "it from the GPUs, the model's attention heads and the number of videos."
        ),
    )
    cfg_parallel: bool | None = Field(
        None,
        description=(
            "Run the conditional and unconditional passes on two halves of each GPU group at once. Unset: "
            "the runtime turns it on when the GPUs allow."
        ),
    )

    @property
    def group_size(self) -> int:
        """GPUs that make one video together, as far as the spec fixes it."""
        return group_size(self.context_parallel_size, self.cfg_parallel)

    @property
    def effective_gpus_per_node(self) -> int:
        return self.gpus_per_node if self.gpus_per_node is not None else min(self.gpus, 8)

    @property
    def nodes(self) -> int:
        return self.gpus // self.effective_gpus_per_node

    @model_validator(mode="after")
    def _check_layout(self) -> "ParallelismSpec":
        check_group(self.gpus, self.context_parallel_size, self.cfg_parallel)
        if self.gpus_per_node is not None and self.gpus % self.gpus_per_node:
            raise ValueError(f"gpus ({self.gpus}) must be a multiple of gpusPerNode ({self.gpus_per_node})")
        if self.gpus_per_node is None and self.gpus > 8 and self.gpus % 8:
            raise ValueError(f"gpus ({self.gpus}) above 8 need gpusPerNode, or a multiple of 8")
        return self


class PerformanceSpec(APIModel):
    """Speed options of the sampler. Everything but fastMode keeps the math exact (bf16 tolerance)."""

    attention_backend: AttentionBackend = Field(
        "auto",
        description=(
            "Attention kernel. auto: FlashAttention-4 (fa4) on Hopper and Blackwell GPUs where the runtime image "
            "has it, else PyTorch's SDPA choice (default); cudnn, flash, efficient and math force an SDPA kernel. "
            "The kernel used is named in each video's record."
        ),
    )
    compile: bool = Field(
        True,
        description=(
            "torch.compile the transformer blocks on a GPU (exact; ignored on a CPU). The first forward at a new "
            "size compiles; the compiled kernels are kept under the cache folder for the next run."
        ),
    )
    split_batch: bool = Field(
        True,
        description=(
            "Run the conditional and unconditional passes as two batch-1 forwards: no slower on an H100 and half "
            "the activations (what lets the 14B fit one 80 GB GPU); false runs one batch-2 forward."
        ),
    )
    fast_mode: FastMode = Field(
        "off",
        description=(
            "An opt-in approximation. step_cache runs the transformer on every stepCacheInterval-th middle step "
            "and reuses its last output in between (2B 720p on an H100: 0.28x the stock time at interval 5, "
            "PSNR about 40 dB against exact mode; see bench/results)."
        ),
    )
    step_cache_interval: int = Field(2, ge=1, le=10, description="With fastMode step_cache: run the transformer every N-th middle step.")


class SecretKeyRef(APIModel):
    """A Secret in the job's namespace that holds S3 credentials. Only its name travels; never its values."""

    name: DNSName = Field(
        ..., description="Secret name, in the job's namespace."
    )
    access_key_id_key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        "AWS_ACCESS_KEY_ID", description="Key of the access key id in the Secret."
    )
    secret_access_key_key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        "AWS_SECRET_ACCESS_KEY", description="Key of the secret access key in the Secret."
    )


S3Endpoint = matching(r"^https?://[^/" + NOT_SPACE[2:] + r"+/?$", "must be the http:// or https:// URL of the S3 "
                      "endpoint, a host and port without a path", 512)
S3Region = matching(r"^[a-z0-9\-]{1,64}$", "must be an S3 region such as us-east-1 (a-z, 0-9 and '-')", 64)


class OutputSpec(APIModel):
    """Where results go: MP4s, side files, reports, progress.json and result.json."""

    uri: S3URI = Field(
        ...,
        description="S3 prefix for the results; the job writes under `<uri>/<namespace>/<name>/`.",
    )
    endpoint: S3Endpoint | None = Field(
        None, description="S3 endpoint URL for MinIO and other S3-compatible stores; AWS when unset."
    )
    region: S3Region | None = Field(
        None, description="S3 region."
    )
    credentials_secret: SecretKeyRef | None = Field(
        None,
        description="Secret with the S3 credentials; unset means the pods' own identity (e.g. IRSA) or the operator default.",
    )
    cleanup_policy: Literal["Retain", "Delete"] = Field(
        "Retain", description="What happens to the results when the job is deleted."
    )



class Toleration(APIModel):
    """A pod toleration, as in the core API."""

    key: Annotated[str, StringConstraints(max_length=316)] | None = Field(None, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: Annotated[str, StringConstraints(max_length=63)] | None = Field(None, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; all effects when unset."
    )
    toleration_seconds: int | None = Field(None, ge=0, description="For NoExecute: how long the pod stays bound.")


Quantity = matching(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$",
                    "must be a quantity such as 8, 500m or 16Gi", 64)


class SchedulingSpec(APIModel):
    """Where and how the pods run."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        None, description="Runtime image override; defaults to the operator's configured image."
    )
    gpu_resource_name: matching(r"^[a-z0-9.\-]+/[a-z0-9.\-_]+$", "must be an extended resource name such as "
                                "nvidia.com/gpu", 316) | None = Field(
        None, description="Extended resource name of a GPU, e.g. nvidia.com/gpu; defaults to the operator's."
    )
    cpu: Quantity | None = Field(None, description="CPU request per pod.")
    memory: Quantity | None = Field(None, description="Memory request per pod.")
    node_selector: dict[
        Annotated[str, StringConstraints(max_length=316)], Annotated[str, StringConstraints(max_length=63)]
    ] = Field(default_factory=dict, max_length=64, description="Node labels the pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64, description="Pod tolerations.")
    priority_class_name: DNSName | None = Field(
        None, description="PriorityClass of the pods."
    )
    queue_name: DNSName | None = Field(
        None, description="Kueue LocalQueue that admits the PyTorchJob (label kueue.x-k8s.io/queue-name)."
    )
    service_account_name: DNSName | None = Field(
        None, description="ServiceAccount of the runtime pods."
    )


class RunPolicySpec(APIModel):
    """Limits of the run, passed to the PyTorchJob's runPolicy."""

    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Seconds the job may run before it is stopped and marked Failed."
    )
    backoff_limit: int = Field(3, ge=0, le=100, description="Pod restarts before the job is marked Failed.")
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Seconds after the job finishes before its PyTorchJob and pods are deleted."
    )


def _volume_claims_in(uris: list[str | None]) -> set[str]:
    claims = set()
    for uri in uris:
        if uri and uri.startswith("pvc://"):
            claims.add(uri[len("pvc://"):].split("/", 1)[0])
    return claims


# A pooled job runs on one worker (one pod) of its pool, and the pool, not Kueue, decides when: what can be
# refused without reading the pool is refused at apply (the rest, PoolMismatch, by the operator).
POOL_RULES = [
    cel("!has(self.poolRef) || (has(self.parallelism.gpusPerNode) ? self.parallelism.gpusPerNode == "
        "self.parallelism.gpus : self.parallelism.gpus <= 8)",
        "a job with poolRef runs on one pool worker (one pod): gpus must fit one node", ".poolRef"),
    cel("!has(self.poolRef) || !has(self.scheduling.queueName)",
        "a job with poolRef is run by its pool's workers, not queued through Kueue: leave scheduling.queueName unset",
        ".poolRef"),
    cel("!has(self.poolRef) || !has(self.runPolicy.activeDeadlineSeconds)",
        "runPolicy.activeDeadlineSeconds is not supported with poolRef", ".poolRef"),
]


class JobSpecCommon(APIModel):
    """The fields both kinds share."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="The model and its weights.")
    generation: GenerationSpec = Field(default_factory=GenerationSpec, description="Sampling settings.")
    prompt_refiner: PromptRefinerSpec = Field(
        default_factory=PromptRefinerSpec, description="The prompt refiner (Cosmos-Reason1)."
    )
    guardrail: GuardrailSpec = Field(default_factory=GuardrailSpec, description="Safety checks.")
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec, description="GPUs and their layout.")
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec, description="Speed options of the sampler.")
    output: OutputSpec = Field(..., description="Where results are written.")
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec, description="Pod placement and resources.")
    run_policy: RunPolicySpec = Field(default_factory=RunPolicySpec, description="Deadline, retries and cleanup.")
    suspend: bool = Field(False, description="Suspend the job: its pods are stopped; resume by setting it back to false.")
    pool_ref: DNSName | None = Field(
        None,
        description=(
            "Name of a Video2WorldPool in the job's namespace: an idle worker of the pool, with the model already "
            "loaded, runs the job instead of a PyTorchJob of its own. The job's model, resolution, fps, refiner, "
            "guardrail, GPUs, performance (and critic) settings and its S3 Secret, endpoint and region must be the "
            "pool's; a job that differs fails with reason PoolMismatch naming each field."
        ),
    )

    @model_validator(mode="after")
    def _check_pool(self) -> "JobSpecCommon":
        if self.pool_ref is None:
            return self
        if self.parallelism.nodes != 1:
            raise ValueError("a job with poolRef runs on one pool worker (one pod): gpus must fit one node")
        if self.scheduling.queue_name is not None:
            raise ValueError("a job with poolRef is run by its pool's workers, not queued through Kueue: leave "
                             "scheduling.queueName unset")
        if self.run_policy.active_deadline_seconds is not None:
            raise ValueError("runPolicy.activeDeadlineSeconds is not supported with poolRef")
        return self

    def storage_uris(self) -> list[str | None]:
        return [self.model.checkpoint, self.model.dit_path, self.prompt_refiner.checkpoint, self.guardrail.checkpoint]

    def volume_claims(self) -> set[str]:
        """PVC names the pods must mount, from every `pvc://` URI in the spec."""
        return _volume_claims_in(self.storage_uris())


# A still image by its suffix, read as `is_image_uri` reads it: the path before the first '?'. (A plain
# suffix match disagreed with the model on `x.jpg?v=1`: the API server took it with 5 frames, pydantic not.)
CEL_IMAGE_PATH = r"'^[^?]*\\.(jpg|jpeg|png|webp|bmp|tif|tiff)(\\?.*)?$'"


def _five_frame_rule(input_path: str) -> dict:
    return cel(
        f"self.generation.numConditionalFrames != 5 || !has(self.{input_path}) || "
        f"!self.{input_path}.lowerAscii().matches({CEL_IMAGE_PATH})",
        "numConditionalFrames 5 needs a video input, not a still image",
        ".generation.numConditionalFrames",
    )


def check_five_frame_input(num_conditional_frames: int, uri: str | None, what: str = "a video input") -> None:
    """5-frame conditioning reads a video's last five frames: a still image cannot give them."""
    if num_conditional_frames == 5 and uri is not None and is_image_uri(uri):
        raise ValueError(f"numConditionalFrames 5 needs {what}, not a still image: {uri}")


class Video2WorldJobSpec(JobSpecCommon):
    """One video from one input, or one video per batch entry."""

    model_config = JobSpecCommon.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "[has(self.input), has(self.batch), has(self.batchUri)].filter(x, x).size() == 1",
                    "exactly one of input, batch or batchUri must be set",
                ),
                _five_frame_rule("input.uri"),
                *POOL_RULES,
                cel(
                    "self.generation.numConditionalFrames != 5 || !has(self.batch) || self.batch.all(e, "
                    f"!has(e.input) || !e.input.lowerAscii().matches({CEL_IMAGE_PATH}))",
                    "numConditionalFrames 5 needs every batch input to be a video, not a still image",
                    ".generation.numConditionalFrames",
                ),
            ]
        }
    }

    input: InputSpec | None = Field(None, description="A single input and prompt. Exactly one of input, batch, batchUri.")
    batch: list[BatchEntry] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="A batch of inputs (the seed's batch JSON as YAML); output names are unique.",
        # A list-map keyed on `output`: the API server itself refuses duplicate output names.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["output"]},
    )
    batch_uri: InputURI | None = Field(
        None, description="URI of a batch JSON file: a list of {input_video, prompt, output_video}."
    )


    @model_validator(mode="after")
    def _check_inputs(self) -> "Video2WorldJobSpec":
        given = [name for name in ("input", "batch", "batch_uri") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of input, batch or batchUri must be set (got {len(given)})")
        if self.batch is not None:
            names = [e.output for e in self.batch]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"batch output names must be unique: {', '.join(dupes)}")
        frames = self.generation.num_conditional_frames
        check_five_frame_input(frames, self.input.uri if self.input else None)
        for entry in self.batch or []:
            check_five_frame_input(frames, entry.input, "every batch input to be a video")
        return self

    def storage_uris(self) -> list[str | None]:
        uris = super().storage_uris() + [self.batch_uri]
        if self.input is not None:
            uris.append(self.input.uri)
        uris += [e.input for e in self.batch or []]
        return uris

    @property
    def num_videos(self) -> int | None:
        """Videos the job will make, when known from the spec alone."""
        if self.input is not None:
            return 1
        if self.batch is not None:
            return len(self.batch)
        return None


class CriticSpec(APIModel):
    """The Cosmos-Reason1 critic that scores each generated video."""

    checkpoint: StorageURI | None = Field(
        None, description="Critic (Qwen2.5-VL) checkpoint folder; defaults to the prompt refiner's checkpoint."
    )
    num_trials: int = Field(3, ge=1, le=32, description="Times the critic judges each video.")
    fps: float = Field(16.0, ge=1, le=60, description="Frame rate the critic watches each video at.")
    # About 640x360 a frame: a 93-frame clip at 16 fps is then about 14k vision tokens for the 7B critic,
    # where the processor's own bound (about 600k pixels) would make about 36k.
    max_pixels: int = Field(
        640 * 360, ge=0, le=4096 * 4096,
        description="Pixels per frame the critic sees at most; 0 keeps the checkpoint processor's own bound.",
    )
    max_new_tokens: int = Field(1024, ge=1, le=8192, description="Upper bound on each critic answer's tokens.")
    seed: int = Field(0, ge=0, le=4294967295, description="Sampling seed of the first critic trial; trial i uses seed + i.")



class BestOfNSpec(APIModel):
    """Rejection sampling: N videos, each judged by the critic; the best one wins."""

    num_generations: int = Field(5, ge=1, le=64, description="Videos to generate, each with its own seed.")
    critic: CriticSpec = Field(default_factory=CriticSpec, description="The critic.")
    skip_generation: bool = Field(
        False, description="Score the existing videos at `videosUri` without generating any."
    )
    videos_uri: InputURI | None = Field(
        None, description="Folder or S3 prefix of existing videos to score (with skipGeneration)."
    )



class BestOfNJobSpec(JobSpecCommon):
    """N generations from one input, scored by the critic."""

    model_config = JobSpecCommon.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "self.bestOfN.skipGeneration || has(self.input)",
                    "input is required unless bestOfN.skipGeneration is set",
                    ".input",
                ),
                cel(
                    "!self.bestOfN.skipGeneration || has(self.bestOfN.videosUri)",
                    "bestOfN.videosUri is required with bestOfN.skipGeneration",
                    ".bestOfN.videosUri",
                ),
                _five_frame_rule("input.uri"),
                *POOL_RULES,
            ]
        }
    }

    input: InputSpec | None = Field(None, description="The input and prompt every generation starts from.")
    best_of_n: BestOfNSpec = Field(
        default_factory=BestOfNSpec, alias="bestOfN", description="Number of generations and the critic."
    )

    @model_validator(mode="after")
    def _check_inputs(self) -> "BestOfNJobSpec":
        if not self.best_of_n.skip_generation and self.input is None:
            raise ValueError("input is required unless bestOfN.skipGeneration is set")
        if self.best_of_n.skip_generation and self.best_of_n.videos_uri is None:
            raise ValueError("bestOfN.videosUri is required with bestOfN.skipGeneration")
        check_five_frame_input(self.generation.num_conditional_frames, self.input.uri if self.input else None)
        return self

    def storage_uris(self) -> list[str | None]:
        uris = super().storage_uris() + [self.best_of_n.critic.checkpoint, self.best_of_n.videos_uri]
        if self.input is not None:
            uris.append(self.input.uri)
        return uris


__all__ = [
    "DEFAULT_NEGATIVE_PROMPT",
    "BatchEntry",
    "BestOfNJobSpec",
    "BestOfNSpec",
    "CriticSpec",
    "GenerationSpec",
    "GuardrailSpec",
    "InputSpec",
    "JobSpecCommon",
    "ModelSpec",
    "OutputSpec",
    "ParallelismSpec",
    "PerformanceSpec",
    "PromptRefinerSpec",
    "RunPolicySpec",
    "SchedulingSpec",
    "SecretKeyRef",
    "Toleration",
    "Video2WorldJobSpec",
]
