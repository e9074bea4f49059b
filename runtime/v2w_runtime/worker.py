"""`python -m v2w_runtime.worker --config WORKER_CONFIG [runtime flags]`: a worker of a `Video2WorldPool`.

Started like the other programs (`v2w-launch --module v2w_runtime.worker ...`), it loads the pool's models once
(the same `Run` machinery as a job's pod: the model located, the ranks started, guardrail, refiner, generator
and the critic when the pool has one), says so (`$V2W_READY_FILE`, which the pod's readiness probe looks
for), and then serves its pool's jobs one after another:

    claim the oldest free Lease of the pool (leases.py) -> its run arguments through the runtime's own parser
    (torchrun's, then the program's) -> `mismatches` against what is loaded (a job the worker cannot serve
    fails with exit code 2, naming the settings) -> the program (video2world or bestofn) on the loaded models,
    writing progress.json and result.json to the job's prefix as a pod would -> release with the outcome

While a job runs, a thread renews its Lease every `renewSeconds`. When the job is deleted (404), suspended, or
the claim was lost (the worker was cut off longer than the Lease's duration and another took it), the run is
stopped between two sampler steps (cancel.py); what it finished stays for the next attempt. A suspended job is
released without an outcome; the worker then takes the next job.

With several GPUs (`parallelism.gpus` > 1, under torchrun) rank 0 claims and renews and hands the run
arguments to every rank; all ranks run the job; rank 0 releases. Such a worker cannot stop a run between two
steps without every rank agreeing, so it stops by exiting (the container restarts and loads again).

SIGTERM stops the current run, releases its Lease without an outcome (another worker takes it at once) and
exits 0. Exit codes: 0 stopped; 2 bad worker configuration; 3 the guardrail cannot load; 1 the models cannot
load or an unexpected error (the Deployment restarts the pod).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from v2w_api.run import RunConfig, RunConfigError, RunOutput
from v2w_api.spec import BestOfNSpec
from v2w_api.worker import WorkerConfig, describe_mismatches, mismatches

from . import cancel
from .cli import FLAGS, UsageError, build_parser
from .interfaces import GuardrailError
from .leases import Claim, LeaseClient, RenewResult, load_incluster_api
from .runner import (EXIT_BAD_INPUT, EXIT_GUARDRAIL, EXIT_OK, EXIT_SOME_FAILED, Mode, Outcome, Run, Warm,
                     run_program)

log = logging.getLogger("v2w_runtime.worker")

READY_FILE_ENV = "V2W_READY_FILE"
# The programs a pooled job may name (`--module` of its run arguments).
PROGRAMS: dict[str, Mode] = {"v2w_runtime.video2world": "video2world", "v2w_runtime.bestofn": "bestofn"}
FAILED_CODES = (1, 2, 3)  # the runner's permanent failures: the job fails (a pod's ExitCode policy does alike)
IDLE_WAIT_S = 2.0  # longest wait for a Lease change while idle (a claim that expires makes no event)
EXIT_STOPPED_RUN = 143  # a multi-GPU worker that had to stop a run exits, as if it had been terminated


# -- the job's run arguments, read as a pod reads its container's arguments --------------------------------------


def parse_run_args(run_args: list[str]) -> tuple[Mode, RunConfig]:
    """The program and run configuration of a Lease's run arguments (`--module M --config YAML *flags`): torchrun's
    parser, as `v2w-launch` reads them, then the program's own (`cli.parse`). UsageError / RunConfigError."""
    from torch.distributed.run import parse_args

    from .cli import parse

    if not isinstance(run_args, list) or not all(isinstance(a, str) for a in run_args):
        raise UsageError("the run arguments are not a list of strings")
    try:
        args = parse_args(list(run_args))
    except SystemExit:
        raise UsageError("the run arguments are not torchrun's (see the worker's log)") from None
    if not args.module or args.training_script not in PROGRAMS:
        raise UsageError(f"the run arguments name no program of this runtime ({args.training_script!r})")
    mode = PROGRAMS[args.training_script]
    try:
        return mode, parse(mode, list(args.training_script_args))
    except SystemExit:  # argparse refused a flag (it printed why)
        raise UsageError("the run arguments hold a flag the program does not know") from None


