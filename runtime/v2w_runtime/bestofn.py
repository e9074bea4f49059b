"""Best-of-N rejection sampling: N videos with N seeds, a Cosmos-Reason1 critic, ranked reports.

    python -m v2w_runtime.bestofn --input_path in.jpg --prompt "..." --num_generations 5 \\
        --num_critic_trials 3 --save_path s3://bucket/runs/bus

Files under --save_path (a folder or an s3:// prefix):
    gen00_seed0_score067.mp4 / .json (critique) / .html (report)   one set per scored video
    gen00_seed0.txt, gen00_seed0.json                              prompts and run record per generation
    best.mp4, index.html, result.json, progress.json, bestofn.json (what this folder was made for)

The run resumes: a generation whose video (or critique) is already there is not made again, and a
video whose critique JSON is there is not scored again. `--skip_generation` scores the MP4s already
in the folder (copying each to its scored name; the originals stay).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from v2w_operator.api.manifest import ResultManifest, Stage, VideoResult, utcnow

from . import storage
from .interfaces import GuardrailError
from .critic import SCORED, Critic, Critique, count_trials, score
from .outputs import OutputTarget, prompt_text, write_json, write_mp4, write_text
from .reports import data_uri, rank, render_index, render_report

log = logging.getLogger("v2w_runtime.bestofn")

BEST_VIDEO = "best.mp4"
INDEX_FILE = "index.html"
JOB_FILE = "bestofn.json"
DEFAULT_SAVE_PATH = "output/best-of-n"
_RESERVED = {BEST_VIDEO}


class BestOfNError(ValueError):
    """The best-of-N run cannot start or go on; the message names the flag or file."""


class ForeignFolderError(BestOfNError):
    """The save path holds another run's videos; its result.json must stay as it is."""


def generation_stem(index: int, seed: int) -> str:
    return f"gen{index:02d}_seed{seed}"


class JobRecord(BaseModel):
    """bestofn.json: what the folder's generations were made from, to refuse mixing two runs."""

    model_config = ConfigDict(extra="ignore")

    kind: str = "BestOfN"
    input: str | None
    prompt: str | None
    fingerprint: str = Field(..., description="Hash of everything that shapes the generated videos.")


@dataclass
class Candidate:
    """A video to score: its base name, the file it is in now, and what is known about it."""

    base: str
    source: str  # file name under the save path
    owned: bool  # made by this program: the unscored file is removed once the scored copy exists
    seed: int | None = None
    prompt: str | None = None
    refined_prompt: str | None = None
    input: str | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- the folder


class Folder:
    """The save path as a flat set of files: a local folder, or an S3 prefix staged in a local folder."""

    def __init__(self, save_path: str, staging: Path | None = None) -> None:
        self.save_path = save_path
        if storage.is_s3(save_path):
            self.target = (OutputTarget(root=staging, uri=save_path.rstrip("/")) if staging
                           else OutputTarget.staged(save_path, "v2w-bestofn-"))
        else:
            root = storage.local_path(save_path)
            self.target = OutputTarget(root=root)
        self.target.root.mkdir(parents=True, exist_ok=True)

    @property
    def remote(self) -> bool:
        return self.target.uri is not None

    def names(self) -> set[str]:
        """The files at the top of the folder or prefix (a video being written locally ends in .partial)."""
        return {n for n in self.target.names() if "/" not in n and not n.endswith(".partial")}

    def path(self, name: str) -> Path:
        return self.target.path(name)

    def uri(self, name: str) -> str:
        return self.target.uri_of(name)

    def fetch(self, name: str) -> Path:
        """A local copy of the file `name` (downloaded from S3 when needed)."""
        local = self.path(name)
        if self.remote and not local.is_file():
            storage.s3_download_file(self.uri(name), local)
        if not local.is_file():
            raise BestOfNError(f"{self.uri(name)}: no such file")
        return local

    def publish(self, name: str, content_type: str | None = None) -> str:
        return self.target.publish(self.path(name), content_type)

    def write_text(self, name: str, text: str, content_type: str = "text/plain; charset=utf-8") -> str:
        write_text(self.path(name), text)
        return self.publish(name, content_type)

    def write_json(self, name: str, data) -> str:
        write_json(self.path(name), data)
        return self.publish(name, "application/json")

    def copy(self, source: str, dest: str) -> str:
        src = self.fetch(source)
        out = self.path(dest)
        partial = out.with_name(out.name + ".partial")
        shutil.copyfile(src, partial)
        partial.replace(out)
        return self.publish(dest, "video/mp4")

    def remove(self, name: str) -> None:
        if self.remote:
            loc = storage.parse_s3(self.uri(name))
            storage._s3_call(self.uri(name), "delete", storage.s3_client().delete_object, Bucket=loc.bucket,
                             Key=loc.key)
        self.path(name).unlink(missing_ok=True)

    def read_json(self, name: str) -> dict:
        return json.loads(self.fetch(name).read_text(encoding="utf-8"))


