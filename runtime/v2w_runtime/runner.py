"""The one runner of both programs: a run configuration in, an exit code out.

    config (cli.parse) -> [--verify_only: every checkpoint checked, exit 0/2] -> output target -> the model's
        layout (an upstream tree's refiner and guardrail become the defaults) -> [the program: plan, checks
        before any weight] -> checkpoints found and checked, rank layout (Run.start_parallel) -> guardrail,
        refiner, generator, speed switches (Run.load_generator) -> critic (Run.load_critic) -> result.json
        -> exit code

What is particular to a program (a batch of entries, or N seeds and a critic) is its `execute(run)`;
everything else, including how a failure is reported, lives here once.

Exit codes: 0 every video succeeded or was blocked by the guardrail; 1 some videos failed (see the summary
and result.json); 2 bad arguments, configuration, input or checkpoint, nothing generated; 3 the guardrail
is enabled but cannot run, nothing generated (fail closed); 138 storage unreachable or busy, worth another
try. With the training-operator's `ExitCode` restart policy, 1-3 fail the job at once and 138 (like a
worker killed: 137, 143) restarts it (`launch.py` passes the worker's code through torchrun).
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, NamedTuple

from v2w_api.manifest import ResultManifest, WorkerRecord, utcnow
from v2w_api.run import RunConfig, RunConfigError

from . import storage
from .batch import BatchError
from .checkpoints import CheckpointError, ModelSource, resolve_model
from .cli import UsageError, parse
from .coldstart import clock
from .coldstart import reset as reset_cold_start
from .conditioning import ConditioningError
from .interfaces import Guardrail, GuardrailError, PromptRefiner
from .outputs import OutputPathError, OutputTarget

if TYPE_CHECKING:
    from .critic import Critic
    from .generator import Video2WorldGenerator
    from .parallel import ParallelContext
    from .qwen import QwenVL

log = logging.getLogger("v2w_runtime")

Mode = Literal["video2world", "bestofn"]
EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT, EXIT_GUARDRAIL = 0, 1, 2, 3
# The training-operator's code for "retryable, by the program's own account" (128 + SIGUSR1).
EXIT_RETRYABLE = 138


class RefinerError(RuntimeError):
    """The prompt refiner is enabled but cannot be loaded."""


class ForeignOutputError(ValueError):
    """The output folder holds another run's files; its result.json must stay as it is."""


# Everything that means "this input, configuration or checkpoint cannot work": exit 2, nothing generated.
BAD_INPUT = (UsageError, RunConfigError, BatchError, CheckpointError, ConditioningError, storage.StorageError,
             OutputPathError, RefinerError, ValueError)


@dataclass
class Warm:
    """What a pool worker loaded once and lends to each run it serves (worker.py): the ranks, the generator
    with its guardrail, the Cosmos-Reason1 models (refiner, critic), and the model's location. A run given one
    loads nothing and leaves it open at its end."""

    ctx: ParallelContext
    generator: Video2WorldGenerator
    model_source: ModelSource
    qwen: dict[str, QwenVL] = field(default_factory=dict)
    pod: str = ""
    loads: int = 1
    jobs_served: int = 0

    def record(self) -> WorkerRecord:
        return WorkerRecord(pod=self.pod, loads=self.loads, jobs_served=max(1, self.jobs_served))


class Outcome(NamedTuple):
    """How a run ended: its exit code and its last word (result.json's message, or why it could not run)."""

    code: int
    message: str | None


