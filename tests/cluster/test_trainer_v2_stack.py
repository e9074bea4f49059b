"""Kubeflow Trainer v2 on the local stack, without the operator: a TrainJob on a ClusterTrainingRuntime with the
torch ML policy becomes a JobSet, batch Jobs and Pods (kube-controller-manager's job controller), which the
executor runs. Two nodes of torchrun really rendezvous over the PET_* env Trainer gives them and the TrainJob
reads Complete; a container that exits 3 leaves the TrainJob Failed with that exit code in its words; a suspended
TrainJob has no pods until it is resumed."""

from __future__ import annotations

import json
import time
import uuid

import pytest

import stack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RUNTIME = stack.LOCAL_TORCH_RUNTIME
# Each worker torchrun starts checks the env Trainer set for torchrun, joins the gloo group over the rendezvous
# torchrun made from it, and sums its rank with the others'.
WORKER = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank)])
dist.all_reduce(total)
print(f"rank={rank} world={world} sum={total.item():g} node_rank={os.environ['PET_NODE_RANK']} "
      f"nnodes={os.environ['PET_NNODES']} nproc={os.environ['PET_NPROC_PER_NODE']}", flush=True)
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def runtime(kube, trainer_v2, pod_executor):
    kube.kubectl("apply", "-f", "-", input=json.dumps(stack.torch_runtime(RUNTIME)))
    yield RUNTIME
    kube.kubectl("delete", "clustertrainingruntime", RUNTIME, "--ignore-not-found", check=False)


@pytest.fixture
def namespace(kube):
    name = f"tj-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def train_job(name: str, command: list[str], num_nodes: int = 1, suspend: bool = False) -> dict:
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": name},
            "spec": {"runtimeRef": {"name": RUNTIME}, "suspend": suspend,
                     "trainer": {"command": command, "numNodes": num_nodes, "numProcPerNode": 1}}}


def get(kube, namespace: str, kind: str, name: str) -> dict:
    return json.loads(kube.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout)


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def wait_condition(kube, trainer_v2, pod_executor, namespace: str, name: str, wanted: str,
                   timeout: float = 240) -> dict:
    """The TrainJob once its condition `wanted` is True; fails early when the other end state comes instead."""
    other = {"Complete": "Failed", "Failed": "Complete"}[wanted]
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = get(kube, namespace, "trainjob", name)
        if (c := condition(job, wanted)) and c["status"] == "True":
            return job
        if (c := condition(job, other)) and c["status"] == "True":
            break
        time.sleep(0.5)
    pods = kube.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    raise AssertionError(f"TrainJob {namespace}/{name} not {wanted}: {json.dumps(job.get('status'), indent=1)}\n"
                         f"pods:\n{pods}\nexecutor:\n{pod_executor.log_tail(20)}\n{trainer_v2.log_tail(20)}")


def pod_logs(pod_executor, namespace: str, name: str) -> dict[str, str]:
    logs = pod_executor.log.parent  # the executor's log beside those of the pods
    return {p.name: p.read_text(errors="replace") for p in sorted(logs.glob(f"{namespace}_{name}_*.log"))}


def test_two_node_torchrun_completes(kube, trainer_v2, pod_executor, runtime, namespace):
    kube.kubectl("apply", "-n", namespace, "-f", "-",
                 input=json.dumps(train_job("ddp", ["torchrun", "--no-python", "python", "-c", WORKER], num_nodes=2)))
    job = wait_condition(kube, trainer_v2, pod_executor, namespace, "ddp", "Complete")
    assert condition(job, "Failed") is None or condition(job, "Failed")["status"] != "True"
    logs = pod_logs(pod_executor, namespace, "ddp")
    assert sorted(logs) == [f"{namespace}_ddp_node-0-0.log", f"{namespace}_ddp_node-0-1.log"], sorted(logs)
    text = "\n".join(logs.values())
    for rank in (0, 1):
        # Both nodes joined one group of two (the sum of ranks 0 and 1) with the env torchrun was given.
        assert f"rank={rank} world=2 sum=1 node_rank={rank} nnodes=2 nproc=1" in text, text[-3000:]
    jobs = json.loads(kube.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    assert [(j["metadata"]["name"], j["status"].get("succeeded")) for j in jobs] == [("ddp-node-0", 2)]


def test_failing_container_fails_the_trainjob_with_its_exit_code(kube, trainer_v2, pod_executor, runtime, namespace):
    kube.kubectl("apply", "-n", namespace, "-f", "-",
                 input=json.dumps(train_job("bad", ["python", "-c", "import sys; sys.exit(3)"])))
    job = wait_condition(kube, trainer_v2, pod_executor, namespace, "bad", "Failed")
    failed = condition(job, "Failed")
    batch = get(kube, namespace, "job", "bad-node-0")
    job_failed = condition(batch, "Failed")
    assert job_failed and job_failed["reason"] == "PodFailurePolicy", batch.get("status")
    assert "exit code 3" in job_failed["message"], job_failed
    assert failed and "bad-node-0" in failed["message"], failed  # the TrainJob names the failed Job


def test_suspended_trainjob_has_no_pods_until_resumed(kube, trainer_v2, pod_executor, runtime, namespace):
    kube.kubectl("apply", "-n", namespace, "-f", "-",
                 input=json.dumps(train_job("held", ["python", "-c", "print('ran')"], suspend=True)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # Trainer made its JobSet, suspended
        out = kube.kubectl("get", "jobset", "held", "-n", namespace, "-o", "json", check=False)
        if out.returncode == 0 and json.loads(out.stdout)["spec"].get("suspend"):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no suspended JobSet: {out.stdout or out.stderr}\n{trainer_v2.log_tail(20)}")
    time.sleep(5)  # time enough for the job controller to have made pods, were the Jobs not suspended
    pods = json.loads(kube.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert pods == [], [p["metadata"]["name"] for p in pods]
    job = get(kube, namespace, "trainjob", "held")
    assert (condition(job, "Suspended") or {}).get("status") == "True", job.get("status")
    kube.kubectl("patch", "trainjob", "held", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_condition(kube, trainer_v2, pod_executor, namespace, "held", "Complete")
    assert "ran" in "\n".join(pod_logs(pod_executor, namespace, "held").values())