def scored_files(names: set[str]) -> dict[str, list[str]]:
    """Critique JSON files by the base name of their video."""
    found: dict[str, list[str]] = {}
    for name in sorted(names):
        if name.endswith(".json"):
            match = SCORED.match(name[: -len(".json")])
            if match:
                found.setdefault(match.group("base"), []).append(name)
    return found


def existing_videos(names: set[str]) -> list[str]:
    """MP4s in the folder that are inputs to score (not scored copies, not best.mp4)."""
    out = []
    for name in sorted(names):
        if name.lower().endswith(".mp4") and name not in _RESERVED and not SCORED.match(name[: -len(".mp4")]):
            out.append(name)
    return out


# ----------------------------------------------------------------------------------------- media


def read_video(path: Path) -> tuple[np.ndarray, float]:
    """All frames (T, H, W, 3) uint8 of a video file and its frame rate."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as exc:
        raise BestOfNError(f"{path.name}: not a readable video ({str(exc).strip()[-200:]})") from None
    if not frames:
        raise BestOfNError(f"{path.name}: the video has no frames")
    return np.stack(frames), float(meta.get("fps") or 16.0)


def poster(frames: np.ndarray, width: int = 320) -> str:
    """A JPEG still of the middle frame as a data: URI (for the index and the video poster)."""
    import io

    from PIL import Image

    frame = frames[len(frames) // 2]
    img = Image.fromarray(frame)
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return data_uri(buf.getvalue(), "image/jpeg")


# ---------------------------------------------------------------------------------------- scoring


def score_candidate(folder: Folder, critic: Critic, candidate: Candidate, names: set[str]) -> Critique:
    """Critique one video and write its scored MP4, report and critique JSON (the JSON last)."""
    local = folder.fetch(candidate.source)
    frames, fps = read_video(local)
    trials = critic.trials(frames, fps)
    counts = count_trials(trials)
    warnings = list(candidate.warnings)
    if counts.unparsable:
        warnings.append(f"{counts.unparsable} of {counts.total} critic answers could not be parsed")
    if counts.parsed == 0:
        warnings.append("no critic answer could be parsed: scored 0")
    critique = Critique(
        video=candidate.base,
        source_uri=folder.uri(candidate.source),
        seed=candidate.seed,
        prompt=candidate.prompt,
        refined_prompt=candidate.refined_prompt,
        trials=trials,
        counts=counts,
        score=score(counts),
        settings=critic.settings(),
        warnings=warnings,
        poster=poster(frames),
    )
    # Files of an earlier, interrupted attempt that came to another score.
    for name in names:
        match = SCORED.match(name.rsplit(".", 1)[0])
        if match and match.group("base") == candidate.base and name.rsplit(".", 1)[0] != critique.stem:
            folder.remove(name)
    folder.copy(candidate.source, critique.video_file)
    folder.write_text(critique.report_file, render_report(critique, local.read_bytes()), "text/html; charset=utf-8")
    folder.write_json(critique.critique_file, critique.model_dump(mode="json"))
    if candidate.owned:
        folder.remove(candidate.source)
    return critique


def load_critique(folder: Folder, name: str) -> Critique | None:
    try:
        return Critique.model_validate(folder.read_json(name))
    except (ValueError, BestOfNError, storage.StorageError) as exc:
        log.warning("ignoring unreadable critique %s: %s", name, exc)
        return None


def finish(folder: Folder, critiques: list[Critique], *, prompt: str | None) -> tuple[list[Critique], str | None]:
    """Rank, publish best.mp4 and index.html; returns the ranking and the index URI."""
    ranked = rank(critiques)
    best_bytes = None
    if ranked:
        folder.copy(ranked[0].video_file, BEST_VIDEO)
        best_bytes = folder.fetch(BEST_VIDEO).read_bytes()
    html = render_index(ranked, best_bytes, prompt=prompt, best_file=BEST_VIDEO if ranked else None)
    return ranked, folder.write_text(INDEX_FILE, html, "text/html; charset=utf-8")


def video_result(folder: Folder, critique: Critique, input: str | None, names: set[str]) -> VideoResult:
    files = {"critique": folder.uri(critique.critique_file), "report": folder.uri(critique.report_file)}
    for role, suffix in (("prompt", ".txt"), ("record", ".json")):
        if critique.video + suffix in names:
            files[role] = folder.uri(critique.video + suffix)
    return VideoResult(
        name=critique.video_file,
        status="succeeded",
        input=input,
        uri=folder.uri(critique.video_file),
        seed=critique.seed,
        prompt=critique.prompt,
        refined_prompt=critique.refined_prompt,
        files=files,
        score=critique.score,
        trials=critique.counts,
        report_uri=folder.uri(critique.report_file),
        warnings=critique.warnings,
    )


def fingerprint(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ the run


class BestOfNOptions(BaseModel):
    """What one best-of-N run does (the CLI's flags, minus the model loading ones)."""

    model_config = ConfigDict(extra="forbid")

    save_path: str = DEFAULT_SAVE_PATH
    input_path: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int = Field(0, ge=0)
    num_generations: int = Field(5, ge=1)
    num_critic_trials: int = Field(3, ge=1)
    skip_generation: bool = False
    fps: int = 16
    generation_settings: dict = Field(default_factory=dict, description="Everything else that shapes a video.")

    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.num_generations)]


