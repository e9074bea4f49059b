"""`v2w-launch`: torchrun whose exit code is the failing worker's, so the ExitCode restart policy can read it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WORKER = """
import os, signal, sys
code = int(os.environ["EXIT_WITH"])
if code < 0:
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


@pytest.mark.parametrize("worker_exit, container_exit", [(0, 0), (2, 2), (3, 3), (138, 138), (-9, 137), (-15, 143)])
def test_the_container_exits_with_the_workers_code(tmp_path, worker_exit, container_exit):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env["EXIT_WITH"] = str(worker_exit)
    proc = subprocess.run([sys.executable, "-m", "v2w_runtime.launch", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == container_exit, proc.stderr[-2000:]
    if container_exit:
        assert f"a worker failed with exit code {container_exit}" in proc.stderr


def test_a_terminated_launcher_stops_its_workers_and_exits_143(tmp_path):
    import signal
    import time

    script = tmp_path / "worker.py"
    started = tmp_path / "started"
    script.write_text(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(120)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    proc = subprocess.Popen([sys.executable, "-m", "v2w_runtime.launch", "--standalone", "--nproc_per_node", "1",
                             str(script)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # as the kubelet stops a container: its first process
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by signal 15" in err and "Traceback" not in err
