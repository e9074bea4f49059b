"""Invalid specs, each with the field a good error must name. Shared by the pydantic tests and the
API-server tests, so both sides of the validation are held to the same list."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def child_examples() -> list[Path]:
    """The examples that become a PyTorchJob or TrainJob: jobs (not pools) that name no pool."""
    from v2w_api import KINDS

    return [path for path in sorted(EXAMPLES.glob("*.yaml"))
            if (doc := load_example(path.name))["kind"] in KINDS and not (doc.get("spec") or {}).get("poolRef")]


SINGLE = "video2world-job.yaml"
BATCH = "video2world-batch-job.yaml"
BEST = "bestofn-job.yaml"


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        node = doc
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[keys[-1]] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        node = doc
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[keys[-1]]

    return mutate


def _all(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        for m in mutations:
            m(doc)

    return mutate


@dataclass(frozen=True)
class Case:
    id: str
    example: str
    mutate: Callable[[dict], None]
    field: str  # the path the API server's message must name
    api_only: bool = False  # metadata rules that pydantic does not see
    message: str | None = None  # the words both refusals must use (a pattern's readable message)

    def manifest(self, name: str | None = None) -> dict[str, Any]:
        doc = copy.deepcopy(load_example(self.example))
        if name:
            doc["metadata"]["name"] = name
        self.mutate(doc)
        return doc

    @property
    def pydantic_loc(self) -> str:
        """The API path in pydantic's dotted form (`spec.batch.0.output`)."""
        return self.field.replace("[", ".").replace("]", "")