def run(options: BestOfNOptions, *, make_generator=None, make_critic, ctx=None, settings_record: dict | None = None,
        versions: dict | None = None) -> ResultManifest | None:
    """Generate (unless skipped), score, rank. Returns the result on rank 0, None elsewhere.

    make_generator(): a loaded `Video2WorldGenerator` (called only by ranks that have videos to make).
    make_critic(): a `Critic` (called only by group leaders that have videos to score).
    """
    from .parallel import ParallelContext

    ctx = ctx if ctx is not None else ParallelContext.single()
    started = utcnow()
    if not options.skip_generation and (not options.input_path or options.prompt is None):
        raise BestOfNError("--input_path and --prompt are required unless --skip_generation is given")
    folder = Folder(options.save_path)
    try:
        return _run_in(folder, options, ctx, started, make_generator, make_critic, settings_record, versions)
    finally:
        folder.target.discard_staging()  # an S3 prefix's local copies, however the run ended


def _run_in(folder: Folder, options: BestOfNOptions, ctx, started, make_generator, make_critic,
            settings_record: dict | None, versions: dict | None) -> ResultManifest | None:
    from .manifests import ProgressReporter

    layout = ctx.layout
    leader = layout.is_global_leader
    stems = [generation_stem(i, s) for i, s in enumerate(options.seeds())]
    total = 0 if options.skip_generation else len(stems)
    progress = ProgressReporter(folder.target, videos_total=total,
                                total_steps=int(options.generation_settings.get("num_steps", 0)), enabled=leader)

    # 1. What is already there (rank 0 looks, everyone gets the same answer)
    names = ctx.broadcast(folder.names() if leader else None)
    critiques_by_base = scored_files(names)

    # 2. Generation of what is missing, spread over the GPU groups
    if not options.skip_generation:
        record = JobRecord(input=options.input_path, prompt=options.prompt,
                           fingerprint=fingerprint({"input": options.input_path, "prompt": options.prompt,
                                                    "negative_prompt": options.negative_prompt,
                                                    "settings": options.generation_settings}))
        if leader:
            if JOB_FILE in names:
                previous = JobRecord.model_validate(folder.read_json(JOB_FILE))
                if previous.fingerprint != record.fingerprint:
                    raise ForeignFolderError(
                        f"{options.save_path} holds the videos of another best-of-N run (different input, prompt "
                        f"or settings, see {JOB_FILE}): choose a new --save_path"
                    )
            else:
                folder.write_json(JOB_FILE, record.model_dump())
        done = {s for s in stems if f"{s}.mp4" in names or s in critiques_by_base or f"{s}.blocked.json" in names}
        pending = [(i, seed, s) for i, (seed, s) in enumerate(zip(options.seeds(), stems)) if s not in done]
        mine = layout.shard(pending)
        if leader and done:
            progress.state.videos_done = len(done)
            progress.stage(Stage.LOADING, message=f"{len(done)} of {len(stems)} videos already made")
        if mine:
            generator = make_generator()
            for index, seed, stem in mine:
                if leader:
                    progress.stage(Stage.SAMPLING, current=f"{stem}.mp4")
                gen = generator.generate(
                    options.input_path, options.prompt, seed, negative_prompt=options.negative_prompt,
                    on_step=progress.step if leader else None,
                )
                if layout.is_group_leader:
                    _write_generation(folder, stem, gen, options, group=layout.group_index)
                if leader:
                    progress.video_done()
            del generator
            _free_accelerator()
        ctx.barrier()
        names = ctx.broadcast(folder.names() if leader else None)
        critiques_by_base = scored_files(names)

    # 3. The critic on every video without a critique, spread over the group leaders
    if leader:
        progress.stage(Stage.CRITIC, message="scoring videos")
    candidates = _candidates(folder, options, stems, names, critiques_by_base) if leader else None
    candidates = ctx.broadcast(candidates)
    mine = layout.shard(candidates)
    if mine and layout.is_group_leader:
        critic = make_critic()
        for candidate in mine:
            log.info("scoring %s (%d trials)", candidate.source, critic.num_trials)
            score_candidate(folder, critic, candidate, names)
        del critic
        _free_accelerator()
    ctx.barrier()
    if not leader:
        return None

    # 4. Ranking, index, best.mp4 and result.json (rank 0)
    progress.stage(Stage.WRITING, message="ranking")
    names = folder.names()
    wanted = set(stems) if not options.skip_generation else None
    critiques = []
    for base, files in scored_files(names).items():
        if wanted is not None and base not in wanted:
            continue
        critique = load_critique(folder, files[-1])
        if critique is not None:
            critiques.append(critique)
    ranked, index_uri = finish(folder, critiques, prompt=options.prompt)
    videos = [video_result(folder, c, options.input_path, names) for c in ranked]
    if not options.skip_generation:
        for stem in stems:
            if f"{stem}.blocked.json" in names:
                blocked = folder.read_json(f"{stem}.blocked.json")
                videos.append(VideoResult(name=f"{stem}.mp4", status="blocked", input=options.input_path,
                                          seed=blocked.get("seed"), prompt=blocked.get("prompt"),
                                          reason=blocked.get("reason"),
                                          files={"record": folder.uri(f"{stem}.blocked.json")}))
    best = ranked[0] if ranked else None
    message = (f"best {best.video_file} (score {best.label}) of {len(ranked)} scored videos" if best
               else "no video could be scored")
    result = ResultManifest(
        mode="bestofn",
        succeeded=best is not None or all(v.status == "blocked" for v in videos) and bool(videos),
        message=message,
        started_at=started,
        videos=videos,
        best=best.video_file if best else None,
        index_uri=index_uri,
        settings=settings_record or options.model_dump(),
        versions=versions or {},
    )
    from .manifests import write_result

    progress.stage(Stage.DONE, message=message)
    write_result(folder.target, result)
    return result


