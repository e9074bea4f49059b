"""`python -m v2w_runtime.video2world`: Cosmos-Predict2 Video2World generation, the seed's CLI.

Single video:  --input_path IMG_OR_VIDEO --prompt TEXT [--save_path output/x.mp4]
Batch:         --batch_input_json FILE_OR_S3_URI   (a list of {input_video, prompt, output_video})
Under torchrun the ranks share the work (see --num_gpus). With --output_uri s3://bucket/prefix every
file is uploaded there, with progress.json kept current and result.json written last.

Exit codes: 0 every video succeeded or was blocked by the guardrail; 1 some videos failed (see the
summary and result.json); 2 bad arguments, input or checkpoint, nothing generated; 3 the guardrail is
enabled but cannot run, nothing generated (fail closed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from v2w_operator.api import DEFAULT_NEGATIVE_PROMPT
from v2w_operator.api.manifest import Stage, VideoResult, utcnow

from . import perf, storage
from .batch import BatchError, load_batch
from .checkpoints import CheckpointError, cache_dir, default_checkpoint, resolve_checkpoint
from .conditioning import ConditioningError, RESOLUTIONS
from .interfaces import Guardrail, GuardrailError, PromptRefiner
from .outputs import OutputPathError, OutputTarget, prompt_text, resolve_output, side_file_names
from .outputs import write_json, write_mp4, write_text

log = logging.getLogger("v2w_runtime")

EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT, EXIT_GUARDRAIL = 0, 1, 2, 3
DEFAULT_GUARDRAIL_CHECKPOINT = "checkpoints/nvidia/Cosmos-Guardrail1"
DEFAULT_REFINER_CHECKPOINT = "checkpoints/nvidia/Cosmos-Reason1-7B"


class UsageError(ValueError):
    """Arguments that cannot work together; nothing was loaded."""


class RefinerError(RuntimeError):
    """The prompt refiner is enabled but cannot be loaded."""


# ------------------------------------------------------------------------------------------ parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something: not for off switches, unset values or long texts."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        text = action.help or ""
        if "default" in text.lower() or default in (None, False, "", []) or (isinstance(default, str) and len(default) > 60):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from .parallel import add_parallel_arguments

    p = argparse.ArgumentParser(
        prog="python -m v2w_runtime.video2world",
        description=(
            "Generate a video that continues an image or a video clip, guided by a text prompt "
            "(NVIDIA Cosmos-Predict2 Video2World on diffusers). Paths may be local, pvc://<claim>/<path> "
            "or s3://<bucket>/<key> (S3 settings from the AWS_* environment variables)."
        ),
        formatter_class=_HelpFormatter,
        epilog=(
            "exit codes: 0 all videos succeeded or were blocked by the guardrail; 1 some failed; "
            "2 bad arguments, input or checkpoint; 3 guardrail enabled but unable to run (fail closed)"
        ),
    )
    model = p.add_argument_group("model")
    model.add_argument("--model_size", choices=["2B", "14B"], default="2B", help="Model size.")
    model.add_argument(
        "--checkpoint_dir",
        default=None,
        help="Diffusers-format checkpoint folder (local, pvc:// or s3:// prefix, downloaded once into "
        "$V2W_CACHE_DIR). Default: checkpoints/nvidia/Cosmos-Predict2-<size>-Video2World.",
    )
    model.add_argument("--dit_path", default=None, help="Post-trained DiT weights (safetensors) replacing the transformer's.")
    model.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default=None,
                       help="Compute dtype (default: bfloat16 on GPU, float32 on CPU).")
    model.add_argument("--device", choices=["cuda", "cpu"], default=None, help="Device (default: cuda when available).")

    inputs = p.add_argument_group("input")
    inputs.add_argument("--prompt", default="", help="Text prompt describing the video to generate (required "
                        "without --batch_input_json).")
    inputs.add_argument("--negative_prompt", default=DEFAULT_NEGATIVE_PROMPT,
                        help="What the video should avoid (used when guidance > 1). Default: a built-in "
                        "description of blurry, jittery, distorted, low-quality footage.")
    inputs.add_argument("--input_path", default="assets/video2world/input0.jpg",
                        help="Conditioning image or video.")
    inputs.add_argument("--num_conditional_frames", type=int, choices=[1, 5], default=1,
                        help="1: an image, or a video's last frame; 5: a video's last 5 frames.")
    inputs.add_argument("--batch_input_json", default=None,
                        help="JSON list of {input_video, prompt, output_video} (optional negative_prompt, "
                        "seed); replaces --input_path/--prompt/--save_path.")

    out = p.add_argument_group("output")
    out.add_argument("--save_path", default="output/generated_video.mp4",
                     help="Output MP4 (single mode). Its folder is the output folder: batch outputs must "
                     "stay inside it.")
    out.add_argument("--output_uri", "--output-uri", dest="output_uri", default=None,
                     help="s3://bucket/prefix to upload the MP4s, side files, progress.json and result.json to.")

    gen = p.add_argument_group("generation")
    gen.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="720",
                     help="Output resolution class: 720 (1280x704 at 16:9) or 480 (832x480).")
    gen.add_argument("--aspect_ratio", choices=list(RESOLUTIONS["720"]), default="16:9", help="Output aspect ratio.")
    gen.add_argument("--fps", type=int, default=16, help="Frames per second of the output video.")
    gen.add_argument("--num_steps", type=int, default=35, help="Sampling steps.")
    gen.add_argument("--guidance", type=float, default=7.0, help="Classifier-free guidance scale (1 or less: off).")
    gen.add_argument("--seed", type=int, default=0,
                     help="Random seed; batch entry i uses seed + i unless the entry sets its own.")

    safety = p.add_argument_group("guardrail and prompt refiner")
    safety.add_argument("--disable_guardrail", action="store_true", help="Do not check prompts and videos.")
    safety.add_argument("--guardrail_checkpoint", default=DEFAULT_GUARDRAIL_CHECKPOINT, help="Guardrail models folder.")
    safety.add_argument("--guardrail_blocklist", action="append", default=[], metavar="TERM",
                        help="Extra word or phrase to block (repeatable).")
    safety.add_argument("--no_face_pixelation", action="store_true", help="Write faces as generated.")
    safety.add_argument("--disable_prompt_refiner", action="store_true", help="Use the prompt as given.")
    safety.add_argument("--refiner_checkpoint", default=DEFAULT_REFINER_CHECKPOINT,
                        help="Cosmos-Reason1 checkpoint of the prompt refiner.")
    safety.add_argument("--refiner_max_new_tokens", type=int, default=512,
                        help="Upper bound on the refined prompt's length in tokens.")

    perf.add_arguments(p)

    par = p.add_argument_group("parallelism (launch with torchrun --nproc_per_node=N ... --num_gpus N)")
    add_parallel_arguments(par)

    debug = p.add_argument_group("test and debug knobs (the models are trained on 93 frames at the sizes above)")
    debug.add_argument("--num_frames", type=int, default=93, help="Frames per video (4k+1).")
    debug.add_argument("--height", type=int, default=None, help="Override the output height (multiple of 16).")
    debug.add_argument("--width", type=int, default=None, help="Override the output width (multiple of 16).")
    return p


# ------------------------------------------------------------------------------------- components


def build_guardrail(args: argparse.Namespace, device: str | None = None) -> Guardrail | None:
    """The guardrail, or None with --disable_guardrail. Any failure to build it is a GuardrailError."""
    if args.disable_guardrail:
        return None
    try:
        from .guardrail.checker import load_guardrail
    except ImportError as exc:
        raise GuardrailError(
            f"the guardrail is enabled but cannot be imported ({exc}); pass --disable_guardrail to run without it"
        ) from None
    try:
        return load_guardrail(
            args.guardrail_checkpoint,
            extra_blocklist=args.guardrail_blocklist,
            pixelate_faces=not args.no_face_pixelation,
            device=device or "cpu",
        )
    except GuardrailError:
        raise
    except Exception as exc:  # whatever stops it, nothing may be generated
        raise GuardrailError(f"cannot load the guardrail from {args.guardrail_checkpoint}: {type(exc).__name__}: {exc}") from None


def build_refiner(args: argparse.Namespace, device: str | None = None) -> PromptRefiner | None:
    """The prompt refiner, or None with --disable_prompt_refiner."""
    if args.disable_prompt_refiner:
        return None
    try:
        from .refiner import load_refiner

        return load_refiner(args.refiner_checkpoint, device=device, max_new_tokens=args.refiner_max_new_tokens)
    except Exception as exc:
        raise RefinerError(
            f"cannot load the prompt refiner from {args.refiner_checkpoint}: {type(exc).__name__}: {exc} "
            "(pass --disable_prompt_refiner to use prompts as given)"
        ) from None


# -------------------------------------------------------------------------------------------- plan


@dataclass
class Job:
    """One video to make."""

    index: int
    input: str
    prompt: str
    name: str  # output name under the output folder/prefix
    seed: int
    negative_prompt: str | None = None
    error: str | None = None  # known bad before anything loads
    frames: "np.ndarray | None" = None  # conditioning frames read ahead (single mode)


def output_target(args: argparse.Namespace) -> tuple[OutputTarget, Path, str]:
    """(where files go, the logical output folder batch names resolve against, the single-mode name)."""
    save = str(args.save_path)
    output_uri = args.output_uri
    if storage.is_s3(save):
        if output_uri:
            raise UsageError("give either an s3:// --save_path or --output_uri, not both")
        output_uri, _, name = save.rpartition("/")
        logical_root = Path("output")
    else:
        local = storage.local_path(save)
        name = local.name
        logical_root = local.parent
    if not name:
        raise UsageError(f"--save_path {save!r} names no file")
    if not name.lower().endswith(".mp4"):
        name += ".mp4"
    if output_uri:
        storage.parse_s3(output_uri)
        return OutputTarget.staged(output_uri, "v2w-out-"), logical_root, name
    return OutputTarget(logical_root), logical_root, name


def plan_jobs(args: argparse.Namespace, logical_root: Path, single_name: str) -> list[Job]:
    if not args.batch_input_json:
        if not args.prompt:
            raise UsageError("--prompt is required (or give --batch_input_json)")
        return [Job(0, args.input_path, args.prompt, single_name, args.seed, args.negative_prompt)]
    items = load_batch(args.batch_input_json, cache_dir() / "inputs")
    jobs, seen = [], set()
    for i, item in enumerate(items):
        seed = item.seed if item.seed is not None else args.seed + i
        job = Job(i, item.input_video, item.prompt, f"entry-{i}.mp4", seed, item.negative_prompt or args.negative_prompt)
        try:
            job.name = resolve_output(item.output_video, logical_root)
        except OutputPathError as exc:
            job.error = f"entry {i}: {exc}"
        if job.error is None and job.name in seen:
            job.error = f"entry {i}: output {item.output_video!r} is also the output of an earlier entry"
        seen.add(job.name)
        jobs.append(job)
    return jobs


def check_usage(args: argparse.Namespace) -> None:
    if args.num_steps < 1:
        raise UsageError(f"--num_steps must be at least 1, not {args.num_steps}")
    if args.fps < 1:
        raise UsageError(f"--fps must be at least 1, not {args.fps}")
    if args.step_cache_interval < 1:
        raise UsageError(f"--step_cache_interval must be at least 1, not {args.step_cache_interval}")
    if args.num_frames < 2 or (args.num_frames - 1) % 4:
        raise UsageError(f"--num_frames must be 4k+1 and more than the conditioning frames (e.g. 93), not {args.num_frames}")
    if args.num_frames <= args.num_conditional_frames:
        raise UsageError(f"--num_frames {args.num_frames} leaves nothing to generate after {args.num_conditional_frames} conditioning frames")
    for flag in ("height", "width"):
        value = getattr(args, flag)
        if value is not None and (value <= 0 or value % 16):
            raise UsageError(f"--{flag} must be a positive multiple of 16, not {value}")


def versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("video2world-operator")
    except PackageNotFoundError:
        ours = "unknown"
    out = {
        "v2w_runtime": ours,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if os.environ.get("V2W_GIT_COMMIT"):
        out["git_commit"] = os.environ["V2W_GIT_COMMIT"]
    return out


def settings_record(args: argparse.Namespace) -> dict:
    """Every setting of the run (there are no secrets among the flags)."""
    return {k: v for k, v in sorted(vars(args).items())}


# --------------------------------------------------------------------------------------------- run


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("V2W_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    started = utcnow()
    target: OutputTarget | None = None
    try:
        try:
            check_usage(args)
            target, logical_root, single_name = output_target(args)
            if target.uri:
                storage.check_s3_access(target.uri)
            jobs = plan_jobs(args, logical_root, single_name)
            settings = generation_settings(args)
            if not args.batch_input_json:
                jobs[0].frames = read_input(jobs[0].input, settings)  # a bad input fails before any weight loads
            return run(args, settings, jobs, target, started)
        except (UsageError, BatchError, CheckpointError, ConditioningError, storage.StorageError, OutputPathError,
                RefinerError, ValueError) as exc:
            return fail(target, started, args, f"{exc}", EXIT_BAD_INPUT)
        except GuardrailError as exc:
            return fail(target, started, args, f"guardrail error, nothing generated: {exc}", EXIT_GUARDRAIL)
    finally:
        # Every rank stages in a folder of its own; on a pod's disk it outlives a failed run otherwise.
        if target is not None:
            target.discard_staging()


def fail(target: OutputTarget | None, started, args, message: str, code: int) -> int:
    """Report a run that could not start or had to stop: stderr, and result.json where it can go."""
    print(f"error: {message}", file=sys.stderr)
    if target is not None and _is_global_leader():
        from .manifests import build_result, write_result

        try:
            write_result(target, build_result([], started, settings_record(args), versions(), message, failed=True))
        except (OSError, storage.StorageError) as exc:
            print(f"error: could not write result.json: {exc}", file=sys.stderr)
    return code


def _is_global_leader() -> bool:
    return os.environ.get("RANK", "0") == "0"


def generation_settings(args: argparse.Namespace):
    from .generator import GenerationSettings

    return GenerationSettings(
        resolution=args.resolution,
        aspect_ratio=args.aspect_ratio,
        num_conditional_frames=args.num_conditional_frames,
        num_frames=args.num_frames,
        num_steps=args.num_steps,
        guidance=args.guidance,
        fps=args.fps,
        negative_prompt=args.negative_prompt,
        height=args.height,
        width=args.width,
    )


def read_input(uri: str, settings) -> np.ndarray:
    """The conditioning frames of `uri` at the output size; ConditioningError/StorageError name it."""
    from .conditioning import load_conditioning

    height, width = settings.size()
    path = storage.fetch_file(uri, cache_dir() / "inputs")
    return load_conditioning(path, settings.num_conditional_frames, height, width, name=uri)


VIDEOS_MADE = "videos_made"


def follow_other_groups(ctx, reporter, already: int, remaining: int, every_s: float = 2.0) -> None:
    """Rank 0 has made its group's videos: until every group has made theirs, keep progress.json
    counting them (the groups' leaders add to a world counter; reading it waits for no one)."""
    while True:
        made = ctx.add(VIDEOS_MADE, 0)
        if made is None or made >= remaining:
            return
        if already + made != reporter.state.videos_done:
            reporter.video_done(already + made)
        time.sleep(every_s)


def run(args: argparse.Namespace, settings, jobs: list[Job], target: OutputTarget, started) -> int:
    from .generator import Video2WorldGenerator
    from .manifests import ProgressReporter, build_result, write_result
    from .parallel import init_parallel
    from .resume import finished_entries

    import torch

    checkpoint = args.checkpoint_dir or default_checkpoint(args.model_size)
    # 1. The checkpoint (downloaded once) and the rank layout, before any weight is read
    local_ckpt = resolve_checkpoint(checkpoint)
    heads = json.loads((local_ckpt / "transformer" / "config.json").read_text())["num_attention_heads"]
    ctx = init_parallel(
        args.num_gpus, num_heads=heads, guidance=args.guidance > 1.0, num_videos=len(jobs),
        context_parallel_size=args.context_parallel_size, cfg_parallel=args.cfg_parallel, device=args.device,
    )
    layout = ctx.layout
    # Entries an earlier attempt finished (a restarted pod) are kept, not made again; rank 0 decides for all.
    done = finished_entries(target, jobs, settings_record(args)) if layout.is_global_leader else None
    done = ctx.broadcast(done)
    mine = layout.shard([job for job in jobs if job.index not in done])
    reporter = ProgressReporter(target, len(jobs), args.num_steps, enabled=layout.is_global_leader)
    results: list[tuple[int, dict]] = []
    if done:
        reporter.state.videos_done = len(done)
        if layout.is_global_leader:
            results += [(index, video.model_dump(mode="json")) for index, video in done.items()]

    # 2. Guardrail and refiner (group leaders only; GuardrailError propagates: fail closed)
    reporter.stage(Stage.LOADING, message="loading models")
    device = str(ctx.device)
    guardrail = build_guardrail(args, device) if layout.is_group_leader else None
    refiner = build_refiner(args, device) if layout.is_group_leader else None
    dtype = getattr(torch, args.dtype) if args.dtype else None
    generator = Video2WorldGenerator.from_checkpoint(
        str(local_ckpt), settings, dit_path=args.dit_path, dtype=dtype, device=ctx.device,
        guardrail=guardrail, refiner=refiner, ctx=ctx,
    )
    speed = perf.options_from_args(args)  # recorded as asked: the same run record on any layout
    applied = speed
    if layout.group_size > 1:  # the parallel wrapper splits the batch itself and has no blocks to compile
        applied = speed.model_copy(update={"split_batch": False, "compile": False})
    perf.accelerate(generator.pipeline, applied)
    generator.model_info.update(checkpoint=checkpoint, model_size=args.model_size, dit_path=args.dit_path)
    generator.model_info["speed"] = speed.model_dump()
    run_versions = versions()

    # 3. The videos of this rank's group; every group leader counts its own in the world's counter
    for job in mine:
        result = make_video(generator, job, target, reporter, args, run_versions)
        made = None
        if layout.is_group_leader:
            results.append((job.index, result.model_dump(mode="json")))
            made = ctx.add(VIDEOS_MADE)
        reporter.video_done(None if made is None else len(done) + made)
    if layout.is_global_leader and layout.num_groups > 1:
        follow_other_groups(ctx, reporter, already=len(done), remaining=len(jobs) - len(done))

    # 4. Every group's results to rank 0, which writes result.json last
    gathered = ctx.gather_to_leader(results if layout.is_group_leader else [])
    code = EXIT_OK
    if layout.is_global_leader:
        merged = sorted((item for part in gathered for item in part), key=lambda pair: pair[0])
        videos = [VideoResult.model_validate(data) for _, data in merged]
        result = build_result(videos, started, settings_record(args), run_versions)
        reporter.state.videos_done = len(videos)  # every group's, not only this one's
        reporter.stage(Stage.DONE if result.succeeded else Stage.FAILED, message=result.message)
        uri = write_result(target, result)
        print_summary(videos, uri)
        code = EXIT_OK if result.succeeded else EXIT_SOME_FAILED
    ctx.barrier()
    ctx.close()
    return code


def make_video(generator, job: Job, target: OutputTarget, reporter, args, run_versions: dict) -> VideoResult:
    """Generate, check and write one video; a failure is recorded, a GuardrailError propagates."""
    layout = generator.layout
    files = side_file_names(job.name)
    video = VideoResult(name=PurePosixPath(job.name).name, status="failed", input=job.input, seed=job.seed, prompt=job.prompt)
    if job.error:
        video.reason = job.error
        log.error("%s", job.error)
        return video
    reporter.stage(Stage.ENCODING, current=video.name, message=f"input {job.input}")
    try:
        outcome = generator.generate(
            job.frames if job.frames is not None else job.input, job.prompt, job.seed, negative_prompt=job.negative_prompt,
            on_stage=lambda stage: reporter.stage(stage, current=video.name),
            on_step=reporter.step,
        )
    except GuardrailError:
        raise
    except (ConditioningError, storage.StorageError, ValueError, OSError) as exc:
        video.reason = f"input {job.input}: {exc}" if job.input not in str(exc) else str(exc)
        log.error("video %s failed: %s", job.name, video.reason)
        return video
    video.refined_prompt = outcome.refined_prompt
    video.timings = {k: round(v, 3) for k, v in outcome.timings.items()}
    video.warnings = outcome.warnings
    if not layout.is_group_leader:
        video.status = outcome.status
        return video

    # Side files: always the record (and prompts); the MP4 only when the video may be shown.
    reporter.stage(Stage.WRITING, current=video.name)
    start = time.perf_counter()
    record = {
        "video": job.name,
        "input": job.input,
        **outcome.record(),
        "settings": settings_record(args),
        "model": generator.model_info,
        "versions": run_versions,
    }
    try:
        mp4 = None
        if outcome.status == "succeeded":
            mp4 = write_mp4(outcome.frames, target.path(job.name), args.fps)
        write_text(target.path(files["prompt"]), prompt_text(job.prompt, outcome.refined_prompt, outcome.negative_prompt))
        record["timings_s"]["writing"] = round(time.perf_counter() - start, 3)
        write_json(target.path(files["record"]), record)
        if target.uri:
            reporter.stage(Stage.UPLOADING, current=video.name)
        video.files = {role: target.uri_of(name) for role, name in files.items()}
        for name in files.values():
            target.publish(target.path(name), "text/plain" if name.endswith(".txt") else "application/json")
        if mp4 is not None:
            video.uri = target.publish(mp4, "video/mp4")  # last: its presence means the video is complete
    except (OSError, storage.StorageError, ValueError) as exc:
        video.status, video.reason = "failed", f"writing {job.name}: {exc}"
        log.error("%s", video.reason)
        return video
    video.status, video.reason = outcome.status, outcome.reason
    video.timings["writing"] = round(time.perf_counter() - start, 3)
    log.info("video %s: %s%s", job.name, video.status, f" ({video.reason})" if video.reason else "")
    return video


def print_summary(videos: list[VideoResult], result_uri: str) -> None:
    counts: dict[str, int] = {}
    for v in videos:
        counts[v.status] = counts.get(v.status, 0) + 1
    print(f"summary: {len(videos)} video(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for v in videos:
        where = v.uri or v.reason or ""
        print(f"  [{v.status}] {v.name}: {where}")
    print(f"result: {result_uri}")


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
