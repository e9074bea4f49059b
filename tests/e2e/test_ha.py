"""Two operators as the chart runs them with `replicas: 2` (kopf `--peering`, the chart's RBAC for it): one acts,
the other waits paused. SIGKILL the acting one mid-job: the standby takes over within 15 s, the running job
keeps one PyTorchJob and goes on to Succeeded with its whole status, and each phase is announced once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stack
from tests.e2e.conftest import CHART, OPERATOR_NS
from tests.e2e.helpers import DISABLED, condition, phase_is

pytestmark = [pytest.mark.cluster, pytest.mark.s3]

RELEASE = "v2w-ha"
SERVICE_ACCOUNT = "v2w-operator-ha"
PEERING = f"{RELEASE}-video2world-operator"  # the chart's default: the release's full name
LIFETIME_SECONDS = 10  # the chart's default peering.lifetimeSeconds
TAKEOVER_LIMIT_SECONDS = 15


def chart_ha_manifests(kube: stack.ControlPlane) -> str:
    """ServiceAccount, RBAC and the ClusterKopfPeering as `helm template --set replicas=2` renders them."""
    out = subprocess.run(
        [str(kube.bin_dir / "helm"), "template", RELEASE, str(CHART), "--namespace", OPERATOR_NS,
         "--set", f"serviceAccount.name={SERVICE_ACCOUNT}", "--set", "replicas=2",
         "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml",
         "--show-only", "templates/peering.yaml"],
        check=True, capture_output=True, text=True)
    return out.stdout


def start_replica(kubeconfig: Path, env: dict[str, str], log: Path, pod: str) -> stack.Server:
    """One replica, run as the chart's Deployment runs it with replicas > 1."""
    full_env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig), "POD_ID": pod,
                "V2W_METRICS_PORT": str(stack.free_port()), "V2W_PEERING_LIFETIME_SECONDS": str(LIFETIME_SECONDS)}
    server = stack.Server(pod, [sys.executable, "-m", "kopf", "run", f"--peering={PEERING}", "--liveness",
                                f"http://127.0.0.1:{stack.free_port()}/healthz", "-m", "v2w_operator.handlers",
                                "--all-namespaces"], log, full_env)
    server.start()
    return server


def wait_log(server: stack.Server, text: str, timeout: float = 90) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log.exists() and text in server.log.read_text(errors="replace"):
            return time.monotonic()
        assert server.alive(), f"{server.name} died:\n{server.log_tail()}"
        time.sleep(0.2)
    raise AssertionError(f"{server.name}: no {text!r} in {timeout}s:\n{server.log_tail()}")


def peers(e2e) -> set[str]:
    """The replicas with a keep-alive in the peering object."""
    out = e2e.kubectl("get", "clusterkopfpeering", PEERING, "-o", "json").stdout
    return set((json.loads(out).get("status") or {}).keys())


def events_of(e2e, namespace: str, name: str) -> list[str]:
    out = e2e.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                      "-o", "json").stdout
    return [e["reason"] for e in json.loads(out)["items"] for _ in range(e.get("count") or 1)]


def test_killing_the_acting_operator_hands_over_within_15s_without_duplicates_or_lost_status(e2e):
    e2e.operator.stop()  # the session's --standalone operator would act beside the pair
    replicas: list[stack.Server] = []
    try:
        e2e.kubectl("apply", "-f", "-", input=chart_ha_manifests(e2e.kube))
        kubeconfig = stack.service_account_kubeconfig(e2e.kube, OPERATOR_NS, SERVICE_ACCOUNT,
                                                      e2e.workdir / "operator-ha.kubeconfig")
        logs = e2e.workdir / "logs"
        active = start_replica(kubeconfig, e2e.operator_env, logs / "ha-a.log", "ha-a")
        replicas.append(active)
        wait_log(active, "Resuming operations")  # alone in the peering: it acts
        standby = start_replica(kubeconfig, e2e.operator_env, logs / "ha-b.log", "ha-b")
        replicas.append(standby)
        deadline = time.monotonic() + 60
        while peers(e2e) != {"ha-a", "ha-b"}:  # the standby is in the peering; the older one outranks it
            assert time.monotonic() < deadline and standby.alive(), f"peers {peers(e2e)}:\n{standby.log_tail()}"
            time.sleep(0.2)
        assert "Resuming operations" not in standby.log.read_text(errors="replace")

        ns = e2e.namespace()
        batch = [{"input": f"s3://{e2e.bucket}/inputs/input{i}.jpg", "prompt": f"Shot {i}.", "output": f"ha-{i}"}
                 for i in range(3)]
        e2e.apply(ns, e2e.job("Video2WorldJob", "survivor", {"batch": batch, **DISABLED}))
        e2e.wait_for(ns, "v2wjob", "survivor", phase_is("Running"), timeout=120, what="Running")

        active.stop(sig=9)
        killed = time.monotonic()
        # A job applied right after the kill: only an acting operator accepts it.
        e2e.apply(ns, e2e.job("Video2WorldJob", "probe", {"input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg",
                                                                     "prompt": "A probe."}, **DISABLED}))
        e2e.wait_for(ns, "v2wjob", "probe", lambda o: (o.get("status") or {}).get("pytorchJobName"), timeout=60,
                     what="accepted by the standby")
        takeover = time.monotonic() - killed
        resumed = wait_log(standby, "Resuming operations", timeout=1) - killed
        print(f"\ntakeover: standby resumed {resumed:.1f}s after the SIGKILL, accepted a new job after {takeover:.1f}s")

        obj, _ = e2e.wait_for(ns, "v2wjob", "survivor", phase_is("Succeeded", "Failed"), what="a final phase")
        status = obj["status"]
        assert status["phase"] == "Succeeded", status
        assert len(status["outputs"]) == 3 and status["progress"]["videosDone"] == 3
        assert condition(obj, "Accepted")["status"] == "True" and condition(obj, "Succeeded")["status"] == "True"
        assert status["startTime"] and status["completionTime"] and status["resultUri"]
        pjs = json.loads(e2e.kubectl("get", "pytorchjobs", "-n", ns, "-o", "json").stdout)["items"]
        assert sorted(p["metadata"]["name"] for p in pjs) == ["v2w-probe", "v2w-survivor"]
        reasons = events_of(e2e, ns, "survivor")
        assert reasons.count("ChildCreated") == 1 and reasons.count("Succeeded") == 1, reasons
        assert reasons.count("Running") <= 1, reasons
        assert standby.alive()
        assert takeover <= TAKEOVER_LIMIT_SECONDS, f"takeover took {takeover:.1f}s"
    finally:
        for server in replicas:
            server.stop()
        e2e.operator = stack.start_operator(e2e.operator_kubeconfig, e2e.operator_env, e2e.operator.log)