class Run:
    """One run: its configuration, where it writes, its ranks, and the models it loads (each once), or those a
    pool worker lends it (`warm`)."""

    def __init__(self, config: RunConfig, mode: Mode, warm: Warm | None = None) -> None:
        self.config = config
        self.mode = mode
        self.warm = warm
        self.started = utcnow()
        self.target: OutputTarget | None = None
        self.ctx: ParallelContext | None = None
        self.model_source: ModelSource | None = warm.model_source if warm else None
        self._qwen: dict[str, QwenVL] = warm.qwen if warm else {}
        self.message: str | None = None
        self._versions: dict[str, str] | None = None
        self._sources: list[OutputTarget] = []

    # 0. Where files go
    def open_target(self) -> OutputTarget:
        """The output folder, or the S3 prefix staged in a local folder; an unreachable bucket fails here."""
        output = self.config.output
        uri = output.uri
        if storage.is_s3(uri):
            storage.parse_s3(uri)
            self.target = OutputTarget.staged(uri, f"v2w-{self.mode}-")
            self.target.progress_file, self.target.result_file = output.progress_file, output.result_file
            storage.check_s3_access(uri)
        else:
            self.target = OutputTarget(storage.local_path(uri), progress_file=output.progress_file,
                                       result_file=output.result_file)
        return self.target

    def open_source(self, uri: str) -> OutputTarget:
        """A folder or S3 prefix the run only reads (best-of-N's videos to score)."""
        source = OutputTarget.staged(uri, "v2w-source-") if storage.is_s3(uri) else OutputTarget(storage.local_path(uri))
        self._sources.append(source)
        return source

    # 0b. Where the model is, in which layout: an upstream tree also holds the refiner and the guardrail
    def locate_model(self) -> ModelSource:
        """The run's model found in its layout (listed once; CheckpointError when it cannot be found)."""
        if self.model_source is None:
            config = self.config
            self.model_source = resolve_model(config.checkpoint, config.model.size, config.generation.resolution,
                                              config.generation.fps)
        return self.model_source

    def adopt_tree_defaults(self) -> None:
        """When the model comes from upstream's checkpoints/ tree, the tree's Cosmos-Reason1 and Guardrail1 are
        the refiner's, critic's and guardrail's checkpoints unless the configuration names others. A model that
        cannot be found leaves them as they are (the run says what is missing when it needs the model)."""
        try:
            tree = self.locate_model().upstream_root
        except (CheckpointError, storage.StorageError):
            return
        self.config = self.config.with_upstream_tree(tree)

    # 1. The checkpoints (found and checked; from S3 downloaded once) and the rank layout, before any weight is read
    def start_parallel(self, num_videos: int, generating: bool = True) -> ParallelContext:
        from .parallel import init_parallel

        if self.warm is not None:  # the worker's ranks, checked and started when it loaded
            self.ctx = self.warm.ctx
            return self.ctx
        par = self.config.parallelism
        if generating:
            heads = self.locate_model().require().architecture()["num_attention_heads"]
            self.check_side_checkpoints()
            self.ctx = init_parallel(
                par.gpus, num_heads=heads, guidance=self.config.generation.guidance > 1.0, num_videos=num_videos,
                context_parallel_size=par.context_parallel_size, cfg_parallel=par.cfg_parallel,
                device=self.config.debug.device,
            )
        else:  # scoring only: every rank scores whole videos
            self.check_side_checkpoints()
            self.ctx = init_parallel(par.gpus, num_heads=1, guidance=False, num_videos=par.gpus,
                                     device=self.config.debug.device)
        layout = self.ctx.layout
        chosen = "as the spec fixes it" if par.context_parallel_size or par.cfg_parallel is not None else "automatic"
        if layout.is_global_leader:
            log.info("layout (%s) for %d GPU(s) and %d video(s): %d group(s) of %d, context parallel %d, CFG parallel %s",
                     chosen, layout.world_size, num_videos, layout.num_groups, layout.group_size, layout.cp_size,
                     "on" if layout.cfg_parallel else "off")
        return self.ctx

    def check_side_checkpoints(self) -> None:
        """The refiner's and critic's folders are there with their config and weights, before anything loads
        (the guardrail's folder is its loader's to judge: it fails closed)."""
        from .checkpoints.verify import Report, check_folder

        config, report = self.config, Report("")
        generating = not (config.best_of_n is not None and config.best_of_n.skip_generation)
        if generating and config.prompt_refiner.enabled:
            check_folder(report, "the prompt refiner's checkpoint", config.refiner_checkpoint, needs=("config.json",),
                         weights=True, read_headers=False)
        if config.best_of_n is not None:
            check_folder(report, "the critic's checkpoint", config.critic_checkpoint, needs=("config.json",),
                         weights=True, read_headers=False)
        bad = [c for c in report.checks if not c.ok]
        if bad:
            raise CheckpointError("; ".join(f"{c.what}: {c.detail}" for c in bad)
                                  + (" (disable the prompt refiner to use prompts as given)"
                                     if any("refiner" in c.what for c in bad) else ""))

    @property
    def layout_record(self) -> dict:
        """The layout the ranks run, as each video's record names it (the spec may have left it to the runtime)."""
        layout = self.ctx.layout
        return {"gpus": layout.world_size, "groups": layout.num_groups, "groupSize": layout.group_size,
                "contextParallelSize": layout.cp_size, "cfgParallel": layout.cfg_parallel,
                "gpuGroup": layout.group_index}

    # 2-4. Guardrail and refiner (group leaders only; a GuardrailError propagates: fail closed), the DiT
    # pipeline split over the group, and the speed switches
    def load_generator(self) -> Video2WorldGenerator:
        """The generator and what it needs, loaded (the `load` part of the cold start, see coldstart.py)."""
        with clock().span("load"):
            return self._load_generator()

    def _load_generator(self) -> Video2WorldGenerator:
        if self.warm is not None:
            return self._lend_generator()
        import torch

        from . import perf
        from .generator import Video2WorldGenerator

        ctx, config = self.ctx, self.config
        leader = ctx.layout.is_group_leader
        device = str(ctx.device)
        guardrail = build_guardrail(config, device) if leader else None
        refiner = self.build_refiner(device) if leader else None
        dtype = getattr(torch, config.model.dtype) if config.model.dtype else None
        generator = Video2WorldGenerator.from_checkpoint(
            self.locate_model(), config.generation, config.debug, dit_path=config.model.dit_path, dtype=dtype,
            device=ctx.device, guardrail=guardrail, refiner=refiner, ctx=ctx, model_size=config.model.size,
        )
        speed = perf.options_from_spec(config.performance)
        applied = speed  # recorded as asked (the same on any layout), next to what this device and layout got
        if ctx.layout.group_size > 1:  # the parallel wrapper splits the guidance batch over its CFG halves itself
            applied = speed.model_copy(update={"split_batch": False})
        wrapper = perf.accelerate(generator.pipeline, applied)
        # as asked, plus what this device got: the attention kernel, the fused forward, compile
        generator.model_info.update(checkpoint=config.checkpoint, model_size=config.model.size,
                                    dit_path=config.model.dit_path, speed={**speed.model_dump(), "applied": wrapper.applied})
        return generator

    def _lend_generator(self) -> Video2WorldGenerator:
        """The worker's generator with this run's sampling settings and its own refiner (the run's token bound
        and offloading; the model is the worker's). What was loaded is the run's by `worker.mismatches`."""
        generator = self.warm.generator
        generator.generation, generator.debug = self.config.generation, self.config.debug
        if self.ctx.layout.is_group_leader:
            generator.refiner = self.build_refiner(str(self.ctx.device))
        return generator

    def build_refiner(self, device: str) -> PromptRefiner | None:
        """The prompt refiner (each distinct prompt and input refined once), or None when it is off."""
        spec = self.config.prompt_refiner
        if not spec.enabled:
            return None
        from .refiner import CachedRefiner, CosmosReasonRefiner

        source = self.config.refiner_checkpoint
        try:
            qwen = self.qwen(source, device)
        except Exception as exc:
            raise RefinerError(
                f"cannot load the prompt refiner from {source}: {type(exc).__name__}: {exc} "
                "(disable the prompt refiner to use prompts as given)"
            ) from None
        return CachedRefiner(CosmosReasonRefiner(qwen, offload_to_cpu=spec.offload_to_cpu,
                                                 max_new_tokens=spec.max_new_tokens))

    def load_critic(self) -> Critic:
        from dataclasses import replace

        from .critic import CRITIC_SAMPLING, Critic

        spec = self.config.best_of_n.critic
        device = str(self.ctx.device)
        model = self.qwen(self.config.critic_checkpoint, device)
        model.to(device)
        sampling = replace(CRITIC_SAMPLING, max_new_tokens=spec.max_new_tokens)
        return Critic(model, num_trials=spec.num_trials, fps=spec.fps, max_pixels=spec.max_pixels or None,
                      sampling=sampling, seed=spec.seed)

    def qwen(self, source: str, device: str) -> QwenVL:
        """One Cosmos-Reason1 in memory when the refiner and the critic are the same checkpoint."""
        from .qwen import QwenVL

        if source not in self._qwen:
            self._qwen[source] = QwenVL.load(source, device=device)
        return self._qwen[source]

    # The run's record
    @property
    def record(self) -> dict:
        """Every setting of the run, as each video's record and result.json carry it."""
        return self.config.record()

    def video_record(self, generator: Video2WorldGenerator, job, outcome) -> dict:
        """The run record written next to each video: what it was made from, how, and with which code."""
        return {"video": job.name, "input": job.input, **outcome.record(), "settings": self.record,
                "layout": self.layout_record, "model": generator.model_info, "versions": self.versions}

    @property
    def versions(self) -> dict[str, str]:
        if self._versions is None:
            self._versions = versions()
        return self._versions

    def result(self, videos, *, succeeded: bool, message: str, **fields) -> ResultManifest:
        fields.setdefault("cold_start", clock().figures)
        if self.warm is not None:
            fields.setdefault("worker", self.warm.record())
        self.message = message
        return ResultManifest(mode=self.mode, succeeded=succeeded, message=message, started_at=self.started,
                              videos=videos, settings=self.record, versions=self.versions, **fields)

    def fail(self, message: str, code: int, write_result: bool = True) -> int:
        """Report a run that could not start or had to stop: stderr, and result.json where it can go."""
        print(f"error: {message}", file=sys.stderr)
        self.message = message
        if write_result and self.target is not None and os.environ.get("RANK", "0") == "0":
            from .manifests import write_result as write

            try:
                write(self.target, self.result([], succeeded=False, message=message))
            except (OSError, storage.StorageError) as exc:
                print(f"error: could not write {self.target.result_file}: {exc}", file=sys.stderr)
        return code

    def close(self) -> None:
        if self.ctx is not None and self.warm is None:
            self.ctx.close()
        # Every rank stages in a folder of its own; on a pod's disk it outlives a failed run otherwise.
        for target in [self.target, *self._sources]:
            if target is not None:
                target.discard_staging()