def _write_generation(folder: Folder, stem: str, gen, options: BestOfNOptions, group: int = 0) -> None:
    record = gen.record() | {"input": options.input_path, "name": f"{stem}.mp4", "gpu_group": group}
    if gen.status != "succeeded" or gen.frames is None:
        folder.write_json(f"{stem}.blocked.json", record)
        return
    folder.write_text(f"{stem}.txt", prompt_text(gen.prompt, gen.refined_prompt, gen.negative_prompt))
    folder.write_json(f"{stem}.json", record)
    write_mp4(gen.frames, folder.path(f"{stem}.mp4"), options.fps)
    folder.publish(f"{stem}.mp4", "video/mp4")  # the video last: its presence means "generated"


def _candidates(folder: Folder, options: BestOfNOptions, stems: list[str], names: set[str],
                critiques_by_base: dict[str, list[str]]) -> list[Candidate]:
    if options.skip_generation:
        sources = existing_videos(names)
        if not sources and not critiques_by_base:
            raise BestOfNError(f"--skip_generation: no MP4 video in {options.save_path}")
        owned = False
    else:
        sources = [f"{s}.mp4" for s in stems if f"{s}.mp4" in names]
        owned = True
    out = []
    for source in sources:
        base = source[: -len(".mp4")]
        if base in critiques_by_base:
            continue
        candidate = Candidate(base=base, source=source, owned=owned)
        if f"{base}.json" in names:  # our run record, when the video came from this program
            try:
                record = folder.read_json(f"{base}.json")
                candidate.seed = record.get("seed") if isinstance(record.get("seed"), int) else None
                candidate.prompt = record.get("prompt")
                candidate.refined_prompt = record.get("refined_prompt")
                candidate.input = record.get("input")
                candidate.warnings = list(record.get("warnings") or [])
            except (ValueError, AttributeError):
                pass
        out.append(candidate)
    return out


