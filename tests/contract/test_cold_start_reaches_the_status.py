"""The runtime → operator contract for cold starts (issue 21): the runtime's real run writes its cold-start
figures into progress.json (from the first sampling step on) and result.json; the operator's real status
derivation puts them into `status.coldStart`, which the CRD's `-o wide` column and the metrics read.

The runtime runs in this process on a tiny checkpoint (CPU), its clock started by the launcher's real
`export_start_time` a few seconds before, as in a pod; checkpoint downloads (here: none, a local folder) and
the model load are timed by the runtime's own code."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
import yaml

from v2w_api.manifest import ProgressManifest, ResultManifest
from v2w_api.status import BestOfNJobStatus, Video2WorldJobStatus
from v2w_operator import metrics
from v2w_operator.backends import ChildView, pytorchjob
from v2w_operator.observe import Observation, derive_status
from v2w_runtime import coldstart, storage

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--height", "64", "--width", "96", "--num_frames", "9", "--num_steps", "2",
        "--disable_guardrail", "--disable_prompt_refiner"]
PARTS = ("download", "load", "compile", "other")


def pj(state: str) -> ChildView:
    return pytorchjob.view({"status": {"conditions": [{"type": state, "status": "True", "reason": state, "message": ""}],
                                       "startTime": "2026-01-01T00:00:00Z"}})


@pytest.fixture(scope="module")
def run_files(tmp_path_factory) -> tuple[Path, Path, float]:
    """One real runtime run; its progress.json and result.json, and how long ago its clock started."""
    from v2w_runtime.tiny import write_checkpoint
    from v2w_runtime.tiny.inputs import write_image
    from v2w_runtime.video2world import main

    folder = tmp_path_factory.mktemp("run")
    checkpoint = write_checkpoint(folder / "tiny", seed=0)
    image = write_image(folder / "still.png", height=90, width=120, seed=1)
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("V2W_CACHE_DIR", str(folder / "cache"))
        for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", coldstart.START_ENV):
            patch.delenv(var, raising=False)
        storage.reset_client()
        started = time.time()
        coldstart.export_start_time()  # what v2w-launch does before torchrun starts the workers
        exported = float(os.environ[coldstart.START_ENV])
        assert abs(exported - (coldstart.process_start_time() or 0)) < 1e-2 and exported <= started
        time.sleep(1.0)  # the pod's start is before the runtime's: its clock must count from the launcher's
        code = main(["--checkpoint_dir", str(checkpoint), "--input_path", str(image), "--prompt", "a bus",
                     "--save_path", str(folder / "out" / "v.mp4"), *FAST])
        elapsed = time.time() - exported
    assert code == 0
    return folder / "out" / "v.progress.json", folder / "out" / "v.result.json", elapsed


def test_the_runtime_reports_its_cold_start_in_both_files(run_files):
    progress_file, result_file, elapsed = run_files
    progress = ProgressManifest.model_validate_json(progress_file.read_text())
    result = ResultManifest.model_validate_json(result_file.read_text())
    raw = json.loads(progress_file.read_text())["coldStart"]  # the wire names the operator reads
    assert set(raw) == {"seconds", *PARTS}
    figures = result.cold_start
    assert figures is not None and progress.cold_start == figures
    assert 1.0 <= figures.seconds <= elapsed  # counted from the launcher's start, which came a second earlier
    assert figures.load > 0 and figures.compile > 0 and figures.download == 0  # a local folder: nothing fetched
    assert abs(sum(getattr(figures, p) for p in PARTS) - figures.seconds) < 0.05


@pytest.mark.parametrize("status_model", [Video2WorldJobStatus, BestOfNJobStatus])
def test_the_operator_copies_them_into_status_while_running_and_when_done(run_files, status_model):
    progress_file, result_file, _ = run_files
    progress = ProgressManifest.model_validate_json(progress_file.read_text())
    result = ResultManifest.model_validate_json(result_file.read_text())

    running = derive_status(status_model(), Observation(1, pj("Running"), progress=progress))
    assert running.cold_start is not None and running.cold_start.seconds == progress.cold_start.seconds
    done = derive_status(running, Observation(1, pj("Succeeded"), progress=progress, result=result,
                                              result_uri="s3://b/p/result.json"))
    wire = done.to_wire()
    assert wire["coldStart"] == {"seconds": result.cold_start.seconds,
                                 **{p: getattr(result.cold_start, p) for p in PARTS}}

    summary = metrics.summarize("Video2WorldJob", {"parallelism": {"gpus": 1}}, wire)
    assert summary.cold_start["seconds"] == result.cold_start.seconds
    collector = metrics.JobsCollector()
    collector.watch({"k": [summary]})
    families = {f.name: f for f in collector.collect()}
    count = next(s for s in families["v2w_job_cold_start_seconds"].samples if s.name.endswith("_count"))
    assert count.value == 1


@pytest.mark.parametrize("kind", ["video2worldjobs", "bestofnjobs"])
def test_the_wide_column_reads_the_field_the_operator_writes(run_files, kind):
    """`kubectl get -o wide` shows `Cold start`: a priority-1 column whose path is the status field above."""
    crd = yaml.safe_load((ROOT / "crds" / f"video2world.io_{kind}.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    (column,) = [c for c in version["additionalPrinterColumns"] if c["name"] == "Cold start"]
    assert column["priority"] == 1 and column["jsonPath"] == ".status.coldStart.seconds"
    schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["coldStart"]
    assert set(schema["properties"]) == {"seconds", *PARTS} and schema["properties"]["seconds"]["type"] == "number"