def build_guardrail(config: RunConfig, device: str) -> Guardrail | None:
    """The guardrail, or None when it is off. Any failure to build it is a GuardrailError."""
    spec = config.guardrail
    if not spec.enabled:
        return None
    try:
        from .guardrail.checker import load_guardrail
    except ImportError as exc:
        raise GuardrailError(
            f"the guardrail is enabled but cannot be imported ({exc}); disable the guardrail to run without it"
        ) from None
    source = config.guardrail_checkpoint
    try:
        return load_guardrail(source, extra_blocklist=spec.blocklist, pixelate_faces=spec.pixelate_faces,
                              device=device or "cpu")
    except GuardrailError:
        raise
    except storage.StorageError as exc:
        if exc.retryable:  # S3 away for now: nothing is generated, and the run is worth another try
            raise
        raise GuardrailError(f"cannot load the guardrail from {source}: {exc}") from None
    except Exception as exc:  # whatever stops it, nothing may be generated
        raise GuardrailError(f"cannot load the guardrail from {source}: {type(exc).__name__}: {exc}") from None


def verify_only(config: RunConfig, mode: Mode) -> int:
    """--verify_only: every checkpoint this run would load, checked without loading weights; nothing written."""
    from .checkpoints.verify import verify_run

    run = Run(config, mode)
    run.adopt_tree_defaults()
    try:
        source = run.locate_model()
    except (CheckpointError, storage.StorageError):
        source = None  # verify_run reports why
    report = verify_run(run.config, mode, source)
    print(report.text())
    return EXIT_OK if report.ok else EXIT_BAD_INPUT


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


