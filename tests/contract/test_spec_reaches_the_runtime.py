"""The operator → runtime contract: every field of both job specs arrives where it acts.

The fields are enumerated from the models themselves, so a field added to the API fails this test until it
is mapped here. Each one gets a value different from its default, the operator's real builder makes the
PyTorchJob, and the runtime's real parser reads the container's arguments (and the runtime's batch parser
reads the batch file the operator stores); the value must be there. Fields that only the operator acts on
(placement, run policy, credentials, cleanup) are listed with their reason and checked in the PyTorchJob.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from pydantic import BaseModel

from v2w_api import KINDS, BestOfNJobSpec, Video2WorldJobSpec
from v2w_api.run import RunConfig
from v2w_operator.backends import child, pytorchjob
from v2w_operator.config import OperatorConfig
from v2w_runtime.batch import parse_batch
from v2w_runtime.cli import parse

CONFIG = OperatorConfig(checkpoint_2b="s3://models/2b", checkpoint_14b="s3://models/14b",
                        refiner_checkpoint="s3://models/reason1", guardrail_checkpoint="s3://models/guard")
NAMESPACE, NAME = "team-a", "job-a"
BATCH_URI = f"s3://results/jobs/{NAMESPACE}/{NAME}/batch.json"
PROGRAMS = {"v2w_runtime.video2world": "video2world", "v2w_runtime.bestofn": "bestofn"}


def leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field path of `model`, into nested groups and into the items of lists of groups."""
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _nested(info.annotation)
        out += leaves(nested, path + ".") if nested else [path]
    return out