def worker_config(argv: list[str] | None) -> WorkerConfig:
    """The worker's configuration: `--config` (a file or the YAML itself) with the runtime flags after it (the
    platform's `runtime.extraArgs`, which the pool's jobs carry too) set into the groups the worker loads."""
    parser = argparse.ArgumentParser(prog="python -m v2w_runtime.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, metavar="FILE_OR_YAML")
    args, extra = parser.parse_known_args(argv)
    text = args.config
    if "\n" not in text and not text.lstrip().startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise RunConfigError(f"--config {args.config}: cannot read the file ({exc.strerror or exc})") from None
    config = WorkerConfig.from_yaml(text, "--config")
    if not extra:
        return config
    try:
        given = vars(build_parser("video2world").parse_args(extra))
    except SystemExit:
        raise UsageError(f"unknown runtime flags: {' '.join(extra)}") from None
    data = config.model_dump(mode="json", by_alias=False, exclude_none=True)
    groups = {"model", "generation", "prompt_refiner", "guardrail", "parallelism", "performance", "debug"}
    by_dest = {flag.dest: flag for flag in FLAGS}
    for dest, value in given.items():
        flag = by_dest.get(dest)
        if flag is None or flag.path.split(".")[0] not in groups:
            continue
        *path, name = flag.path.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return WorkerConfig.parse(data, "--config with the runtime flags")


def loading_config(worker: WorkerConfig) -> RunConfig:
    """The pool's settings in the form `Run` loads from. It names no input and is never run (hence built
    without the checks of a run's configuration)."""
    return RunConfig.model_construct(
        model=worker.model, generation=worker.generation, prompt_refiner=worker.prompt_refiner,
        guardrail=worker.guardrail, parallelism=worker.parallelism, performance=worker.performance,
        best_of_n=BestOfNSpec(critic=worker.critic) if worker.critic is not None else None,
        output=RunOutput.model_construct(uri="."), debug=worker.debug, input_hosts=worker.input_hosts,
    )


def load(worker: WorkerConfig, pod: str) -> Warm:
    """Everything the pool's jobs need, loaded once (on every rank)."""
    run = Run(loading_config(worker), "bestofn" if worker.critic is not None else "video2world")
    run.adopt_tree_defaults()
    ctx = run.start_parallel(num_videos=1)
    generator = run.load_generator()
    if worker.critic is not None:  # its model (the refiner's when both are the same checkpoint) stays in memory
        run.qwen(run.config.critic_checkpoint, str(ctx.device))
    return Warm(ctx=ctx, generator=generator, model_source=run.locate_model(), qwen=run._qwen, pod=pod)


# -- one job ----------------------------------------------------------------------------------------------------


class Renewer(threading.Thread):
    """Renews a claim every `every` seconds until stopped, or until the claim ends (`ended`), then calls
    `on_end`. A claim not renewed for the Lease's duration (the API server away) is taken as lost."""

    def __init__(self, leases: LeaseClient, claim: Claim, every: float, duration: float,
                 on_end: Callable[[RenewResult], None]) -> None:
        super().__init__(name=f"renew-{claim.name}", daemon=True)
        self.leases, self.claim, self.every, self.duration, self.on_end = leases, claim, every, duration, on_end
        self.ended: RenewResult | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        last = time.monotonic()
        while not self._halt.wait(self.every):
            result = self.leases.renew(self.claim)
            if result is RenewResult.RENEWED:
                last = time.monotonic()
                continue
            if result is RenewResult.FAILED:
                if time.monotonic() - last <= self.duration:
                    continue
                result = RenewResult.LOST
            if self._halt.is_set():
                return
            self.ended = result
            self.on_end(result)
            return

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


STOP_REASONS = {
    RenewResult.DELETED: "the job was deleted",
    RenewResult.SUSPENDED: "the job was suspended",
    RenewResult.LOST: "the claim was lost to another worker",
}


class Worker:
    """The serving loop of one worker process (every rank runs one; rank 0 alone talks to the API server)."""

    def __init__(self, config: WorkerConfig, warm: Warm, leases: LeaseClient | None) -> None:
        self.config = config
        self.warm = warm
        self.leases = leases
        self.ctx = warm.ctx
        self.leader = warm.ctx.layout.is_global_leader
        self.multi = warm.ctx.distributed
        self.stopping = False
        self.claim: Claim | None = None

    # rank 0: the next job
    def next_claim(self, wait_s: float) -> Claim | None:
        deadline = time.monotonic() + wait_s
        while not self.stopping:
            try:
                claim = self.leases.claim()
            except Exception as exc:  # the API server away: try again shortly
                log.warning("listing the pool's leases failed: %s", getattr(exc, "status", None) or type(exc).__name__)
                claim = None
                time.sleep(1.0)
            if claim is not None:
                return claim
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.leases.wait_for_change(min(left, IDLE_WAIT_S))
        return None

    def serve_forever(self, keepalive_s: float = 30.0) -> int:
        while True:
            claim = self.next_claim(keepalive_s) if self.leader else None
            if self.multi:  # every rank learns what rank 0 claimed (None: nothing yet; "stop": shut down)
                message = self.ctx.broadcast(("stop", None) if self.stopping else ("job", claim.run_args if claim else None))
            else:
                message = ("stop", None) if self.stopping else ("job", claim.run_args if claim else None)
            if message[0] == "stop":
                return EXIT_OK
            if message[1] is None:
                continue
            self.serve(claim, message[1])

    def serve(self, claim: Claim | None, run_args: list[str]) -> None:
        """One job: check it, run it on the loaded models, release its Lease with the outcome (rank 0)."""
        self.claim = claim
        started = time.monotonic()
        if self.leader:
            log.info("claimed %s (attempt %d)", claim.name, claim.transitions)
        try:
            mode, config = parse_run_args(run_args)
        except (UsageError, RunConfigError) as exc:
            self.release(claim, "Failed", EXIT_BAD_INPUT, f"bad run arguments: {exc}", started)
            return
        differ = mismatches(self.config, config)
        if differ:
            self.release(claim, "Failed", EXIT_BAD_INPUT, describe_mismatches(self.config.pool, differ), started)
            return
        cancel.clear()
        renewer = None
        if self.leader:
            renewer = Renewer(self.leases, claim, self.config.renew_seconds, self.config.lease_duration_seconds,
                              self._claim_ended)
            renewer.start()
        self.warm.jobs_served += 1
        outcome: Outcome | None = None
        unexpected: BaseException | None = None
        try:
            outcome = run_program(config, mode, program(mode), self.warm)
        except cancel.Cancelled as exc:
            log.info("stopped %s: %s", claim.name if claim else "the run", exc)
        except Exception as exc:  # noqa: BLE001 - the job fails as its pod's would; this process starts afresh
            unexpected = exc
            log.exception("the run failed unexpectedly")
        finally:
            if renewer is not None:
                renewer.stop()
            cancel.clear()
        if not self.leader:
            if unexpected is not None:
                raise SystemExit(1)
            return
        ended = renewer.ended if renewer else None
        if ended in (RenewResult.DELETED, RenewResult.LOST):
            log.info("released %s: %s", claim.name, STOP_REASONS[ended])
        elif outcome is not None:  # it ran to its end (a suspend seen too late to stop it changes nothing)
            self.release_outcome(claim, outcome, started)
        elif unexpected is not None:
            self.release(claim, "Failed", 1, f"the worker failed: {type(unexpected).__name__}", started)
            raise SystemExit(1)
        else:  # suspended, or this worker is stopping: without an outcome, for another attempt
            why = STOP_REASONS.get(ended) if ended else f"worker {self.warm.pod} stopped"
            self.release(claim, None, None, f"{why}; the run stopped on worker {self.warm.pod}", started)
        self.claim = None

    def release_outcome(self, claim: Claim, outcome: Outcome, started: float) -> None:
        code, message = outcome
        if code == EXIT_OK:
            self.release(claim, "Succeeded", code, message, started)
        elif code in FAILED_CODES:
            self.release(claim, "Failed", code, message or f"the run failed with exit code {code}", started)
        else:  # retryable (storage away): another attempt, on this worker or another
            self.release(claim, None, None, f"exit code {code}, to be tried again: {message or ''}".rstrip(": "), started)

    def release(self, claim: Claim | None, outcome: str | None, code: int | None, message: str | None,
                started: float) -> None:
        if not self.leader or claim is None:
            return
        done, deadline = False, time.monotonic() + self.config.lease_duration_seconds
        while True:  # the API server away for a moment: keep trying while the claim is still ours
            try:
                done = self.leases.release(claim, outcome, code, message)
                break
            except Exception as exc:  # noqa: BLE001 - urllib3's and the client's errors alike
                if time.monotonic() > deadline:
                    log.warning("could not release %s (%s): its claim runs out instead", claim.name,
                                type(exc).__name__)
                    return
                time.sleep(1.0)
        log.info("released %s: %s%s after %.1fs%s", claim.name, outcome or "without outcome",
                 f" (exit code {code})" if code is not None else "", time.monotonic() - started,
                 "" if done else " (the lease was no longer ours)")

    def _claim_ended(self, result: RenewResult) -> None:
        """From the renewing thread: the job is gone, suspended or taken. Stop the run."""
        reason = STOP_REASONS[result]
        log.info("%s: %s, stopping the run", self.claim.name if self.claim else "job", reason)
        if not self.multi:
            cancel.request(reason)
            return
        if result is RenewResult.SUSPENDED and self.claim is not None:
            self.leases.release(self.claim, None, None, f"{reason}; the run stopped on worker {self.warm.pod}")
        os._exit(EXIT_STOPPED_RUN)  # every rank goes with it (torchrun); the container restarts

    def terminate(self, *_: Any) -> None:
        """SIGTERM / SIGINT: stop the run, let go of the job for another worker, exit."""
        if self.stopping:
            return
        self.stopping = True
        if not self.multi:
            cancel.request(f"worker {self.warm.pod} stopped")
            return
        if self.leader and self.claim is not None:
            self.leases.release(self.claim, None, None, f"worker {self.warm.pod} stopped; the run stopped with it")
        os._exit(EXIT_OK)


def program(mode: Mode) -> Callable[[Run], int]:
    if mode == "bestofn":
        from .bestofn import execute
    else:
        from .video2world import execute
    return execute


# -- the process ------------------------------------------------------------------------------------------------


def identity() -> tuple[str, str]:
    """(pod name, namespace) from the downward API's env, else the host name and the service account's namespace."""
    from .leases import SERVICEACCOUNT_DIR_ENV

    pod = os.environ.get("POD_NAME") or socket.gethostname()
    namespace = os.environ.get("POD_NAMESPACE")
    if not namespace:
        folder = Path(os.environ.get(SERVICEACCOUNT_DIR_ENV) or "/var/run/secrets/kubernetes.io/serviceaccount")
        try:
            namespace = (folder / "namespace").read_text().strip()
        except OSError:
            raise UsageError("the worker's namespace is unknown: set POD_NAMESPACE (downward API)") from None
    return pod, namespace


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("V2W_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = worker_config(argv)
        pod, namespace = identity()
    except (UsageError, RunConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log.info("worker %s of pool %s: loading", pod, config.pool)
    try:
        warm = load(config, pod)
    except GuardrailError as exc:
        print(f"error: guardrail error, nothing can be generated: {exc}", file=sys.stderr)
        return EXIT_GUARDRAIL
    except (UsageError, RunConfigError, ValueError, OSError) as exc:
        print(f"error: cannot load the pool's models: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    warm.ctx.barrier()  # ready once every rank has loaded
    leases = None
    if warm.ctx.layout.is_global_leader:
        leases = LeaseClient(load_incluster_api(), namespace, config.pool, pod, config.lease_duration_seconds)
    worker = Worker(config, warm, leases)
    signal.signal(signal.SIGTERM, worker.terminate)
    signal.signal(signal.SIGINT, worker.terminate)
    ready = os.environ.get(READY_FILE_ENV)
    if ready and warm.ctx.layout.is_global_leader:
        Path(ready).parent.mkdir(parents=True, exist_ok=True)
        Path(ready).write_text(f"{pod}\n")
    log.info("worker %s of pool %s: models loaded, serving namespace %s", pod, config.pool, namespace)
    try:
        return worker.serve_forever()
    finally:
        if ready and warm.ctx.layout.is_global_leader:
            Path(ready).unlink(missing_ok=True)
        log.info("worker %s: stopped after %d job(s)", pod, warm.jobs_served)


if __name__ == "__main__":
    sys.exit(main())