def main(mode: Mode, execute: Callable[[Run], int], argv: list[str] | None = None) -> int:
    """Parse the command line, run `execute`, and turn every known failure into its exit code."""
    logging.basicConfig(level=os.environ.get("V2W_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = parse(mode, argv)
    except (UsageError, RunConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # nothing names where to write yet: no result.json
        return EXIT_BAD_INPUT
    return run_program(config, mode, execute).code


def run_program(config: RunConfig, mode: Mode, execute: Callable[[Run], int], warm: Warm | None = None) -> Outcome:
    """Run `execute` on a parsed configuration (with a pool worker's models when `warm` is given); every known
    failure becomes its exit code. `cancel.Cancelled` goes through to the caller (the worker)."""
    storage.use_input_hosts(config.input_hosts)
    # From the process's (or the launcher's) start; on a pool's worker from the run's own start (nothing loads)
    reset_cold_start(time.time() if warm is not None else None)
    if config.verify_only:
        return Outcome(verify_only(config, mode), None)
    run = Run(config, mode, warm)
    try:
        run.open_target()
        run.adopt_tree_defaults()
        code = execute(run)
        return Outcome(code, run.message)
    except ForeignOutputError as exc:  # never overwrite the other run's result
        return Outcome(run.fail(str(exc), EXIT_BAD_INPUT, write_result=False), run.message)
    except GuardrailError as exc:
        return Outcome(run.fail(f"guardrail error, nothing generated: {exc}", EXIT_GUARDRAIL), run.message)
    except storage.StorageError as exc:
        return Outcome(run.fail(str(exc), EXIT_RETRYABLE if exc.retryable else EXIT_BAD_INPUT), run.message)
    except BAD_INPUT as exc:
        return Outcome(run.fail(str(exc), EXIT_BAD_INPUT), run.message)
    finally:
        run.close()


__all__ = ["BAD_INPUT", "EXIT_BAD_INPUT", "EXIT_GUARDRAIL", "EXIT_OK", "EXIT_RETRYABLE", "EXIT_SOME_FAILED",
           "ForeignOutputError", "Outcome", "RefinerError", "Run", "Warm", "build_guardrail", "main", "run_program",
           "verify_only", "versions"]
