"""`python -m v2w_runtime.video2world`: Cosmos-Predict2 Video2World generation, the seed's CLI.

Single video:  --input_path IMG_OR_VIDEO --prompt TEXT [--save_path output/x.mp4]
Batch:         --batch_input_json FILE_OR_S3_URI   (a list of {input_video, prompt, output_video})
From a job:    --config RUN_CONFIG   (what the operator renders into the PyTorchJob)
Under torchrun the ranks share the work (see --num_gpus). With an s3:// output every file is uploaded
there, with progress.json kept current and result.json written last. Exit codes: see `runner`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import PurePosixPath

from v2w_api.manifest import Stage, VideoResult

from . import cancel, storage
from .checkpoints import cache_dir
from .conditioning import ConditioningError, load_conditioning
from .generator import video_size
from .interfaces import GuardrailError
from .jobs import Job, plan_jobs
from .manifests import ProgressReporter, summarize, write_result
from .outputs import prompt_text, publish_video, write_mp4
from .resume import finished_entries
from .runner import EXIT_OK, EXIT_SOME_FAILED, Run, main as run_main

log = logging.getLogger("v2w_runtime")

VIDEOS_MADE = "videos_made"


def execute(run: Run) -> int:
    config, target = run.config, run.target
    jobs = plan_jobs(config)
    if config.input is not None:  # a bad input fails before any weight loads
        height, width = video_size(config.generation, config.debug)
        path = storage.fetch_file(jobs[0].input, cache_dir() / "inputs")
        jobs[0].frames = load_conditioning(path, config.generation.num_conditional_frames, height, width,
                                           name=jobs[0].input)

    ctx = run.start_parallel(num_videos=len(jobs))
    layout = ctx.layout
    # Entries an earlier attempt finished (a restarted pod) are kept, not made again; rank 0 decides for all.
    done = ctx.broadcast(finished_entries(target, jobs, run.record) if layout.is_global_leader else None)
    mine = layout.shard([job for job in jobs if job.index not in done])
    reporter = ProgressReporter(target, len(jobs), config.generation.num_steps, enabled=layout.is_global_leader)
    results: list[tuple[int, dict]] = []
    if done:
        reporter.state.videos_done = len(done)
        if layout.is_global_leader:
            results += [(index, video.model_dump(mode="json")) for index, video in done.items()]

    reporter.stage(Stage.LOADING, message="loading models")
    generator = run.load_generator()

    # The videos of this rank's group; every group leader counts its own in the world's counter
    for job in mine:
        cancel.check()
        result = make_video(run, generator, job, reporter)
        made = None
        if layout.is_group_leader:
            results.append((job.index, result.model_dump(mode="json")))
            made = ctx.add(VIDEOS_MADE)
        reporter.video_done(None if made is None else len(done) + made)
    if layout.is_global_leader and layout.num_groups > 1:
        follow_other_groups(ctx, reporter, already=len(done), remaining=len(jobs) - len(done))

    # Every group's results to rank 0, which writes result.json last
    gathered = ctx.gather_to_leader(results if layout.is_group_leader else [])
    code = EXIT_OK
    if layout.is_global_leader:
        merged = sorted((item for part in gathered for item in part), key=lambda pair: pair[0])
        videos = [VideoResult.model_validate(data) for _, data in merged]
        ok, message = summarize(videos)
        result = run.result(videos, succeeded=ok, message=message)
        reporter.state.videos_done = len(videos)  # every group's, not only this one's
        reporter.stage(Stage.DONE if result.succeeded else Stage.FAILED, message=result.message)
        print_summary(videos, write_result(target, result))
        code = EXIT_OK if result.succeeded else EXIT_SOME_FAILED
    ctx.barrier()
    return code


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


def make_video(run: Run, generator, job: Job, reporter) -> VideoResult:
    """Generate, check and write one video; a failure is recorded, a GuardrailError propagates."""
    target = run.target
    video = VideoResult(name=PurePosixPath(job.name).name, status="failed", input=job.input, seed=job.seed,
                        prompt=job.prompt)
    if job.error:
        video.reason = job.error
        log.error("%s", job.error)
        return video
    reporter.stage(Stage.ENCODING, current=video.name, message=f"input {job.input}")
    try:
        outcome = generator.generate(
            job.frames if job.frames is not None else job.input, job.prompt, job.seed,
            negative_prompt=job.negative_prompt,
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
    video.guardrail_checked, video.guardrail_components = outcome.guardrail_checked, outcome.guardrail_components
    video.timings = {k: round(v, 3) for k, v in outcome.timings.items()}
    video.warnings = outcome.warnings
    if not generator.layout.is_group_leader:
        video.status = outcome.status
        return video

    # Side files: always the record (and prompts); the MP4 only when the video may be shown.
    reporter.stage(Stage.WRITING, current=video.name)
    start = time.perf_counter()
    record = run.video_record(generator, job, outcome)
    try:
        mp4 = None
        if outcome.status == "succeeded":
            mp4 = write_mp4(outcome.frames, target.path(job.name), run.config.generation.fps)
        record["timings_s"]["writing"] = round(time.perf_counter() - start, 3)
        if target.uri:
            reporter.stage(Stage.UPLOADING, current=video.name)
        files = publish_video(target, job.name, mp4,
                              prompt_text(job.prompt, outcome.refined_prompt, outcome.negative_prompt), record)
    except (OSError, storage.StorageError, ValueError) as exc:
        video.status, video.reason = "failed", f"writing {job.name}: {exc}"
        log.error("%s", video.reason)
        return video
    video.uri = files.pop("video", None)
    video.files = files
    video.status, video.reason = outcome.status, outcome.reason
    video.timings["writing"] = round(time.perf_counter() - start, 3)
    log.info("video %s: %s%s", job.name, video.status, f" ({video.reason})" if video.reason else "")
    return video


def print_summary(videos: list[VideoResult], result_uri: str) -> None:
    print(f"summary: {len(videos)} video(s): {summarize(videos)[1]}")
    for v in videos:
        print(f"  [{v.status}] {v.name}: {v.uri or v.reason or ''}")
    print(f"result: {result_uri}")


def main(argv: list[str] | None = None) -> int:
    return run_main("video2world", execute, argv)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