def _free_accelerator() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------- CLI

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_GUARDRAIL = 0, 1, 2, 3


def build_parser():
    """Every flag of `python -m v2w_runtime.video2world`, plus the best-of-N and critic flags."""
    from .video2world import build_parser as video2world_parser

    p = video2world_parser()
    p.prog = "python -m v2w_runtime.bestofn"
    p.description = (
        "Best-of-N rejection sampling: generate N videos from one input and prompt with N seeds, let the "
        "Cosmos-Reason1 critic look for anomalies in each K times, and rank them (score 000-100 in the file "
        "names, HTML reports, index.html, best.mp4, result.json). Re-running the same command resumes."
    )
    for action in p._actions:
        if action.dest == "save_path":
            action.default = DEFAULT_SAVE_PATH
            action.help = "Folder or s3:// prefix for the videos, critiques, reports, index.html and result.json."
        elif action.dest == "seed":
            action.help = "Seed of the first generation; generation i uses seed + i."
        elif action.dest == "batch_input_json":
            action.help = "Not supported by best-of-N (one input and prompt per run)."
    bon = p.add_argument_group("best-of-N")
    bon.add_argument("--num_generations", type=int, default=5, help="Videos to generate from the input.")
    bon.add_argument("--num_critic_trials", type=int, default=3, help="Times the critic looks at each video.")
    bon.add_argument("--skip_generation", action="store_true",
                     help="Score the MP4s already in --save_path instead of generating.")
    critic = p.add_argument_group("critic (Cosmos-Reason1)")
    critic.add_argument("--critic_checkpoint", default=None,
                        help="Cosmos-Reason1 checkpoint of the critic (default: --refiner_checkpoint; loaded once "
                             "when both are the same).")
    critic.add_argument("--critic_fps", type=float, default=16.0, help="Frame rate the critic watches the video at.")
    # About 640x360 a frame: a 93-frame clip at 16 fps is then about 14k vision tokens for the 7B critic,
    # where the processor's own bound (about 600k pixels) would make about 36k.
    critic.add_argument("--critic_max_pixels", type=int, default=640 * 360,
                        help="Pixels per frame the critic sees at most (0: the checkpoint processor's bound).")
    critic.add_argument("--critic_max_new_tokens", type=int, default=1024, help="Length bound of each critic answer.")
    critic.add_argument("--critic_seed", type=int, default=0, help="Sampling seed of the first critic trial.")
    return p


