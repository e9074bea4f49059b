"""Best-of-N rejection sampling: N videos with N seeds, a Cosmos-Reason1 critic, ranked reports.

    python -m v2w_runtime.bestofn --input_path in.jpg --prompt "..." --num_generations 5 \\
        --num_critic_trials 3 --save_path s3://bucket/runs/bus

Files in the output folder (a local folder or an s3:// prefix):
    gen00_seed0_score067.mp4 / .json (critique) / .html (report)   one set per scored video
    gen00_seed0.txt, gen00_seed0.json                              prompts and run record per generation
    best.mp4, index.html, result.json, progress.json, bestofn.json (what this folder was made for)

The run resumes: a generation whose video (or critique, or blocked record) is already there is not made
again, and a video whose critique JSON is there is not scored again. `--skip_generation` scores the MP4s
of `--videos_uri` (default: the output folder itself), copying each into the output folder under its
scored name; the originals stay.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from v2w_api.manifest import ResultManifest, Stage, VideoResult
from v2w_api.run import RunConfig

from . import cancel, storage
from .critic import SCORED, Critic, Critique, count_trials, score
from .jobs import Job
from .manifests import ProgressReporter, write_result
from .outputs import OutputTarget, prompt_text, publish_video, write_mp4
from .reports import data_uri, rank, render_index, render_report
from .runner import EXIT_OK, EXIT_SOME_FAILED, ForeignOutputError, Run, main as run_main

log = logging.getLogger("v2w_runtime.bestofn")

BEST_VIDEO = "best.mp4"
INDEX_FILE = "index.html"
JOB_FILE = "bestofn.json"


class BestOfNError(ValueError):
    """The best-of-N run cannot start or go on; the message names the setting or file."""


def generation_stem(index: int, seed: int) -> str:
    return f"gen{index:02d}_seed{seed}"


class JobRecord(BaseModel):
    """bestofn.json: what the folder's generations were made from, to refuse mixing two runs."""

    model_config = ConfigDict(extra="ignore")

    kind: str = "BestOfN"
    input: str | None
    prompt: str | None
    fingerprint: str = Field(..., description="Hash of everything that shapes the generated videos.")


