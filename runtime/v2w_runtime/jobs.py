"""The videos a run makes: one `Job` each, planned from the run configuration before any weight loads.

A single-input run makes one video named by `output.videoName`; a batch run makes one per entry of its
batch file (entry i seeded with seed + i unless it sets its own). A batch entry that cannot work (an output
name that leaves the output folder, a name used twice) is planned as a job with an error: that entry
fails, the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from v2w_api.run import RunConfig

from . import storage
from .batch import load_batch
from .checkpoints import cache_dir
from .outputs import OutputPathError, resolve_output, side_file_names

# The seed's output folder: batch entries written as `output/x.mp4` land at `x` under an S3 prefix.
SEED_OUTPUT_FOLDER = Path("output")


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
    frames: np.ndarray | None = None  # conditioning frames read ahead (single mode)


def batch_root(config: RunConfig) -> Path:
    """The folder batch output names resolve against: the local output folder, or the seed's for S3."""
    uri = config.output.uri
    return SEED_OUTPUT_FOLDER if storage.is_s3(uri) else storage.local_path(uri)


def _overwrites_the_run_files(config: RunConfig, name: str) -> str | None:
    """The run's progress or result file that a video's own files would overwrite, if any."""
    ours = {config.output.progress_file, config.output.result_file}
    clash = ours & {name, *side_file_names(name).values()}
    return clash.pop() if clash else None


def plan_jobs(config: RunConfig) -> list[Job]:
    if config.input is not None:
        name = config.output.video_name or "generated_video.mp4"
        job = Job(0, config.input.uri, config.input.prompt, name, config.generation.seed, config.negative_prompt)
        if clash := _overwrites_the_run_files(config, name):
            job.error = f"video {name!r}: its side files would overwrite the run's {clash}; choose another name"
        return [job]
    root = batch_root(config)
    jobs, seen = [], set()
    for i, item in enumerate(load_batch(config.batch_uri, cache_dir() / "inputs")):
        seed = item.seed if item.seed is not None else config.generation.seed + i
        job = Job(i, item.input_video, item.prompt, f"entry-{i}.mp4", seed,
                  item.negative_prompt if item.negative_prompt is not None else config.negative_prompt)
        try:
            job.name = resolve_output(item.output_video, root)
        except OutputPathError as exc:
            job.error = f"entry {i}: {exc}"
        if job.error is None and (clash := _overwrites_the_run_files(config, job.name)):
            job.error = f"entry {i}: output {item.output_video!r} would overwrite the run's {clash}"
        if job.error is None and job.name in seen:
            job.error = f"entry {i}: output {item.output_video!r} is also the output of an earlier entry"
        seen.add(job.name)
        jobs.append(job)
    return jobs


__all__ = ["Job", "batch_root", "plan_jobs"]
