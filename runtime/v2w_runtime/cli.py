"""The seed's command line as a front end: flags in, one `RunConfig` out.

Every flag of upstream's `examples/video2world.py` and `video2world_bestofn.py` keeps its name and its
meaning, but none of them holds a default or a rule: a flag only says where its value goes in the run
configuration (`generation.num_steps` for `--num_steps`), and the configuration's models (the API's groups)
supply the defaults shown in `--help` and refuse what is wrong. `--config FILE_OR_YAML` starts from a
configuration (the operator passes one); a flag that says something else than that file is an error
naming both, and a flag the file leaves unset fills it in.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from v2w_api.run import RunConfig, RunConfigError, describe_errors
from v2w_api.uris import LOCAL_PATHS
from v2w_api.spec import CONTEXT_PARALLEL_SIZES, AttentionBackend
from v2w_api.uris import is_s3

Program = Literal["video2world", "bestofn"]

# The seed's defaults for what a job spec does not say: where a hand-started run reads and writes.
DEFAULT_INPUT = "assets/video2world/input0.jpg"
DEFAULT_SAVE_PATH = {"video2world": "output/generated_video.mp4", "bestofn": "output/best-of-n"}

EXIT_CODES = ("exit codes: 0 all videos succeeded or were blocked by the guardrail; 1 some failed; 2 bad arguments, "
              "configuration, input or checkpoint, nothing generated; 3 the guardrail is enabled but cannot run, "
              "nothing generated (fail closed)")


class UsageError(ValueError):
    """Arguments that cannot work together; nothing was loaded."""


@dataclass(frozen=True)
class Flag:
    """One command-line flag and the configuration key its value goes to."""

    names: tuple[str, ...]
    path: str  # dotted snake_case key in RunConfig
    help: str
    group: str
    type: Callable[[str], Any] | None = str
    choices: tuple | None = None
    const: Any = None  # a switch: the value the key gets when the flag is given
    negatable: bool = False  # --x / --no-x
    append: bool = False  # repeatable, values collected in a list
    programs: tuple[str, ...] = ("video2world", "bestofn")
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.names[0].lstrip("-")


def _switch(name: str, path: str, value: Any, help: str, group: str, **kw) -> Flag:
    return Flag((name,), path, help, group, type=None, const=value, **kw)


BESTOFN = ("bestofn",)
FLAGS: tuple[Flag, ...] = (
    # model
    Flag(("--model_size",), "model.size", "Model size.", "model", choices=("2B", "14B")),
    Flag(("--checkpoint_dir",), "model.checkpoint",
         "The model's checkpoints (local, pvc:// or an s3:// prefix; from S3 only the files the run needs are "
         "downloaded, once, into $V2W_CACHE_DIR): a diffusers folder, the Hugging Face cache of the Hub repository "
         "nvidia/Cosmos-Predict2-<size>-Video2World, or upstream's checkpoints/ tree (native DiT for the run's "
         "resolution and fps, native Wan VAE, google-t5/t5-11b; its Cosmos-Reason1-7B and Cosmos-Guardrail1 become "
         "the refiner's and guardrail's defaults); default: checkpoints/nvidia/Cosmos-Predict2-<size>-Video2World.",
         "model"),
    Flag(("--dit_path",), "model.dit_path",
         "Post-trained DiT weights replacing the transformer's: safetensors or a PyTorch .pt/.pth, in diffusers' key "
         "names or upstream's native ones (net., model., module. or EMA net_ema. prefixes).", "model"),
    Flag(("--dtype",), "model.dtype", "Compute dtype; default: bfloat16 on GPUs, float32 on CPUs.", "model",
         choices=("bfloat16", "float16", "float32")),
    _switch("--verify_only", "verify_only", True,
            "Check every checkpoint the run would load (model, --dit_path, refiner, critic, guardrail folder) and exit "
            "0 when all are there and whole, 2 when not; loads no weights and writes nothing.", "model"),
    # input
    Flag(("--input_path",), "input.uri", f"Conditioning image or video; default: {DEFAULT_INPUT}.", "input"),
    Flag(("--prompt",), "input.prompt",
         "Text prompt describing the video to generate (required without --batch_input_json).", "input"),
    Flag(("--negative_prompt",), "generation.negative_prompt",
         "What the video should avoid (used when guidance > 1); default: a built-in description of blurry, "
         "jittery, distorted, low-quality footage.", "input"),
    Flag(("--num_conditional_frames",), "generation.num_conditional_frames",
         "1: an image, or a video's last frame; 5: a video's last 5 frames.", "input", type=int, choices=(1, 5)),
    Flag(("--batch_input_json",), "batch_uri",
         "JSON list of {input_video, prompt, output_video} (optional negative_prompt, seed); replaces "
         "--input_path/--prompt/--save_path (not supported by best-of-N).", "input"),
    # output (--save_path and --output_uri are read by output_keys())
    Flag(("--save_path",), "output", "", "output"),
    Flag(("--output_uri", "--output-uri"), "output", "", "output"),
    # generation
    Flag(("--resolution",), "generation.resolution", "Output resolution class: 720 (1280x704 at 16:9) or 480.",
         "generation", type=int, choices=(480, 720)),
    Flag(("--aspect_ratio",), "generation.aspect_ratio", "Output aspect ratio.", "generation",
         choices=("16:9", "4:3", "1:1", "3:4", "9:16")),
    Flag(("--fps",), "generation.fps", "Frames per second of the output video.", "generation", type=int),
    Flag(("--num_steps",), "generation.num_steps", "Sampling steps.", "generation", type=int),
    Flag(("--guidance",), "generation.guidance", "Classifier-free guidance scale (1 or less: off).", "generation",
         type=float),
    Flag(("--seed",), "generation.seed",
         "Random seed; batch entry i (best-of-N generation i) uses seed + i unless the entry sets its own.",
         "generation", type=int),
    # guardrail and prompt refiner
    _switch("--disable_guardrail", "guardrail.enabled", False, "Do not check prompts and videos.", "safety"),
    Flag(("--guardrail_checkpoint",), "guardrail.checkpoint",
         "Guardrail models folder; default: the nvidia/Cosmos-Guardrail1 of the --checkpoint_dir's upstream tree, else "
         "checkpoints/nvidia/Cosmos-Guardrail1.", "safety"),
    Flag(("--guardrail_blocklist",), "guardrail.blocklist", "Extra word or phrase to block (repeatable).", "safety",
         append=True, metavar="TERM"),
    _switch("--no_face_pixelation", "guardrail.pixelate_faces", False, "Write faces as generated.", "safety"),
    _switch("--disable_prompt_refiner", "prompt_refiner.enabled", False, "Use the prompt as given.", "safety"),
    Flag(("--refiner_checkpoint",), "prompt_refiner.checkpoint",
         "Cosmos-Reason1 checkpoint of the prompt refiner; default: the nvidia/Cosmos-Reason1-7B of the "
         "--checkpoint_dir's upstream tree, else checkpoints/nvidia/Cosmos-Reason1-7B.", "safety"),
    Flag(("--refiner_max_new_tokens",), "prompt_refiner.max_new_tokens",
         "Upper bound on the refined prompt's length in tokens.", "safety", type=int),
    Flag(("--offload_prompt_refiner",), "prompt_refiner.offload_to_cpu",
         "Move the refiner to CPU memory after use so the DiT has the GPU.", "safety", type=None, negatable=True),
    # speed
    Flag(("--attention_backend",), "performance.attention_backend",
         "Attention kernel of the DiT (auto: FlashAttention-4 on Hopper/Blackwell GPUs where installed, else "
         "PyTorch's SDPA choice).", "speed", choices=typing.get_args(AttentionBackend)),
    _switch("--no_split_batch", "performance.split_batch", False,
            "Run both guidance passes as one batch-2 forward (more memory, no faster on an H100).", "speed"),
    Flag(("--compile",), "performance.compile",
         "torch.compile the transformer blocks on a GPU (exact; the first forward at a size compiles).", "speed",
         type=None, negatable=True),
    Flag(("--fast_mode",), "performance.fast_mode",
         "Opt-in approximation: step_cache reuses the DiT output on some middle steps.", "speed",
         choices=("off", "step_cache")),
    Flag(("--step_cache_interval",), "performance.step_cache_interval",
         "With --fast_mode step_cache: run the DiT on every N-th middle step.", "speed", type=int),
    # parallelism
    Flag(("--num_gpus",), "parallelism.gpus", "GPUs (processes) in all; must equal torchrun's world size.",
         "parallelism", type=int),
    Flag(("--context_parallel_size",), "parallelism.context_parallel_size",
         "Ranks that split one pass's latent sequence (Ulysses); default: chosen from the GPUs, heads and videos.",
         "parallelism", type=int, choices=CONTEXT_PARALLEL_SIZES),
    Flag(("--cfg_parallel",), "parallelism.cfg_parallel",
         "Run the conditional and unconditional passes on two halves of a group; default: on when it fits.",
         "parallelism", type=None, negatable=True),
    # best-of-N and its critic
    Flag(("--num_generations",), "best_of_n.num_generations", "Videos to generate from the input.", "best-of-N",
         type=int, programs=BESTOFN),
    Flag(("--num_critic_trials",), "best_of_n.critic.num_trials", "Times the critic looks at each video.",
         "best-of-N", type=int, programs=BESTOFN),
    _switch("--skip_generation", "best_of_n.skip_generation", True,
            "Score existing MP4s (in --videos_uri, else in --save_path) instead of generating.", "best-of-N",
            programs=BESTOFN),
    Flag(("--videos_uri",), "best_of_n.videos_uri",
         "With --skip_generation: the folder or s3:// prefix of the videos to score; results go to --save_path.",
         "best-of-N", programs=BESTOFN),
    Flag(("--critic_checkpoint",), "best_of_n.critic.checkpoint",
         "Cosmos-Reason1 checkpoint of the critic; default: the refiner's (loaded once when both are the same).",
         "critic", programs=BESTOFN),
    Flag(("--critic_fps",), "best_of_n.critic.fps", "Frame rate the critic watches the video at.", "critic",
         type=float, programs=BESTOFN),
    Flag(("--critic_max_pixels",), "best_of_n.critic.max_pixels",
         "Pixels per frame the critic sees at most (0: the checkpoint processor's bound).", "critic", type=int,
         programs=BESTOFN),
    Flag(("--critic_max_new_tokens",), "best_of_n.critic.max_new_tokens", "Length bound of each critic answer.",
         "critic", type=int, programs=BESTOFN),
    Flag(("--critic_seed",), "best_of_n.critic.seed", "Sampling seed of the first critic trial.", "critic",
         type=int, programs=BESTOFN),
    # test and debug knobs
    Flag(("--num_frames",), "debug.num_frames", "Frames per video (4k+1); the models are trained on 93.", "debug",
         type=int),
    Flag(("--height",), "debug.height", "Override the output height (multiple of 16).", "debug", type=int),
    Flag(("--width",), "debug.width", "Override the output width (multiple of 16).", "debug", type=int),
    Flag(("--device",), "debug.device", "Device; default: cuda when available.", "debug", choices=("cuda", "cpu")),
)

_GROUP_TITLES = {
    "model": "model", "input": "input", "output": "output", "generation": "generation",
    "safety": "guardrail and prompt refiner", "speed": "speed",
    "parallelism": "parallelism (launch with torchrun --nproc_per_node=N ... --num_gpus N)",
    "best-of-N": "best-of-N", "critic": "critic (Cosmos-Reason1)",
    "debug": "test and debug knobs (the models are trained on 93 frames at the sizes above)",
}
_DESCRIPTIONS = {
    "video2world": (
        "Generate a video that continues an image or a video clip, guided by a text prompt (NVIDIA "
        "Cosmos-Predict2 Video2World on diffusers). Paths may be local, pvc://<claim>/<path> or s3://<bucket>/<key> "
        "(S3 settings from the AWS_* environment variables)."
    ),
    "bestofn": (
        "Best-of-N rejection sampling: generate N videos from one input and prompt with N seeds, let the "
        "Cosmos-Reason1 critic look for anomalies in each K times, and rank them (score 000-100 in the file names, "
        "HTML reports, index.html, best.mp4, result.json). Re-running the same command resumes."
    ),
}


def flags_for(program: Program) -> list[Flag]:
    return [f for f in FLAGS if program in f.programs]


def model_default(path: str) -> Any:
    """The default the configuration's models give the key `path` (None where it depends on other keys)."""
    model: type[BaseModel] = RunConfig
    *groups, name = path.split(".")
    for group in groups:
        model = _model_of(model.model_fields[group].annotation)
    info = model.model_fields[name]
    return info.default_factory() if info.default_factory else info.default