def _nested(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if typing.get_origin(arg) is list:
            return _nested(typing.get_args(arg)[0])
    return None


@dataclass
class Built:
    spec: Video2WorldJobSpec | BestOfNJobSpec
    pytorchjob: dict
    config: RunConfig  # as the runtime parsed it from the container's arguments

    @property
    def container(self) -> dict:
        return self.pytorchjob["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]

    @property
    def pod(self) -> dict:
        return self.pytorchjob["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]

    @property
    def env(self) -> dict[str, dict]:
        return {e["name"]: e for e in self.container["env"]}

    def batch_items(self):
        """The inline batch as the operator stores it, read by the runtime's batch parser."""
        return parse_batch(child.batch_json(self.spec), "batch.json")


def build(kind: str, spec_doc: dict) -> Built:
    doc = {"apiVersion": "video2world.io/v1alpha1", "kind": kind, "metadata": {"name": NAME}, "spec": spec_doc}
    spec = KINDS[kind][1].model_validate(doc).spec
    pj = pytorchjob.build(kind, NAME, NAMESPACE, "uid-1", spec, CONFIG, BATCH_URI)
    args = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "--module" and args[2] == "--config"
    return Built(spec, pj, parse(PROGRAMS[args[1]], args[2:]))


def base(kind: str) -> dict:
    spec: dict[str, Any] = {"input": {"uri": "s3://inputs/in.jpg", "prompt": "a bus"},
                            "output": {"uri": "s3://results/jobs"}}
    return spec


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Mapping:
    """How one field is set to a non-default value, and where it must then be found."""

    set: Callable[[dict], None]
    arrived: Callable[[Built], bool]
    operator_only: str | None = None  # why the runtime never sees it


def put(path: str, value: Any, *also: tuple[str, Any]) -> Callable[[dict], None]:
    def mutate(spec: dict) -> None:
        for key, val in ((path, value), *also):
            node = spec
            *groups, name = key.split(".")
            for group in groups:
                node = node.setdefault(group, {})
            if val is _DELETE:
                node.pop(name, None)
            else:
                node[name] = val
    return mutate


_DELETE = object()
AS_BATCH = ("batch", [{"input": "s3://inputs/a.jpg", "prompt": "a tram", "output": "one"}])
NO_INPUT = ("input", _DELETE)


def at(path: str, value: Any) -> Callable[[Built], bool]:
    def check(built: Built) -> bool:
        node: Any = built.config
        for part in path.split("."):
            node = getattr(node, part)
        return node == value
    return check


def runtime(path: str, value: Any, *also: tuple[str, Any], config_path: str | None = None) -> Mapping:
    """A field the runtime reads from its run configuration, at the same path unless `config_path` says."""
    return Mapping(put(_camel(path), value, *also), at(config_path or path, value))


def _camel(path: str) -> str:
    from pydantic.alias_generators import to_camel

    return ".".join(to_camel(p) for p in path.split("."))


COMMON: dict[str, Mapping] = {
    "model.size": runtime("model.size", "14B"),
    "model.checkpoint": runtime("model.checkpoint", "pvc://models/2b"),
    "model.dit_path": runtime("model.dit_path", "s3://models/post-trained.safetensors"),
    "model.dtype": runtime("model.dtype", "float16"),
    "input.uri": runtime("input.uri", "https://example.com/in.mp4"),
    "input.prompt": runtime("input.prompt", "a tram in the rain"),
    "input.negative_prompt": Mapping(put("input.negativePrompt", "fog"),
                                     lambda b: b.config.input.negative_prompt == "fog" == b.config.negative_prompt),
    "generation.num_conditional_frames": runtime("generation.num_conditional_frames", 5,
                                                 ("input.uri", "s3://inputs/clip.mp4")),
    "generation.resolution": runtime("generation.resolution", 480),
    "generation.aspect_ratio": runtime("generation.aspect_ratio", "9:16"),
    "generation.fps": runtime("generation.fps", 24),
    # Literal[93]: there is no other value to set; it must still arrive.
    "generation.num_frames": Mapping(put("generation.numFrames", 93), lambda b: b.config.num_frames == 93),
    "generation.guidance": runtime("generation.guidance", 3.5),
    "generation.num_steps": runtime("generation.num_steps", 12),
    "generation.seed": runtime("generation.seed", 4242),
    "generation.negative_prompt": Mapping(put("generation.negativePrompt", "smoke"),
                                          lambda b: b.config.negative_prompt == "smoke"),
    "prompt_refiner.enabled": runtime("prompt_refiner.enabled", False),
    "prompt_refiner.checkpoint": runtime("prompt_refiner.checkpoint", "s3://models/reason1-ft"),
    "prompt_refiner.offload_to_cpu": runtime("prompt_refiner.offload_to_cpu", False),
    "prompt_refiner.max_new_tokens": runtime("prompt_refiner.max_new_tokens", 64),
    "guardrail.enabled": runtime("guardrail.enabled", False),
    "guardrail.checkpoint": runtime("guardrail.checkpoint", "pvc://models/guardrail1"),
    "guardrail.blocklist": runtime("guardrail.blocklist", ["zeppelin", "two words"]),
    "guardrail.pixelate_faces": runtime("guardrail.pixelate_faces", False),
    "parallelism.gpus": runtime("parallelism.gpus", 4),
    "parallelism.gpus_per_node": Mapping(
        put("parallelism.gpusPerNode", 2, ("parallelism.gpus", 4)),
        lambda b: b.config.parallelism.gpus_per_node == 2 and b.pytorchjob["spec"]["nprocPerNode"] == "2"
        and b.pytorchjob["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1),
    "parallelism.context_parallel_size": runtime("parallelism.context_parallel_size", 2, ("parallelism.gpus", 2)),
    "parallelism.cfg_parallel": runtime("parallelism.cfg_parallel", True, ("parallelism.gpus", 2)),
    "performance.attention_backend": runtime("performance.attention_backend", "cudnn"),
    "performance.compile": runtime("performance.compile", False),
    "performance.split_batch": runtime("performance.split_batch", False),
    "performance.fast_mode": runtime("performance.fast_mode", "step_cache"),
    "performance.step_cache_interval": runtime("performance.step_cache_interval", 5),
    "output.uri": Mapping(put("output.uri", "s3://elsewhere/p"),
                          lambda b: b.config.output.uri == f"s3://elsewhere/p/{NAMESPACE}/{NAME}"),
    "output.endpoint": Mapping(put("output.endpoint", "https://s3.example.com"),
                               lambda b: b.env["AWS_ENDPOINT_URL"]["value"] == "https://s3.example.com",
                               "boto3 reads it from AWS_ENDPOINT_URL in the runtime's environment"),
    "output.region": Mapping(put("output.region", "eu-west-3"), lambda b: b.env["AWS_REGION"]["value"] == "eu-west-3",
                             "boto3 reads it from AWS_REGION in the runtime's environment"),
    "output.credentials_secret.name": Mapping(
        put("output.credentialsSecret", {"name": "team-s3"}),
        lambda b: b.env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team-s3",
        "credentials reach the pods as Secret references in the environment, never in the configuration"),
    "output.credentials_secret.access_key_id_key": Mapping(
        put("output.credentialsSecret", {"name": "team-s3", "accessKeyIdKey": "id"}),
        lambda b: b.env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"] == "id",
        "a key of the Secret, referenced from the environment"),
    "output.credentials_secret.secret_access_key_key": Mapping(
        put("output.credentialsSecret", {"name": "team-s3", "secretAccessKeyKey": "key"}),
        lambda b: b.env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "key",
        "a key of the Secret, referenced from the environment"),
    "output.cleanup_policy": Mapping(put("output.cleanupPolicy", "Delete"), lambda b: True,
                                     "the operator deletes the results when the job is deleted"),
    "scheduling.image": Mapping(put("scheduling.image", "registry.example/v2w:dev"),
                                lambda b: b.container["image"] == "registry.example/v2w:dev", "the pod's image"),
    "scheduling.gpu_resource_name": Mapping(put("scheduling.gpuResourceName", "amd.com/gpu"),
                                            lambda b: "amd.com/gpu" in b.container["resources"]["limits"],
                                            "the pod's resource limits"),
    "scheduling.cpu": Mapping(put("scheduling.cpu", "7"), lambda b: b.container["resources"]["requests"]["cpu"] == "7",
                              "the pod's resource requests"),
    "scheduling.memory": Mapping(put("scheduling.memory", "90Gi"),
                                 lambda b: b.container["resources"]["requests"]["memory"] == "90Gi",
                                 "the pod's resource requests"),
    "scheduling.node_selector": Mapping(put("scheduling.nodeSelector", {"gpu": "h100"}),
                                        lambda b: b.pod["nodeSelector"] == {"gpu": "h100"}, "pod placement"),
    "scheduling.tolerations.key": Mapping(put("scheduling.tolerations", [{"key": "gpu"}]),
                                          lambda b: b.pod["tolerations"][0]["key"] == "gpu", "pod placement"),
    "scheduling.tolerations.operator": Mapping(put("scheduling.tolerations", [{"key": "gpu", "operator": "Exists"}]),
                                               lambda b: b.pod["tolerations"][0]["operator"] == "Exists",
                                               "pod placement"),
    "scheduling.tolerations.value": Mapping(put("scheduling.tolerations", [{"key": "gpu", "value": "yes"}]),
                                            lambda b: b.pod["tolerations"][0]["value"] == "yes", "pod placement"),
    "scheduling.tolerations.effect": Mapping(put("scheduling.tolerations", [{"key": "gpu", "effect": "NoSchedule"}]),
                                             lambda b: b.pod["tolerations"][0]["effect"] == "NoSchedule",
                                             "pod placement"),
    "scheduling.tolerations.toleration_seconds": Mapping(
        put("scheduling.tolerations", [{"key": "gpu", "effect": "NoExecute", "tolerationSeconds": 30}]),
        lambda b: b.pod["tolerations"][0]["tolerationSeconds"] == 30, "pod placement"),
    "scheduling.priority_class_name": Mapping(put("scheduling.priorityClassName", "high"),
                                              lambda b: b.pod["priorityClassName"] == "high", "pod scheduling"),
    "scheduling.queue_name": Mapping(
        put("scheduling.queueName", "team-queue"),
        lambda b: b.pytorchjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-queue",
        "Kueue admits the PyTorchJob by its label"),
    "scheduling.service_account_name": Mapping(put("scheduling.serviceAccountName", "runner"),
                                               lambda b: b.pod["serviceAccountName"] == "runner", "the pod's identity"),
    "run_policy.active_deadline_seconds": Mapping(
        put("runPolicy.activeDeadlineSeconds", 600),
        lambda b: b.pytorchjob["spec"]["runPolicy"]["activeDeadlineSeconds"] == 600,
        "the training-operator stops the pods"),
    "run_policy.backoff_limit": Mapping(put("runPolicy.backoffLimit", 0),
                                        lambda b: b.pytorchjob["spec"]["runPolicy"]["backoffLimit"] == 0,
                                        "the training-operator restarts the pods"),
    "run_policy.ttl_seconds_after_finished": Mapping(
        put("runPolicy.ttlSecondsAfterFinished", 60),
        lambda b: b.pytorchjob["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 60,
        "the training-operator removes the finished pods"),
    "suspend": Mapping(put("suspend", True), lambda b: b.pytorchjob["spec"]["runPolicy"]["suspend"] is True,
                       "the training-operator stops and starts the pods"),
    "pool_ref": Mapping(put("poolRef", "fast"), lambda b: True,
                        "the operator gives the job a Lease for the pool's workers instead of a PyTorchJob "
                        "(tests/contract/test_pool_reaches_the_worker.py)"),
}

VIDEO2WORLD: dict[str, Mapping] = {
    "batch.input": Mapping(put(*AS_BATCH, NO_INPUT),
                           lambda b: b.batch_items()[0].input_video == "s3://inputs/a.jpg"
                           and b.config.batch_uri == BATCH_URI and b.config.input is None),
    "batch.prompt": Mapping(put(*AS_BATCH, NO_INPUT), lambda b: b.batch_items()[0].prompt == "a tram"),
    "batch.output": Mapping(put(*AS_BATCH, NO_INPUT), lambda b: b.batch_items()[0].output_video == "one.mp4"),
    "batch.negative_prompt": Mapping(
        put("batch", [{"input": "s3://inputs/a.jpg", "prompt": "p", "output": "o", "negativePrompt": "haze"}], NO_INPUT),
        lambda b: b.batch_items()[0].negative_prompt == "haze"),
    "batch.seed": Mapping(put("batch", [{"input": "s3://inputs/a.jpg", "prompt": "p", "output": "o", "seed": 9}],
                              NO_INPUT),
                          lambda b: b.batch_items()[0].seed == 9),
    "batch_uri": runtime("batch_uri", "s3://inputs/batch.json", NO_INPUT),
}

BEST_OF_N: dict[str, Mapping] = {
    "best_of_n.num_generations": runtime("best_of_n.num_generations", 9),
    "best_of_n.critic.checkpoint": runtime("best_of_n.critic.checkpoint", "s3://models/critic"),
    "best_of_n.critic.num_trials": runtime("best_of_n.critic.num_trials", 7),
    "best_of_n.critic.fps": runtime("best_of_n.critic.fps", 8.0),
    "best_of_n.critic.max_pixels": runtime("best_of_n.critic.max_pixels", 0),
    "best_of_n.critic.max_new_tokens": runtime("best_of_n.critic.max_new_tokens", 256),
    "best_of_n.critic.seed": runtime("best_of_n.critic.seed", 77),
    "best_of_n.skip_generation": runtime("best_of_n.skip_generation", True,
                                         ("bestOfN.videosUri", "s3://results/jobs/team-a/earlier")),
    "best_of_n.videos_uri": runtime("best_of_n.videos_uri", "s3://results/jobs/team-a/earlier",
                                    ("bestOfN.skipGeneration", True)),
}

CASES = [("Video2WorldJob", path, {**COMMON, **VIDEO2WORLD}) for path in leaves(Video2WorldJobSpec)] + \
        [("BestOfNJob", path, {**COMMON, **BEST_OF_N}) for path in leaves(BestOfNJobSpec)]


def test_every_field_is_mapped():
    """A new field of either spec fails here until this table says where it goes."""
    unmapped = [f"{kind}: spec.{path}" for kind, path, table in CASES if path not in table]
    assert not unmapped, "map these fields in the contract test (runtime key, or operator-only with a reason)"


@pytest.mark.parametrize("kind,path,table", CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_field_reaches_where_it_acts(kind, path, table):
    if path not in table:
        pytest.fail(f"spec.{path} of {kind} is not mapped")
    mapping = table[path]
    spec = base(kind)
    mapping.set(spec)
    built = build(kind, spec)
    assert mapping.arrived(built), f"spec.{path} of {kind} did not arrive: {built.config.to_yaml()}"
    if mapping.operator_only is None and not path.startswith(("batch.", "output.uri")):
        # A runtime field is in the configuration the PyTorchJob shows a person, not only in a default.
        assert _camel(path).split(".")[-1] in built.container["args"][3]


def test_the_defaults_arrive_unchanged():
    """With nothing set, the runtime runs the API's defaults (no default of its own sneaks in)."""
    built = build("Video2WorldJob", base("Video2WorldJob"))
    spec, config = built.spec, built.config
    assert config.generation == spec.generation and config.performance == spec.performance
    assert config.parallelism == spec.parallelism
    assert config.model.checkpoint == CONFIG.checkpoint_2b and config.guardrail.checkpoint == CONFIG.guardrail_checkpoint
    assert config.prompt_refiner.checkpoint == CONFIG.refiner_checkpoint
    assert config.output.video_name == f"{NAME}.mp4"
    # the files the operator reads: no record name, so progress.json and result.json under the job's prefix
    assert config.output.record_name is None
    assert (config.output.progress_file, config.output.result_file) == ("progress.json", "result.json")
    bon = build("BestOfNJob", base("BestOfNJob")).config
    assert bon.best_of_n == BestOfNJobSpec.model_validate(base("BestOfNJob")).best_of_n
    assert bon.critic_checkpoint == CONFIG.refiner_checkpoint  # the critic defaults to the refiner's checkpoint


def test_platform_flags_fill_in_and_may_not_contradict():
    """runtime.extraArgs (the chart's) are appended after the configuration: debug knobs fill it in, a flag that
    says something else than the job is refused naming both."""
    built = build("Video2WorldJob", base("Video2WorldJob"))
    args = built.container["args"][2:]
    config = parse("video2world", args + ["--num_frames", "9", "--height", "64", "--device", "cpu"])
    assert (config.num_frames, config.debug.height, config.debug.device) == (9, 64, "cpu")
    from v2w_runtime.cli import UsageError

    with pytest.raises(UsageError, match=r"--num_steps 2 contradicts generation.numSteps: 35 in the --config text"):
        parse("video2world", args + ["--num_steps", "2"])


def test_a_configuration_too_large_for_one_argument_is_refused():
    spec = base("Video2WorldJob")
    spec["guardrail"] = {"blocklist": ["x" * 200] * 1000}
    with pytest.raises(child.RunConfigTooLarge, match="shorten the prompts or the guardrail blocklist"):
        build("Video2WorldJob", spec)
