#!/usr/bin/env python3
"""Operator scale check on the local stack: N jobs applied at once.

Measures the time from one `kubectl apply` of N Video2WorldJobs until all N PyTorchJobs exist, and the
operator's peak resident memory (VmHWM). The operator runs with `kopf run` under the chart's RBAC.
No executor runs, so the PyTorchJobs stay pending: this measures the operator, not the runtime.

    python hack/scale.py --jobs 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "localstack"))
import stack  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="v2w-scale-"))
    plane = stack.ControlPlane(stack.build_binaries(), workdir / "kube").start()
    operator = None
    try:
        stack.install_crds(plane, ROOT)
        kubeconfig = stack.install_operator_identity(plane, ROOT / "charts" / "video2world-operator", "v2w-system",
                                                     "v2w-operator", workdir / "operator.kubeconfig")
        plane.kubectl("create", "namespace", "scale")
        plane.kubectl("create", "secret", "generic", "v2w-s3", "-n", "scale", "--from-literal=AWS_ACCESS_KEY_ID=x",
                      "--from-literal=AWS_SECRET_ACCESS_KEY=y")
        operator = stack.start_operator(kubeconfig, {"V2W_METRICS_PORT": "0", "V2W_POLL_INTERVAL_SECONDS": "10"},
                                        workdir / "operator.log")
        time.sleep(8)  # let kopf start its watches
        base = yaml.safe_load((ROOT / "examples" / "video2world-job.yaml").read_text())
        docs = []
        for i in range(args.jobs):
            doc = json.loads(json.dumps(base))
            doc["metadata"] = {"name": f"job-{i:04d}"}
            docs.append(doc)
        started = time.monotonic()
        plane.kubectl("apply", "-n", "scale", "-f", "-", input=yaml.safe_dump_all(docs), timeout=300)
        applied = time.monotonic() - started
        count = 0
        while time.monotonic() - started < args.timeout:
            out = plane.kubectl("get", "pytorchjobs", "-n", "scale", "-o", "name").stdout.split()
            count = len(out)
            if count >= args.jobs:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        report = {"jobs": args.jobs, "apply_seconds": round(applied, 2), "all_pytorchjobs_seconds": round(elapsed, 2),
                  "pytorchjobs": count, "operator_peak_rss_mib": round(peak_rss_mib(operator.proc.pid), 1)}
        print(json.dumps(report))
        return 0 if count >= args.jobs else 1
    finally:
        if operator:
            operator.stop()
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