def _model_of(annotation: Any) -> type[BaseModel]:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise TypeError(f"{annotation} is not a configuration group")


def build_parser(program: Program) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m v2w_runtime.{program}", description=_DESCRIPTIONS[program], epilog=EXIT_CODES,
        argument_default=argparse.SUPPRESS,  # a flag is in the namespace only when it was given
    )
    parser.add_argument("--config", metavar="FILE_OR_YAML",
                        help="Run configuration (a file, or the YAML itself, as the operator passes it); flags may "
                        "fill in what it leaves unset but not contradict it.")
    groups = {key: parser.add_argument_group(title) for key, title in _GROUP_TITLES.items()}
    for flag in flags_for(program):
        group = groups[flag.group]
        help_text = flag.help
        if flag.path != "output" and flag.const is None and not flag.append:
            default = model_default(flag.path)
            if default is not None and "default" not in help_text:
                help_text += f" (default: {default})"
        if flag.names[0] == "--save_path":
            help_text = (f"Output MP4 (single video; its folder is the output folder) (default: "
                         f"{DEFAULT_SAVE_PATH[program]})" if program == "video2world" else
                         f"Folder or s3:// prefix for the videos, critiques, reports, index.html and result.json "
                         f"(default: {DEFAULT_SAVE_PATH[program]})")
        elif flag.names[0] == "--output_uri":
            help_text = "s3://bucket/prefix to upload the MP4s, side files, progress.json and result.json to."
        if flag.negatable:
            group.add_argument(*flag.names, dest=flag.dest, action=argparse.BooleanOptionalAction, help=help_text)
        elif flag.const is not None:
            group.add_argument(*flag.names, dest=flag.dest, action="store_const", const=flag.const, help=help_text)
        elif flag.append:
            group.add_argument(*flag.names, dest=flag.dest, action="append", type=flag.type, metavar=flag.metavar,
                               help=help_text)
        else:
            group.add_argument(*flag.names, dest=flag.dest, type=flag.type, choices=flag.choices,
                               metavar=flag.metavar, help=help_text)
    return parser


