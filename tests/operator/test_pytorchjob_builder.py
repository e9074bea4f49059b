"""The PyTorchJob builder: names, owner, replicas, GPUs, secrets by reference, PVCs, runtime flags."""

from __future__ import annotations

import yaml

from tests.api.cases import load_example
from v2w_operator import pytorchjob
from v2w_operator.api import KINDS
from v2w_operator.config import OperatorConfig

CONFIG = OperatorConfig(checkpoint_2b="s3://models/2b", checkpoint_14b="pvc://model-store/14b",
                        refiner_checkpoint="s3://models/reason1", guardrail_checkpoint="s3://models/guard",
                        s3_endpoint="http://minio.storage:9000", queue_name="default-queue")


def build(example: str, mutate=None, name="job-a"):
    doc = load_example(example)
    if mutate:
        mutate(doc["spec"])
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    return pytorchjob.build(doc["kind"], name, "team-a", "uid-123", spec, CONFIG, batch_uri="s3://x/batch.json")


def container(pj, replica="Master"):
    return pj["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]["containers"][0]


def flags(pj) -> dict[str, str | bool]:
    args = container(pj)["args"]
    out: dict[str, str | bool] = {}
    i = 2  # after --module <name>
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.setdefault(args[i].lstrip("-"), args[i + 1])
            i += 2
        else:
            out[args[i].lstrip("-")] = True
            i += 1
    return out


def test_single_job_names_owner_and_flags():
    pj = build("video2world-job.yaml")
    assert pj["metadata"]["name"] == "v2w-job-a"
    owner = pj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Video2WorldJob", "uid-123", True)
    assert list(pj["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    c = container(pj)
    assert c["name"] == "pytorch" and c["command"] == ["torchrun"]
    assert c["args"][:2] == ["--module", "v2w_runtime.video2world"]
    f = flags(pj)
    assert f["model_size"] == "2B" and f["checkpoint_dir"] == "s3://models/2b"
    assert f["input_path"] == "s3://v2w-inputs/video2world/input0.jpg"
    assert f["output_uri"] == "s3://v2w-results/jobs/team-a/job-a" and f["save_path"] == "job-a.mp4"
    assert (f["num_steps"], f["guidance"], f["resolution"], f["num_gpus"]) == ("35", "7.0", "720", "1")
    assert f["refiner_checkpoint"] == "s3://models/reason1" and f["guardrail_checkpoint"] == "s3://models/guard"
    assert "disable_guardrail" not in f and "disable_prompt_refiner" not in f
    assert pj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default-queue"


def test_credentials_are_mounted_by_reference_only():
    pj = build("video2world-job.yaml")
    env = {e["name"]: e for e in container(pj)["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "v2w-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "v2w-s3"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"


def test_multi_node_layout_gpus_and_scheduling():
    def eight_per_node(spec):
        spec["parallelism"] = {"gpus": 16, "gpusPerNode": 8, "contextParallelSize": 8}
    pj = build("bestofn-job.yaml", eight_per_node)
    specs = pj["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 1
    assert pj["spec"]["nprocPerNode"] == "8"
    c = container(pj, "Worker")
    assert c["resources"]["limits"] == {"nvidia.com/gpu": 8}
    pod = specs["Worker"]["template"]["spec"]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pj["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "backoffLimit": 2, "suspend": False,
                                       "activeDeadlineSeconds": 7200}
    assert pj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    f = flags(pj)
    assert (f["num_generations"], f["num_critic_trials"], f["context_parallel_size"]) == ("5", "3", "8")
    assert c["args"][:2] == ["--module", "v2w_runtime.bestofn"]


def test_pods_are_locked_down():
    pj = build("video2world-job.yaml")
    pod = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    sc = container(pj)["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                  "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"] for m in container(pj)["volumeMounts"]}
    assert {"/tmp", "/var/cache/v2w", "/dev/shm"} <= mounts


def test_pvc_uris_become_read_only_mounts():
    pj = build("video2world-5frame-job.yaml")
    pod = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"inputs", "model-store"}
    mounts = {m["mountPath"]: m for m in container(pj)["volumeMounts"]}
    assert mounts["/mnt/pvc/model-store"]["readOnly"] is True
    assert flags(pj)["num_conditional_frames"] == "5"


def test_batch_goes_by_uri_and_disabled_models_by_flag():
    def no_models(spec):
        spec["guardrail"] = {"enabled": False}
        spec["promptRefiner"] = {"enabled": False}
    pj = build("video2world-batch-job.yaml", no_models)
    f = flags(pj)
    assert f["batch_input_json"] == "s3://x/batch.json"
    assert f["disable_guardrail"] is True and f["disable_prompt_refiner"] is True
    assert "guardrail_checkpoint" not in f and "refiner_checkpoint" not in f


def test_batch_json_is_the_seed_format():
    doc = load_example("video2world-batch-job.yaml")
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    entries = pytorchjob.batch_json(spec)
    assert entries[0] == {"input_video": "s3://v2w-inputs/video2world/input0.jpg",
                          "prompt": doc["spec"]["batch"][0]["prompt"],
                          "output_video": "bus-terminal-night-movement.mp4"}


def test_same_spec_same_manifest():
    assert yaml.safe_dump(build("bestofn-job.yaml")) == yaml.safe_dump(build("bestofn-job.yaml"))


def test_speed_options_reach_the_runtime_only_when_asked():
    f = flags(build("video2world-job.yaml"))
    assert not {"attention_backend", "compile", "fast_mode"} & set(f)

    def fast(spec):
        spec["performance"] = {"fastMode": "step_cache", "stepCacheInterval": 5, "compile": True}
    f = flags(build("video2world-job.yaml", fast))
    assert (f["fast_mode"], f["step_cache_interval"], f["compile"]) == ("step_cache", "5", True)
