"""`python -m v2w_runtime.launch [torchrun's arguments]`: torchrun, with the failing worker's exit code as its own.

torchrun exits 1 whenever a worker fails, so a pod whose runtime refused a bad input (exit 2) and a pod whose
worker was killed for memory (-9) look the same to whoever restarts pods. The training-operator's `ExitCode`
restart policy tells permanent failures from retryable ones by the container's exit code, so the runtime
pods start through this launcher: it runs torchrun in-process and exits with the exit code of the first
worker that failed (a worker killed by signal N exits 128 + N, as a shell reports it).

While the workers start, the launcher fetches and reads the run's model files (`prefetch.py`), so that the
workers' load finds them on the node and in memory.

The runtime's own codes (runner.py): 1 some videos failed, 2 bad input, 3 guardrail unavailable: permanent;
138 a transient failure (storage unreachable), 137 / 143 killed: retryable.
"""

from __future__ import annotations

import sys


def worker_exit_code(error) -> int:
    """The exit code of the first failed worker of a torchrun ChildFailedError, as a shell reports it."""
    _, failure = error.get_first_failure()
    code = int(failure.exitcode)
    return 128 - code if code < 0 else (code or 1)


def main(argv: list[str] | None = None) -> int:
    from .coldstart import export_start_time

    export_start_time()  # the workers' cold-start clock starts with this process (coldstart.py)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(argv)
    if args.module:  # the model's files fetched and read while the workers import (prefetch.py)
        from .prefetch import start

        start(args.training_script, list(args.training_script_args))
    try:
        run(args)
    except ChildFailedError as error:
        code = worker_exit_code(error)
        print(f"v2w launch: a worker failed with exit code {code}", file=sys.stderr)
        return code
    except SignalException as stopped:
        # Terminated (the pod deleted, preempted): torchrun has passed the signal on to the workers and waited
        # for them; the container exits as a terminated process does (143 for SIGTERM), not with a traceback.
        code = 128 + int(stopped.sigval)
        print(f"v2w launch: stopped by signal {int(stopped.sigval)}", file=sys.stderr)
        return code
    return 0


def main_exit() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