def fingerprint(config: RunConfig) -> str:
    """Everything that shapes a generated video (the critic and the speed switches do not)."""
    shaping = config.model_dump(mode="json", include={"model", "input", "generation", "prompt_refiner", "guardrail",
                                                      "debug"})
    shaping["negative_prompt"] = config.negative_prompt
    shaping["fast_mode"] = [config.performance.fast_mode, config.performance.step_cache_interval]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Candidate:
    """A video to score: its base name, the file it is in now, and what is known about it."""

    base: str
    source: str  # file name in the folder the videos are read from
    owned: bool  # made by this run: the unscored file is removed once the scored copy exists
    seed: int | None = None
    prompt: str | None = None
    refined_prompt: str | None = None
    input: str | None = None
    warnings: list[str] = field(default_factory=list)
    run_settings: dict = field(default_factory=dict)


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
    """MP4s that are inputs to score (not scored copies, not best.mp4)."""
    return [n for n in sorted(names)
            if n.lower().endswith(".mp4") and n != BEST_VIDEO and not SCORED.match(n[: -len(".mp4")])]


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
    from PIL import Image

    img = Image.fromarray(frames[len(frames) // 2])
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return data_uri(buf.getvalue(), "image/jpeg")


# ----------------------------------------------------------------------------------------- the run


def execute(run: Run) -> int:
    result = best_of_n(run)
    if result is None:
        return EXIT_OK
    print(result.message)
    for video in result.videos:
        print(f"  {video.score if video.score is not None else '---':>3}  {video.name}  {video.status}")
    print(f"index: {result.index_uri}")
    return EXIT_OK if result.succeeded else EXIT_SOME_FAILED


def best_of_n(run: Run) -> ResultManifest | None:
    """Generate (unless skipped), score, rank. Returns the result on rank 0, None elsewhere."""
    config, target = run.config, run.target
    bon = config.best_of_n
    generating = not bon.skip_generation
    jobs = [Job(i, config.input.uri, config.input.prompt, f"{generation_stem(i, seed)}.mp4", seed,
                config.negative_prompt)
            for i, seed in enumerate(config.generation.seed + i for i in range(bon.num_generations))] if generating else []
    source = target if bon.videos_uri is None or not bon.skip_generation else run.open_source(bon.videos_uri)
    ctx = run.start_parallel(num_videos=len(jobs), generating=generating)
    layout = ctx.layout
    leader = layout.is_global_leader
    progress = ProgressReporter(target, videos_total=len(jobs), total_steps=config.generation.num_steps,
                                enabled=leader)

    # 1. What is already there (rank 0 looks, everyone gets the same answer)
    names = ctx.broadcast(target.top_names() if leader else None)
    if generating:
        if leader:
            claim_folder(target, config, names)
        names = generate_missing(run, jobs, names, progress)

    # 2. The critic on every video without a critique, spread over every rank (one critic load each): a
    # context-parallel group made each video together, but each rank judges whole videos on its own
    if leader:
        progress.stage(Stage.CRITIC, message="scoring videos")
    candidates = None
    if leader:
        source_names = source.top_names() if source is not target else names
        candidates = find_candidates(source, jobs, names, source_names, generating)
    mine = ctx.broadcast(candidates)[layout.rank :: layout.world_size]
    if mine:
        critic = run.load_critic()
        for candidate in mine:
            cancel.check()
            log.info("scoring %s (%d trials)", candidate.source, critic.num_trials)
            score_candidate(target, source, critic, candidate, names)
        del critic
        _free_accelerator()
    ctx.barrier()
    if not leader:
        return None

    # 3. Ranking, index, best.mp4 and result.json (rank 0)
    progress.stage(Stage.WRITING, message="ranking")
    names = target.top_names()
    wanted = {j.name[: -len(".mp4")] for j in jobs} if generating else None
    critiques = [c for base, files in scored_files(names).items() if wanted is None or base in wanted
                 if (c := load_critique(target, files[-1])) is not None]
    ranked, index_uri = finish(target, critiques, prompt=config.input.prompt if config.input else None)
    videos = [video_result(target, c, config.input.uri if config.input else None, names) for c in ranked]
    videos += [blocked for job in jobs if (blocked := blocked_result(target, job, names)) is not None]
    best = ranked[0] if ranked else None
    message = (f"best {best.video_file} (score {best.label}) of {len(ranked)} scored videos" if best
               else "no video could be scored")
    succeeded = best is not None or (bool(videos) and all(v.status == "blocked" for v in videos))
    result = run.result(videos, succeeded=succeeded, message=message, best=best.video_file if best else None,
                        index_uri=index_uri)
    progress.stage(Stage.DONE, message=message)
    write_result(target, result)
    return result


def claim_folder(target: OutputTarget, config: RunConfig, names: set[str]) -> None:
    """Write bestofn.json, or refuse a folder whose generations another run (other input or settings) made."""
    record = JobRecord(input=config.input.uri, prompt=config.input.prompt, fingerprint=fingerprint(config))
    if JOB_FILE not in names:
        target.write_json(JOB_FILE, record.model_dump())
    elif JobRecord.model_validate(target.read_json(JOB_FILE)).fingerprint != record.fingerprint:
        raise ForeignOutputError(
            f"{config.output.uri} holds the videos of another best-of-N run (different input, prompt or settings, "
            f"see {JOB_FILE}): choose a new output folder"
        )


def generate_missing(run: Run, jobs: list[Job], names: set[str], progress: ProgressReporter) -> set[str]:
    """Make the generations an earlier attempt did not, spread over the GPU groups; the folder's names after."""
    ctx, target = run.ctx, run.target
    layout = ctx.layout
    scored = scored_files(names)
    if layout.is_global_leader:
        done = [j.index for j in jobs if j.name in names or j.name[: -len(".mp4")] in scored
                or blocked_result(target, j, names) is not None]
    else:
        done = None
    done = set(ctx.broadcast(done))
    mine = layout.shard([j for j in jobs if j.index not in done])
    if layout.is_global_leader and done:
        progress.state.videos_done = len(done)
        progress.stage(Stage.LOADING, message=f"{len(done)} of {len(jobs)} videos already made")
    if mine:
        generator = run.load_generator()
        for job in mine:
            cancel.check()
            if layout.is_global_leader:
                progress.stage(Stage.SAMPLING, current=job.name)
            gen = generator.generate(job.input, job.prompt, job.seed, negative_prompt=job.negative_prompt,
                                     on_step=progress.step if layout.is_global_leader else None)
            if layout.is_group_leader:
                record = run.video_record(generator, job, gen) | {"gpu_group": layout.group_index}
                mp4 = write_mp4(gen.frames, target.path(job.name), run.config.generation.fps) \
                    if gen.status == "succeeded" else None
                publish_video(target, job.name, mp4, prompt_text(job.prompt, gen.refined_prompt, gen.negative_prompt),
                              record)
            if layout.is_global_leader:
                progress.video_done()
        del generator
        _free_accelerator()
    ctx.barrier()
    return ctx.broadcast(target.top_names() if layout.is_global_leader else None)


def blocked_result(target: OutputTarget, job: Job, names: set[str]) -> VideoResult | None:
    """The guardrail's recorded block of a generation (its record, and no video), if that is what is there."""
    stem = job.name[: -len(".mp4")]
    if f"{stem}.json" not in names or job.name in names:
        return None
    try:
        record = target.read_json(f"{stem}.json")
    except (ValueError, storage.StorageError):
        return None
    if not isinstance(record, dict) or record.get("status") != "blocked":
        return None
    return VideoResult(name=job.name, status="blocked", input=job.input, seed=record.get("seed"),
                       prompt=record.get("prompt"), reason=record.get("reason"), **_guardrail_fields(record),
                       files={"record": target.uri_of(f"{stem}.json")})


def _guardrail_fields(record: dict | None) -> dict:
    """What a run record says about the guardrail; a video without our record was checked by nothing here."""
    if not isinstance(record, dict):
        return {"guardrail_checked": False}
    components = record.get("guardrail_components")
    return {"guardrail_checked": record.get("guardrail_checked"),
            "guardrail_components": components if isinstance(components, list) else []}


def find_candidates(source: OutputTarget, jobs: list[Job], names: set[str], source_names: set[str],
                    generating: bool) -> list[Candidate]:
    """The videos to score: this run's generations, or the MP4s of the source folder; none scored twice."""
    scored = scored_files(names)
    if generating:
        files = [j.name for j in jobs if j.name in names]
    else:
        files = existing_videos(source_names)
        if not files and not scored:
            raise BestOfNError(f"nothing to score: no MP4 video in {source.uri or source.root}")
    out = []
    for file in files:
        base = file[: -len(".mp4")]
        if base in scored:
            continue
        candidate = Candidate(base=base, source=file, owned=generating)
        if f"{base}.json" in source_names:  # our run record, when the video came from this system
            try:
                record = source.read_json(f"{base}.json")
                candidate.seed = record.get("seed") if isinstance(record.get("seed"), int) else None
                candidate.prompt = record.get("prompt")
                candidate.refined_prompt = record.get("refined_prompt")
                candidate.input = record.get("input")
                candidate.warnings = list(record.get("warnings") or [])
                candidate.run_settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
            except (ValueError, AttributeError, storage.StorageError):
                pass
        out.append(candidate)
    return out


def score_candidate(target: OutputTarget, source: OutputTarget, critic: Critic, candidate: Candidate,
                    names: set[str]) -> Critique:
    """Critique one video and write its scored MP4, report and critique JSON (the JSON last)."""
    local = source.fetch(candidate.source)
    frames, fps = read_video(local)
    trials = critic.trials(frames, fps)
    counts = count_trials(trials)
    warnings = list(candidate.warnings)
    if counts.unparsable:
        warnings.append(f"{counts.unparsable} of {counts.total} critic answers could not be parsed")
    if counts.parsed == 0:
        warnings.append("no critic answer could be parsed: scored 0")
    critique = Critique(
        video=candidate.base, source_uri=source.uri_of(candidate.source), seed=candidate.seed,
        prompt=candidate.prompt, refined_prompt=candidate.refined_prompt, trials=trials, counts=counts,
        score=score(counts), settings=critic.settings(), run_settings=candidate.run_settings, warnings=warnings,
        poster=poster(frames),
    )
    # Files of an earlier, interrupted attempt that came to another score.
    for name in names:
        match = SCORED.match(name.rsplit(".", 1)[0])
        if match and match.group("base") == candidate.base and name.rsplit(".", 1)[0] != critique.stem:
            target.remove(name)
    target.put(local, critique.video_file, "video/mp4")
    target.write_text(critique.report_file, render_report(critique), "text/html; charset=utf-8")
    target.write_json(critique.critique_file, critique.model_dump(mode="json"))
    if candidate.owned:
        target.remove(candidate.source)
    return critique


def load_critique(target: OutputTarget, name: str) -> Critique | None:
    try:
        return Critique.model_validate(target.read_json(name))
    except (ValueError, storage.StorageError) as exc:
        log.warning("ignoring unreadable critique %s: %s", name, exc)
        return None


def finish(target: OutputTarget, critiques: list[Critique], *, prompt: str | None) -> tuple[list[Critique], str]:
    """Rank, publish best.mp4 and index.html; returns the ranking and the index URI."""
    ranked = rank(critiques)
    if ranked:
        target.put(target.fetch(ranked[0].video_file), BEST_VIDEO, "video/mp4")
    html = render_index(ranked, prompt=prompt, best_file=BEST_VIDEO if ranked else None)
    return ranked, target.write_text(INDEX_FILE, html, "text/html; charset=utf-8")


def video_result(target: OutputTarget, critique: Critique, input: str | None, names: set[str]) -> VideoResult:
    files = {"critique": target.uri_of(critique.critique_file), "report": target.uri_of(critique.report_file)}
    for role, suffix in (("prompt", ".txt"), ("record", ".json")):
        if critique.video + suffix in names:
            files[role] = target.uri_of(critique.video + suffix)
    record = None
    if critique.video + ".json" in names:
        try:
            record = target.read_json(critique.video + ".json")
        except (ValueError, storage.StorageError):
            record = {}
    return VideoResult(**_guardrail_fields(record),
        name=critique.video_file, status="succeeded", input=input, uri=target.uri_of(critique.video_file),
        seed=critique.seed, prompt=critique.prompt, refined_prompt=critique.refined_prompt, files=files,
        score=critique.score, trials=critique.counts, report_uri=target.uri_of(critique.report_file),
        warnings=critique.warnings,
    )


def _free_accelerator() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    return run_main("bestofn", execute, argv)


if __name__ == "__main__":
    sys.exit(main())