def check_args(args) -> None:
    from .video2world import check_usage

    if args.batch_input_json:
        raise BestOfNError("--batch_input_json is not supported by best-of-N: give --input_path and --prompt")
    for flag in ("num_generations", "num_critic_trials", "critic_max_new_tokens", "refiner_max_new_tokens"):
        if getattr(args, flag) < 1:
            raise BestOfNError(f"--{flag} must be at least 1, not {getattr(args, flag)}")
    if args.critic_max_pixels < 0:
        raise BestOfNError(f"--critic_max_pixels must not be negative, not {args.critic_max_pixels}")
    if args.critic_fps <= 0:
        raise BestOfNError(f"--critic_fps must be positive, not {args.critic_fps}")
    if args.seed < 0:
        raise BestOfNError(f"--seed must not be negative, not {args.seed}")
    if not args.skip_generation:
        if not args.prompt:
            raise BestOfNError("--prompt is required (or give --skip_generation)")
        check_usage(args)


def save_path(args) -> str:
    if args.output_uri and args.save_path != DEFAULT_SAVE_PATH:
        raise BestOfNError("give either --save_path or --output_uri, not both")
    path = args.output_uri or args.save_path
    if storage.is_s3(path):
        storage.parse_s3(path)
    else:
        storage.local_path(path)
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("V2W_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    started = utcnow()
    target_path = None
    try:
        check_args(args)
        target_path = save_path(args)
        if storage.is_s3(target_path):
            storage.check_s3_access(target_path)
        return _run_cli(args, target_path)
    except GuardrailError as exc:
        return _fail(target_path, started, args, f"guardrail error, nothing generated: {exc}", EXIT_GUARDRAIL)
    except Exception as exc:
        if not _is_bad_input(exc):
            raise
        # Never overwrite the result.json of the other run that owns the folder.
        keep = target_path if not isinstance(exc, ForeignFolderError) else None
        return _fail(keep, started, args, str(exc), EXIT_BAD_INPUT)


def _is_bad_input(exc: Exception) -> bool:
    from .checkpoints import CheckpointError
    from .conditioning import ConditioningError
    from .outputs import OutputPathError
    from .video2world import RefinerError, UsageError

    return isinstance(exc, (BestOfNError, UsageError, CheckpointError, ConditioningError, storage.StorageError,
                            OutputPathError, RefinerError, FileNotFoundError, ValueError))


def _fail(target_path: str | None, started, args, message: str, code: int) -> int:
    from .video2world import settings_record, versions

    print(f"error: {message}", file=sys.stderr)
    if target_path is not None and os.environ.get("RANK", "0") == "0":
        from .manifests import write_result

        try:
            folder = Folder(target_path)
            try:
                result = ResultManifest(mode="bestofn", succeeded=False, message=message, started_at=started,
                                        settings=settings_record(args), versions=versions())
                write_result(folder.target, result)
            finally:
                folder.target.discard_staging()
        except (OSError, storage.StorageError) as exc:
            print(f"error: could not write result.json: {exc}", file=sys.stderr)
    return code


def _run_cli(args, target_path: str) -> int:
    import torch

    from .checkpoints import default_checkpoint, resolve_checkpoint
    from .generator import GenerationSettings, Video2WorldGenerator
    from .parallel import init_parallel
    from .qwen import QwenVL, Sampling
    from .refiner import CachedRefiner, CosmosReasonRefiner
    from .video2world import build_guardrail, settings_record, versions

    settings = GenerationSettings(
        resolution=args.resolution, aspect_ratio=args.aspect_ratio, num_conditional_frames=args.num_conditional_frames,
        num_frames=args.num_frames, num_steps=args.num_steps, guidance=args.guidance, fps=args.fps,
        negative_prompt=args.negative_prompt, height=args.height, width=args.width,
    )
    critic_checkpoint = args.critic_checkpoint or args.refiner_checkpoint
    checkpoint = None if args.skip_generation else (args.checkpoint_dir or default_checkpoint(args.model_size))

    # 1. Checkpoints located and the rank layout chosen before any weight is read
    if checkpoint:
        local_ckpt = resolve_checkpoint(checkpoint)
        heads = json.loads((local_ckpt / "transformer" / "config.json").read_text())["num_attention_heads"]
        ctx = init_parallel(args.num_gpus, num_heads=heads, guidance=args.guidance > 1.0,
                            num_videos=args.num_generations, context_parallel_size=args.context_parallel_size,
                            cfg_parallel=args.cfg_parallel, device=args.device)
    else:
        ctx = init_parallel(args.num_gpus, num_heads=1, guidance=False, num_videos=args.num_gpus, device=args.device)
    device = str(ctx.device)
    layout = ctx.layout
    qwen_cache: dict[str, QwenVL] = {}

    def qwen(source: str) -> QwenVL:
        # One Cosmos-Reason1 in memory when the refiner and the critic are the same checkpoint.
        if source not in qwen_cache:
            qwen_cache[source] = QwenVL.load(source, device=device)
        return qwen_cache[source]

    def make_generator():
        guardrail = build_guardrail(args, device) if layout.is_group_leader else None
        refiner = None
        if layout.is_group_leader and not args.disable_prompt_refiner:
            refiner = CachedRefiner(CosmosReasonRefiner(qwen(args.refiner_checkpoint), offload_to_cpu=True,
                                                        max_new_tokens=args.refiner_max_new_tokens))
        dtype = getattr(torch, args.dtype) if args.dtype else None
        generator = Video2WorldGenerator.from_checkpoint(str(local_ckpt), settings, dit_path=args.dit_path,
                                                         dtype=dtype, device=ctx.device, guardrail=guardrail,
                                                         refiner=refiner, ctx=ctx)
        generator.model_info.update(checkpoint=checkpoint, model_size=args.model_size, dit_path=args.dit_path)
        return generator

    def make_critic() -> Critic:
        model = qwen(critic_checkpoint)
        model.to(device)
        sampling = Sampling(max_new_tokens=args.critic_max_new_tokens, do_sample=True, temperature=0.6, top_p=0.95,
                            top_k=50, repetition_penalty=1.05)
        return Critic(model, num_trials=args.num_critic_trials, fps=args.critic_fps,
                      max_pixels=args.critic_max_pixels or None, sampling=sampling, seed=args.critic_seed)

    options = BestOfNOptions(
        save_path=target_path, input_path=None if args.skip_generation else args.input_path,
        prompt=None if args.skip_generation else args.prompt, negative_prompt=args.negative_prompt, seed=args.seed,
        num_generations=args.num_generations, num_critic_trials=args.num_critic_trials,
        skip_generation=args.skip_generation, fps=args.fps,
        generation_settings=settings.model_dump() | {"checkpoint": checkpoint, "dit_path": args.dit_path,
                                                     "refiner": not args.disable_prompt_refiner},
    )
    try:
        result = run(options, make_generator=make_generator, make_critic=make_critic, ctx=ctx,
                     settings_record=settings_record(args) | {"critic_checkpoint": critic_checkpoint},
                     versions=versions())
    finally:
        ctx.close()
    if result is None:
        return EXIT_OK
    print(result.message)
    for video in result.videos:
        print(f"  {video.score if video.score is not None else '---':>3}  {video.name}  {video.status}")
    print(f"index: {result.index_uri}")
    return EXIT_OK if result.succeeded else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
