"""Kueue on the local stack: the real Kueue manager (its webhooks suspend a PyTorchJob that names a queue, its
scheduler admits Workloads within a ClusterQueue's quota) with the operator. More jobs than quota: each waits as
Queued in Kueue's words, they are admitted in the order they came, never two at once, and all succeed; a user's
suspend keeps a queued job out until resumed; a job without a queue is not Kueue's at all.

Kueue is started for this module only (its webhooks are removed again afterwards), against the shared stack."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import pytest

import stack
from tests.e2e.helpers import DISABLED, condition, phase_is

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

GPU = "nvidia.com/gpu"  # what the operator's pods ask for (limits; Kueue takes them as requests)
FLAVOR = "v2w-e2e-gpu"
QUEUED_JOBS = ("q1", "q2", "q3")


@pytest.fixture(scope="module")
def kueue(e2e):
    server = stack.start_kueue(e2e.kube, e2e.workdir / "kueue")
    # As on a cluster where Kueue was there first: the operator finds Workloads at its start and watches them.
    # (kopf notices CRDs that appear later, but may look before the API server's discovery lists the group;
    # the operator then reads a held job's Workload from the API at each poll instead.)
    e2e.restart_operator(kill_signal=15)
    yield server
    stack.stop_kueue(e2e.kube, server)


def make_queue(e2e, ns: str, gpus: int) -> str:
    """A ResourceFlavor, a ClusterQueue with `gpus` GPUs and a LocalQueue `gpus` in `ns`. BestEffortFIFO (the
    default) admits in creation order among jobs that fit, and all fit alike here; StrictFIFO would have Kueue's
    scheduler retry the head of the queue dozens of times a second while it waits."""
    cq = f"cq-{ns}"
    docs = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cq},
         "spec": {"namespaceSelector": {}, "queueingStrategy": "BestEffortFIFO",
                  "resourceGroups": [{"coveredResources": [GPU], "flavors": [
                      {"name": FLAVOR, "resources": [{"name": GPU, "nominalQuota": gpus}]}]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "gpus", "namespace": ns},
         "spec": {"clusterQueue": cq}},
    ]
    e2e.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = e2e.kubectl("get", "clusterqueue", cq, "-o", "json", check=False)
        if out.returncode == 0 and condition(json.loads(out.stdout), "Active") and \
                condition(json.loads(out.stdout), "Active")["status"] == "True":
            return "gpus"
        time.sleep(0.3)
    raise AssertionError(f"ClusterQueue {cq} not Active: {out.stdout[-2000:]}")


def listed(e2e, ns: str, kind: str) -> dict[str, dict]:
    out = e2e.kubectl("get", kind, "-n", ns, "-o", "json", check=False)
    return {o["metadata"]["name"]: o for o in json.loads(out.stdout)["items"]} if out.returncode == 0 else {}


def unsuspended_and_unfinished(pj: dict) -> bool:
    finished = any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
                   for c in (pj.get("status") or {}).get("conditions") or [])
    return not pj["spec"].get("runPolicy", {}).get("suspend") and not finished


@dataclass
class Watch:
    """Samples the namespace's jobs and PyTorchJobs twice a second, in a thread, for the whole test."""

    e2e: object
    ns: str
    stop: threading.Event = field(default_factory=threading.Event)
    samples: list[tuple[float, dict, dict]] = field(default_factory=list)  # (time, jobs, pytorchjobs)

    def run(self) -> None:
        while not self.stop.is_set():
            jobs, pjs = listed(self.e2e, self.ns, "v2wjobs"), listed(self.e2e, self.ns, "pytorchjobs")
            self.samples.append((time.monotonic(), jobs, pjs))
            self.stop.wait(0.5)

    def start(self) -> "Watch":
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def end(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def running_at_once(self, names) -> int:
        """The most PyTorchJobs among `names` that were unsuspended and unfinished in one sample."""
        return max((sum(1 for n in names if n in pjs and unsuspended_and_unfinished(pjs[n]))
                    for _, _, pjs in self.samples), default=0)


def transition(obj: dict, type_: str) -> datetime:
    cond = condition(obj, type_)
    assert cond is not None and cond["status"] == "True", (type_, (obj.get("status") or {}).get("conditions"))
    return datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00"))


def test_more_jobs_than_quota_queue_in_kueues_words_run_one_at_a_time_in_order(e2e, kueue):
    ns = e2e.namespace()
    queue = make_queue(e2e, ns, gpus=1)
    started = time.monotonic()
    watch = Watch(e2e, ns).start()
    try:
        for i, name in enumerate(QUEUED_JOBS):
            e2e.apply(ns, e2e.job("Video2WorldJob", name, {
                "input": {"uri": f"s3://{e2e.bucket}/inputs/input{i}.jpg", "prompt": f"Queued scene {i}."},
                "scheduling": {"queueName": queue}, **DISABLED}))
            time.sleep(1.1)  # distinct creation times (seconds): Kueue orders by them
        # A job without a queue: not Kueue's, so it runs at once although the quota is taken.
        e2e.apply(ns, e2e.job("Video2WorldJob", "free", {
            "input": {"uri": f"s3://{e2e.bucket}/inputs/input0.jpg", "prompt": "No queue."}, **DISABLED}))
        # A fourth queued job, suspended by its user while it waits.
        e2e.apply(ns, e2e.job("Video2WorldJob", "held", {
            "input": {"uri": f"s3://{e2e.bucket}/inputs/input1.jpg", "prompt": "Held back."},
            "scheduling": {"queueName": queue}, **DISABLED}))

        # And one created suspended: its PyTorchJob gets the queue label only when resumed (Kueue would start it).
        e2e.apply(ns, e2e.job("Video2WorldJob", "born", {
            "input": {"uri": f"s3://{e2e.bucket}/inputs/input2.jpg", "prompt": "Born suspended."}, "suspend": True,
            "scheduling": {"queueName": queue}, **DISABLED}))

        # While q1 runs, the others wait as Queued with Kueue's reason, never "set spec.suspend to false".
        e2e.wait_for(ns, "v2wjob", "q1", phase_is("Running", "Succeeded"), what="q1 running")
        # (Until Kueue has made the Workload, a moment, the reason is WaitingForWorkload.)
        q2, _ = e2e.wait_for(ns, "v2wjob", "q2", lambda o: phase_is("Queued")(o) and (condition(o, "Queued") or {})
                             .get("reason") not in (None, "WaitingForWorkload"), timeout=60, what="q2 queued by Kueue")
        queued = condition(q2, "Queued")
        assert queued["status"] == "True" and queued["reason"] == "Pending", queued
        assert "quota" in queued["message"] and GPU in queued["message"], queued
        assert "LocalQueue gpus" in q2["status"]["message"] and "spec.suspend" not in q2["status"]["message"]
        assert condition(q2, "Suspended") is None
        e2e.wait_for(ns, "v2wjob", "held", phase_is("Queued"), timeout=60, what="held queued")
        e2e.kubectl("patch", "v2wjob", "held", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
        try:
            held, _ = e2e.wait_for(ns, "v2wjob", "held", phase_is("Suspended"), timeout=60, what="held suspended")
        except AssertionError as exc:
            events = e2e.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=held").stdout
            workloads = e2e.kubectl("get", "workloads", "-n", ns, "-o", "yaml", check=False).stdout
            raise AssertionError(f"{exc}\nevents:\n{events}\nworkloads:\n{workloads[-6000:]}") from None
        assert condition(held, "Suspended")["status"] == "True"
        # Suspended once its Workload is inactive: Kueue's own way to keep a job out.
        [workload] = [w for w in listed(e2e, ns, "workloads").values()
                      if w["metadata"]["ownerReferences"][0]["name"] == "v2w-held"]
        assert workload["spec"]["active"] is False

        free, _ = e2e.wait_for(ns, "v2wjob", "free", phase_is("Succeeded", "Failed"), what="free done")
        assert free["status"]["phase"] == "Succeeded" and condition(free, "Queued") is None
        done = {}
        for name in QUEUED_JOBS:
            done[name], phases = e2e.wait_for(ns, "v2wjob", name, phase_is("Succeeded", "Failed"), timeout=300,
                                              what=f"{name} done")
            assert done[name]["status"]["phase"] == "Succeeded", done[name]["status"]
            assert condition(done[name], "Queued") is None or condition(done[name], "Queued")["reason"] == "Admitted"
        time.sleep(3)  # the quota is free now: the suspended jobs must still be held
        for name in ("held", "born"):
            assert e2e.get(ns, "v2wjob", name)["status"]["phase"] == "Suspended", name
        born_pj = e2e.get(ns, "pytorchjob", "v2w-born")
        assert "kueue.x-k8s.io/queue-name" not in born_pj["metadata"]["labels"] and born_pj["spec"]["runPolicy"]["suspend"]
        queued_phase = time.monotonic() - started

        for name in ("held", "born"):  # resumed: queued again (one GPU), then run, one after the other
            e2e.kubectl("patch", "v2wjob", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
        for name in ("held", "born"):
            obj, _ = e2e.wait_for(ns, "v2wjob", name, phase_is("Succeeded", "Failed"), what=f"{name} done")
            assert obj["status"]["phase"] == "Succeeded", obj["status"]
        assert e2e.get(ns, "pytorchjob", "v2w-born")["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == queue
    finally:
        watch.end()

    pjs = listed(e2e, ns, "pytorchjobs")
    workloads = {w["metadata"]["ownerReferences"][0]["name"]: w for w in listed(e2e, ns, "workloads").values()}
    order = [f"v2w-{n}" for n in QUEUED_JOBS]
    # Admitted in submission order, each once the previous one had finished (Kueue's Workload conditions).
    admitted = [transition(workloads[n], "Admitted") for n in order]
    assert admitted == sorted(admitted), admitted
    for before, after in zip(order, order[1:]):
        assert transition(workloads[after], "Admitted") >= transition(workloads[before], "Finished"), (before, after)
    assert watch.running_at_once([*order, "v2w-held", "v2w-born"]) == 1, "two queued jobs ran at once"
    # A suspended job's PyTorchJob never ran before it was resumed.
    for name in ("held", "born"):
        ran = [t for t, jobs, p in watch.samples if f"v2w-{name}" in p and unsuspended_and_unfinished(p[f"v2w-{name}"])
               and (jobs.get(name) or {}).get("spec", {}).get("suspend")]
        assert not ran, name
    # Not Kueue's: no queue label, no Workload, and it ran while q2 waited.
    assert "kueue.x-k8s.io/queue-name" not in pjs["v2w-free"]["metadata"].get("labels", {})
    assert "v2w-free" not in workloads
    assert any("v2w-free" in p and unsuspended_and_unfinished(p["v2w-free"])
               and ((jobs.get("q2") or {}).get("status") or {}).get("phase") == "Queued" for _, jobs, p in watch.samples)
    # One Event per phase, Queued included.
    events = json.loads(e2e.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=q2",
                                    "-o", "json").stdout)["items"]
    reasons = [e["reason"] for e in events]
    assert reasons.count("Queued") == 1 and reasons.count("Succeeded") == 1, reasons
    # Nobody suspended q1-q3: none of them ever read Suspended (Kueue's hold is Queued, its start is no resume).
    for name in QUEUED_JOBS:
        seen = {(jobs.get(name) or {}).get("status", {}).get("phase") for _, jobs, _ in watch.samples}
        assert "Suspended" not in seen, (name, seen)
        assert condition(done[name], "Suspended") is None, name
    print(f"three queued jobs done in {queued_phase:.0f}s; all six in {time.monotonic() - started:.0f}s")