@dataclass
class _Given:
    """The flags of one command line as configuration keys, and which flag set each key."""

    values: dict[str, Any] = field(default_factory=dict)  # dotted snake_case path -> value
    flag_of: dict[str, str] = field(default_factory=dict)  # dotted path -> the flag as written

    def set(self, path: str, value: Any, flag: str) -> None:
        self.values[path] = value
        self.flag_of[path] = flag


def parse(program: Program, argv: list[str] | None) -> RunConfig:
    """The run configuration of one command line (UsageError or RunConfigError when it cannot be made)."""
    args = vars(build_parser(program).parse_args(argv))
    config_source = args.pop("config", None)
    given = _Given()
    by_dest = {f.dest: f for f in flags_for(program)}
    for dest, value in args.items():
        flag = by_dest[dest]
        if flag.path != "output":
            given.set(flag.path, value, _as_written(flag, value))
    output_flags = {k: args[k] for k in ("save_path", "output_uri") if k in args}
    if config_source is None:
        return _from_flags(program, given, output_flags)
    return _from_file(program, config_source, given, output_flags)


def _from_flags(program: Program, given: _Given, output_flags: dict[str, str]) -> RunConfig:
    values = dict(given.values)
    generating = not (program == "bestofn" and values.get("best_of_n.skip_generation"))
    if program == "bestofn":
        values.setdefault("best_of_n.num_generations", model_default("best_of_n.num_generations"))
        if "batch_uri" in values:
            raise UsageError("--batch_input_json is not supported by best-of-N: give --input_path and --prompt")
    if generating and "batch_uri" not in values:
        if not values.get("input.prompt"):
            raise UsageError("--prompt is required" + (" (or give --batch_input_json)" if program == "video2world"
                                                       else " (or give --skip_generation)"))
        values.setdefault("input.uri", DEFAULT_INPUT)
    elif not generating:
        # Scoring only: nothing is conditioned on, so the input and prompt are not part of the run.
        values.pop("input.uri", None)
        values.pop("input.prompt", None)
    for path, value in output_keys(program, output_flags, batch_uri=values.get("batch_uri")).items():
        given.set(path, value, " ".join(f"--{k} {v}" for k, v in output_flags.items()) or "--save_path")
        values[path] = value
    return _validate(_tree(values), "the command line", given)