INVALID = [
    Case("model-size-enum", SINGLE, _set("spec.model.size", "7B"), "spec.model.size"),
    Case("resolution-enum", SINGLE, _set("spec.generation.resolution", 1080), "spec.generation.resolution"),
    Case("aspect-ratio-enum", SINGLE, _set("spec.generation.aspectRatio", "21:9"), "spec.generation.aspectRatio"),
    Case("conditional-frames-enum", SINGLE, _set("spec.generation.numConditionalFrames", 3),
         "spec.generation.numConditionalFrames"),
    Case("negative-steps", SINGLE, _set("spec.generation.numSteps", -1), "spec.generation.numSteps"),
    Case("guidance-too-high", SINGLE, _set("spec.generation.guidance", 100), "spec.generation.guidance"),
    Case("negative-seed", SINGLE, _set("spec.generation.seed", -5), "spec.generation.seed"),
    Case("cp-size-not-dividing-gpus", SINGLE,
         _all(_set("spec.parallelism.gpus", 6), _set("spec.parallelism.contextParallelSize", 4)),
         "spec.parallelism.contextParallelSize"),
    Case("cfg-parallel-odd-gpus", SINGLE,
         _all(_set("spec.parallelism.gpus", 3), _set("spec.parallelism.cfgParallel", True)),
         "spec.parallelism.cfgParallel"),
    Case("cp-size-enum", SINGLE, _set("spec.parallelism.contextParallelSize", 3), "spec.parallelism.contextParallelSize"),
    Case("gpus-per-node-not-dividing", SINGLE,
         _all(_set("spec.parallelism.gpus", 8), _set("spec.parallelism.gpusPerNode", 3)),
         "spec.parallelism.gpusPerNode"),
    Case("missing-prompt", SINGLE, _delete("spec.input.prompt"), "spec.input.prompt"),
    Case("empty-prompt", SINGLE, _set("spec.input.prompt", ""), "spec.input.prompt"),
    Case("blank-prompt", SINGLE, _set("spec.input.prompt", " \t\n\u3000"), "spec.input.prompt"),
    Case("blank-batch-prompt", BATCH, _set("spec.batch.1.prompt", "   "), "spec.batch[1].prompt"),
    Case("blank-bestofn-prompt", BEST, _set("spec.input.prompt", "\u00a0\u2028 "), "spec.input.prompt"),
    Case("bad-output-s3-uri", SINGLE, _set("spec.output.uri", "http://v2w-results/jobs"), "spec.output.uri",
         message="must be an s3:// URI with a bucket"),
    Case("output-uri-dot-dot", SINGLE, _set("spec.output.uri", "s3://v2w-results/jobs/../other"), "spec.output.uri"),
    Case("missing-output", SINGLE, _delete("spec.output"), "spec.output"),
    Case("input-uri-scheme", SINGLE, _set("spec.input.uri", "file:///etc/passwd"), "spec.input.uri",
         message="must be an s3://<bucket>/<key>, pvc://<claim>/<path> or http(s):// URI"),
    Case("checkpoint-scheme", SINGLE, _set("spec.model.checkpoint", "/models/2b"), "spec.model.checkpoint",
         message="must be pvc://<claim>/<path>"),
    Case("endpoint-with-path", SINGLE, _set("spec.output.endpoint", "https://minio:9000/bucket"),
         "spec.output.endpoint", message="must be the http:// or https:// URL of the S3 endpoint"),
    Case("region-upper-case", SINGLE, _set("spec.output.region", "EU-West-1"), "spec.output.region",
         message="must be an S3 region"),
    Case("memory-quantity", BEST, _set("spec.scheduling.memory", "16 GB"), "spec.scheduling.memory",
         message="must be a quantity such as 8, 500m or 16Gi"),
    Case("gpu-resource-name", BEST, _set("spec.scheduling.gpuResourceName", "gpu"), "spec.scheduling.gpuResourceName",
         message="must be an extended resource name"),
    Case("checkpoint-dot-dot", SINGLE, _set("spec.model.checkpoint", "pvc://models/../../etc"), "spec.model.checkpoint"),
    Case("unknown-field", SINGLE, _set("spec.turbo", True), "spec.turbo"),
    Case("input-and-batch", SINGLE,
         _set("spec.batch", [{"input": "s3://v2w-inputs/x.jpg", "prompt": "p", "output": "x"}]), "spec"),
    Case("no-input", SINGLE, _delete("spec.input"), "spec"),
    Case("five-frames-from-image", SINGLE, _set("spec.generation.numConditionalFrames", 5),
         "spec.generation.numConditionalFrames"),
    Case("five-frames-batch-image", BATCH, _set("spec.generation.numConditionalFrames", 5),
         "spec.generation.numConditionalFrames"),
    Case("batch-output-escapes", BATCH, _set("spec.batch.0.output", "../../etc/cron.d/x"), "spec.batch[0].output",
         message="must be one file name"),
    Case("batch-output-absolute", BATCH, _set("spec.batch.1.output", "/tmp/x.mp4"), "spec.batch[1].output"),
    Case("batch-output-duplicate", BATCH, _set("spec.batch.1.output", "bus-terminal-night-movement"), "spec.batch"),
    Case("batch-empty", BATCH, _set("spec.batch", []), "spec.batch"),
    Case("secret-name-invalid", SINGLE, _set("spec.output.credentialsSecret.name", "My_Secret"),
         "spec.output.credentialsSecret.name", message="must be a lower-case DNS name"),
    Case("toleration-operator", BEST, _set("spec.scheduling.tolerations.0.operator", "Maybe"),
         "spec.scheduling.tolerations[0].operator"),
    Case("zero-generations", BEST, _set("spec.bestOfN.numGenerations", 0), "spec.bestOfN.numGenerations"),
    Case("critic-trials-too-many", BEST, _set("spec.bestOfN.critic.numTrials", 1000), "spec.bestOfN.critic.numTrials"),
    Case("skip-generation-without-videos", BEST, _set("spec.bestOfN.skipGeneration", True), "spec.bestOfN.videosUri"),
    Case("bestofn-without-input", BEST, _delete("spec.input"), "spec.input"),
    Case("pool-ref-multi-node", SINGLE, _all(_set("spec.poolRef", "fast"), _set("spec.parallelism.gpus", 16)),
         "spec.poolRef", message="one pool worker"),
    Case("pool-ref-with-queue", BEST, _all(_set("spec.poolRef", "fast"), _set("spec.scheduling.queueName", "gpus")),
         "spec.poolRef", message="not queued through Kueue"),
    Case("pool-ref-with-deadline", SINGLE,
         _all(_set("spec.poolRef", "fast"), _set("spec.runPolicy.activeDeadlineSeconds", 60)), "spec.poolRef",
         message="activeDeadlineSeconds"),
    Case("pool-ref-not-a-name", SINGLE, _set("spec.poolRef", "Fast Pool"), "spec.poolRef"),
    Case("name-too-long", SINGLE, _set("metadata.name", "a" * 49), "metadata.name", api_only=True),
]
