"""The real operator, run with the chart's arguments and settings under its ServiceAccount's token: the
chart's RBAC is enough for kopf and our handlers (no Forbidden), in both modes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import yaml

from tests.chart.helm import CHART, Helm

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, proc: subprocess.Popen, log, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the operator exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()}")
        try:
            found = check()
        except (OSError, subprocess.CalledProcessError):
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not seen within {timeout:.0f}s; operator log:\n{log.read_text()[-4000:]}")


@pytest.mark.parametrize("mode, backend", [("cluster", "pytorchjob"), ("namespaced", "pytorchjob"), ("cluster", "auto")])
def test_operator_works_with_exactly_the_charts_permissions(crds_applied, helm: Helm, tmp_path, mode, backend):
    """backend auto, where only Trainer's CRDs are served: the operator reads the CRDs, picks TrainJob and
    watches TrainJobs, all with the chart's rights for that backend."""
    kube = crds_applied
    tag = uuid.uuid4().hex[:6]
    release, ns, jobs_ns = f"v2w-{tag}", f"v2w-sys-{tag}", f"jobs-{tag}"
    values = {"watchNamespaces": [jobs_ns]} if mode == "namespaced" else {}
    values["backend"] = backend
    if backend != "pytorchjob":
        import stack
        stack.install_trainer_crds(kube)
        values["trainer"] = {"runtimeName": f"{release}-runtime"}
    sa = f"{release}-video2world-operator"
    kube.kubectl("create", "namespace", jobs_ns)
    proc = None
    log = tmp_path / "operator.log"
    try:
        helm.run("install", release, str(CHART), "--namespace", ns, "--create-namespace",
                 "-f", str(helm.values_file(values)), kubeconfig=kube.kubeconfig)
        deployment = json.loads(kube.kubectl("get", "-n", ns, f"deployment/{sa}", "-o", "json").stdout)
        container = deployment["spec"]["template"]["spec"]["containers"][0]

        token = kube.kubectl("create", "token", sa, "-n", ns, "--duration=10m").stdout.strip()
        kubeconfig = kube.write_kubeconfig(tmp_path / "operator.kubeconfig", {"token": token}, name=sa)

        # The chart's own arguments and environment; only the listening addresses move to free loopback ports.
        health_port, metrics_port = free_port(), free_port()
        args = [f"--liveness=http://127.0.0.1:{health_port}/healthz" if a.startswith("--liveness=") else a
                for a in container["args"]]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("V2W_", "KUBERNETES_"))}
        env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
        env.update(KUBECONFIG=str(kubeconfig), V2W_METRICS_PORT=str(metrics_port), POD_NAMESPACE=ns)
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", *args], env=env, cwd=tmp_path,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2).status == 200,
                 "kopf's /healthz", proc, log)

        job = {"apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldJob",
               "metadata": {"name": "rbac-probe", "namespace": jobs_ns},
               "spec": {"input": {"uri": "s3://v2w-inputs/bus.jpg", "prompt": "a bus"},
                        "output": {"uri": "s3://v2w-results/jobs", "credentialsSecret": {"name": "absent-s3"}}}}
        # The installed admission policy, at its defaults: no ServiceAccount but default.
        other_sa = {**job, "spec": {**job["spec"], "scheduling": {"serviceAccountName": "admin"}}}
        # (A dry run, again until the API server has loaded the new policy: within seconds.)
        refused = wait_for(lambda: kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(other_sa),
                                                check=False).stderr, "the admission policy refusing", proc, log, 30)
        assert ("denied request: spec.scheduling.serviceAccountName: ServiceAccount admin is not allowed"
                in refused), refused
        applied = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(job), check=False)
        assert applied.returncode == 0, applied.stderr

        def refused_for_missing_secret():
            status = json.loads(kube.kubectl("get", "-n", jobs_ns, "v2wjob/rbac-probe", "-o", "json").stdout).get("status") or {}
            accepted = [c for c in status.get("conditions", []) if c["type"] == "Accepted"]
            return accepted and accepted[0]["reason"] == "SecretMissing" and status

        # Reading the Secret (404, not 403), patching the status and posting an event all took the SA's rights.
        status = wait_for(refused_for_missing_secret, "status Accepted=False/SecretMissing", proc, log)
        assert status["phase"] == "Pending" and "absent-s3" in status["message"]

        def event_posted():
            events = json.loads(kube.kubectl("get", "events", "-n", jobs_ns, "-o", "json",
                                             "--field-selector", "involvedObject.name=rbac-probe").stdout)["items"]
            return [e for e in events if e["reason"] == "SecretMissing"]

        wait_for(event_posted, "a SecretMissing event", proc, log)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "v2w_reconcile_errors_total" in metrics

        # A pool: its workers' ServiceAccount, RoleBinding (to the chart's worker role, which the operator may bind
        # and no other) and Deployment, server-side applied under the SA's rights; and the pool's status.
        pool = {"apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldPool",
                "metadata": {"name": "rbac-pool", "namespace": jobs_ns},
                "spec": {"replicas": 1, "output": {"credentialsSecret": {"name": "absent-s3"}}}}
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(pool))

        def workers_made():
            got = kube.kubectl("get", "-n", jobs_ns, "deployment/v2wpool-rbac-pool", "serviceaccount/v2wpool-rbac-pool",
                               "rolebinding/v2wpool-rbac-pool", "-o", "json", check=False)
            return json.loads(got.stdout)["items"] if got.returncode == 0 else None

        deployment, _, binding = wait_for(workers_made, "the pool's workers", proc, log)
        assert binding["roleRef"]["name"] == f"{release}-video2world-operator-pool-worker"
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "v2wpool-rbac-pool"
        wait_for(lambda: (json.loads(kube.kubectl("get", "-n", jobs_ns, "v2wpool/rbac-pool", "-o", "json").stdout)
                          .get("status") or {}).get("selector"), "the pool's status", proc, log)
        kube.kubectl("delete", "-n", jobs_ns, "v2wpool/rbac-pool", "--timeout=60s")

        # Deleted while the operator runs, so that it releases any finalizer it set.
        kube.kubectl("delete", "-n", jobs_ns, "v2wjob/rbac-probe", "--timeout=60s")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        helm.run("uninstall", release, "--namespace", ns, kubeconfig=kube.kubeconfig, check=False)
        for name in (ns, jobs_ns):
            kube.kubectl("delete", "namespace", name, "--wait=false", check=False)

    text = log.read_text()
    # auto takes PyTorchJob where its CRD is served (another test of the session may have applied it), else TrainJob.
    pytorchjobs = kube.kubectl("get", "crd", "pytorchjobs.kubeflow.org", check=False).returncode == 0
    expected = "TrainJob" if backend == "auto" and not pytorchjobs else "PyTorchJob"
    assert f"jobs run as {expected}s" in text, text[-2000:]
    denied = [line for line in text.splitlines()
              if "Forbidden" in line or " 403" in line or "Not enough permissions" in line]
    assert not denied, "the operator was refused something:\n" + "\n".join(denied)