def _from_file(program: Program, source: str, given: _Given, output_flags: dict[str, str]) -> RunConfig:
    text, name = _read_config(source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunConfigError(f"{name}: not valid YAML or JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunConfigError(f"{name}: expected a mapping of settings, found {type(data).__name__}")
    data = _camel_keys(data)
    if program == "video2world" and "bestOfN" in data:
        raise UsageError(f"{name} is a best-of-N configuration (it sets bestOfN): run python -m v2w_runtime.bestofn")
    if program == "bestofn":
        data.setdefault("bestOfN", {})
    from_file = RunConfig.parse(data, name)
    if output_flags:
        batch_uri = given.values.get("batch_uri") or from_file.batch_uri
        for path, value in output_keys(program, output_flags, from_file, batch_uri).items():
            given.set(path, value, " ".join(f"--{k} {v}" for k, v in output_flags.items()))
    config = _validate(_merge(data, _tree(given.values)), f"{name} with the command line's flags", given)
    for path, flag in given.flag_of.items():
        if _has_key(data, path) and _value_at(config, path) != _value_at(from_file, path):
            shown = yaml.safe_dump(_value_at(from_file, path), default_flow_style=True, width=10**6).strip()
            raise UsageError(f"{flag} contradicts {_camel_path(path)}: {shown.removesuffix('...').strip()} in {name}")
    return config


def _validate(tree: dict[str, Any], source: str, given: _Given) -> RunConfig:
    """The configuration, or a RunConfigError that names the flag (where a flag set the key) and what is wrong."""
    try:
        return RunConfig.model_validate(tree, context={LOCAL_PATHS: True})
    except ValidationError as exc:
        flags = {_camel_path(path): flag.split(" ")[0] for path, flag in given.flag_of.items()}
        message = describe_errors(exc)
        for key in sorted(flags, key=len, reverse=True):
            message = message.replace(f"{key}:", f"{flags[key]} ({key}):")
        raise RunConfigError(f"{source}: {message}") from None


def output_keys(program: Program, flags: dict[str, str], base: RunConfig | None = None,
                batch_uri: str | None = None) -> dict[str, Any]:
    """`--save_path` / `--output_uri` as the configuration's output keys, the way the seed reads them.

    video2world: --save_path is the single video's file; its folder is the output folder, unless
    --output_uri names an S3 prefix to upload to. The seed's commands share one folder (`output/`), so a run
    started this way names its progress and result files after itself (`output.recordName`): the save
    path's stem (`video2world_2b.result.json`), or the batch file's (`batch_example.result.json`).
    best-of-N: either names the folder or prefix, which is the run's own (result.json in it).
    """
    save = flags.get("save_path")
    uri = flags.get("output_uri")
    if program == "bestofn":
        if save is not None and uri is not None and save != DEFAULT_SAVE_PATH["bestofn"]:
            raise UsageError("give either --save_path or --output_uri, not both")
        return {"output.uri": uri or save or (base.output.uri if base else DEFAULT_SAVE_PATH["bestofn"])}
    if save is None:
        save = DEFAULT_SAVE_PATH["video2world"] if base is None or base.output.video_name is None else None
    out: dict[str, Any] = {}
    if save is not None:
        if is_s3(save):
            if uri:
                raise UsageError("give either an s3:// --save_path or --output_uri, not both")
            uri, _, name = save.rpartition("/")
        else:
            name = PurePosixPath(save.replace("\\", "/")).name
            uri = uri or str(Path(save).parent)
        if not name:
            raise UsageError(f"--save_path {save!r} names no file")
        out["output.video_name"] = name if name.lower().endswith(".mp4") else name + ".mp4"
    if uri:
        out["output.uri"] = uri
    record = _record_name(batch_uri, out.get("output.video_name") or (base.output.video_name if base else None))
    if record:
        out["output.record_name"] = record
    return out


def _record_name(batch_uri: str | None, video_name: str | None) -> str | None:
    """The stem a hand-started video2world run names its progress and result files with."""
    if batch_uri:
        name = PurePosixPath(batch_uri.split("?", 1)[0].replace("\\", "/")).name
        return name[: -len(".json")] if name.lower().endswith(".json") and len(name) > 5 else name or None
    if video_name:
        return video_name[: -len(".mp4")] if video_name.lower().endswith(".mp4") else video_name
    return None


def _read_config(source: str) -> tuple[str, str]:
    """The configuration text and a name for messages: `source` is a file, or the YAML itself."""
    if "\n" not in source and not source.lstrip().startswith("{"):
        path = Path(source)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise RunConfigError(f"--config {source}: cannot read the file ({exc.strerror or exc})") from None
    return source, "the --config text"


def _tree(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted snake_case keys as the nested camelCase mapping the configuration reads."""
    tree: dict[str, Any] = {}
    for path, value in values.items():
        node = tree
        *groups, name = [to_camel(p) for p in path.split(".")]
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = value
    return tree


def _camel_keys(data: Any) -> Any:
    if isinstance(data, dict):
        return {to_camel(k) if isinstance(k, str) else k: _camel_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_camel_keys(v) for v in data]
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _has_key(data: dict[str, Any], path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or to_camel(part) not in node:
            return False
        node = node[to_camel(part)]
    return True


def _value_at(config: RunConfig, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = getattr(node, part, None)
    return node


def _camel_path(path: str) -> str:
    return ".".join(to_camel(p) for p in path.split("."))


def _as_written(flag: Flag, value: Any) -> str:
    """The flag as the user wrote it, for messages."""
    if flag.negatable:
        return flag.names[0] if value else "--no-" + flag.names[0].lstrip("-")
    if flag.const is not None:
        return flag.names[0]
    values = value if isinstance(value, list) else [value]
    return " ".join(f"{flag.names[0]} {v!r}" if isinstance(v, str) and (" " in v or not v) else f"{flag.names[0]} {v}"
                    for v in values)


__all__ = ["DEFAULT_SAVE_PATH", "FLAGS", "Flag", "UsageError", "build_parser", "model_default", "output_keys", "parse"]
