"""The PyTorchJob builder: names, owner, replicas, GPUs, secrets by reference, PVCs, the run configuration.

(That every spec field reaches the runtime is proven field by field in tests/contract.)"""

from __future__ import annotations

import yaml

from tests.api.cases import load_example
from v2w_operator.backends import child, pytorchjob
from v2w_api import KINDS
from v2w_api.run import RunConfig
from v2w_operator.config import OperatorConfig

CONFIG = OperatorConfig(checkpoint_2b="s3://models/2b", checkpoint_14b="pvc://model-store/14b",
                        refiner_checkpoint="s3://models/reason1", guardrail_checkpoint="s3://models/guard",
                        s3_endpoint="http://minio.storage:9000", queue_name="default-queue")


def build(example: str, mutate=None, name="job-a"):
    doc = load_example(example)
    if mutate:
        mutate(doc["spec"])
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    return pytorchjob.build(doc["kind"], name, "team-a", "uid-123", spec, CONFIG, batch_uri="s3://jobs/team-a/job-a/batch.json")


def container(pj, replica="Master"):
    return pj["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]["containers"][0]


def run_config(pj) -> RunConfig:
    """The run configuration as a person reads it in the PyTorchJob: `--config` and a YAML document."""
    args = container(pj)["args"]
    assert args[2] == "--config" and len(args) == 4
    return RunConfig.from_yaml(args[3], "the PyTorchJob")


def test_single_job_names_owner_and_flags():
    pj = build("video2world-job.yaml")
    assert pj["metadata"]["name"] == "v2w-job-a"
    owner = pj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Video2WorldJob", "uid-123", True)
    assert list(pj["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    c = container(pj)
    assert c["name"] == "pytorch" and c["command"] == ["v2w-launch"]
    assert pj["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == "ExitCode"
    assert c["args"][:2] == ["--module", "v2w_runtime.video2world"]
    run = run_config(pj)
    assert run.model.size == "2B" and run.model.checkpoint == "s3://models/2b"
    assert run.input.uri == "s3://v2w-inputs/video2world/input0.jpg"
    assert run.output.uri == "s3://v2w-results/jobs/team-a/job-a" and run.output.video_name == "job-a.mp4"
    assert (run.generation.num_steps, run.generation.guidance, run.generation.resolution) == (35, 7.0, 720)
    assert run.prompt_refiner.checkpoint == "s3://models/reason1" and run.guardrail.checkpoint == "s3://models/guard"
    assert run.guardrail.enabled and run.prompt_refiner.enabled
    # Readable in the PyTorchJob: block YAML with the groups of the spec.
    text = container(pj)["args"][3]
    assert text.startswith("apiVersion: video2world.io/v1alpha1\nkind: RunConfig\nmodel:\n  size: 2B\n")
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
    run = run_config(pj)
    assert (run.best_of_n.num_generations, run.best_of_n.critic.num_trials) == (5, 3)
    assert (run.parallelism.gpus, run.parallelism.context_parallel_size) == (16, 8)
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
    assert claims == {"inputs", "checkpoints"}
    mounts = {m["mountPath"]: m for m in container(pj)["volumeMounts"]}
    assert mounts["/mnt/pvc/checkpoints"]["readOnly"] is True
    assert run_config(pj).generation.num_conditional_frames == 5


def test_the_checkpoint_cache_is_the_pods_own_unless_the_platform_shares_one():
    def cache_of(config: OperatorConfig) -> tuple[dict, dict, dict]:
        doc = load_example("video2world-job.yaml")
        spec = KINDS[doc["kind"]][1].model_validate(doc).spec
        pj = pytorchjob.build(doc["kind"], "job-a", "team-a", "uid-123", spec, config)
        pod = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "cache")
        assert mount["mountPath"] == env["V2W_CACHE_DIR"] and not mount.get("readOnly")
        return next(v for v in pod["volumes"] if v["name"] == "cache"), env, mount

    volume, env, _ = cache_of(CONFIG)
    assert volume == {"name": "cache", "emptyDir": {}} and "V2W_CACHE_SIZE_LIMIT" not in env
    node = CONFIG.model_copy(update={"cache_host_path": "/var/cache/video2world", "cache_size_limit": "500Gi"})
    volume, env, _ = cache_of(node)
    assert volume == {"name": "cache", "hostPath": {"path": "/var/cache/video2world", "type": "Directory"}}
    assert env["V2W_CACHE_SIZE_LIMIT"] == "500Gi"
    shared = CONFIG.model_copy(update={"cache_claim_name": "checkpoint-cache"})
    volume, _, _ = cache_of(shared)
    assert volume == {"name": "cache", "persistentVolumeClaim": {"claimName": "checkpoint-cache"}}


def test_batch_goes_by_uri_and_a_disabled_guardrail_names_no_checkpoint():
    def no_models(spec):
        spec["guardrail"] = {"enabled": False}
        spec["promptRefiner"] = {"enabled": False}
    run = run_config(build("video2world-batch-job.yaml", no_models))
    assert run.batch_uri == "s3://jobs/team-a/job-a/batch.json" and run.input is None
    assert not run.guardrail.enabled and not run.prompt_refiner.enabled
    assert run.guardrail.checkpoint is None


def test_batch_json_is_the_seed_format():
    doc = load_example("video2world-batch-job.yaml")
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    entries = child.batch_json(spec)
    assert entries[0] == {"input_video": "s3://v2w-inputs/video2world/input0.jpg",
                          "prompt": doc["spec"]["batch"][0]["prompt"],
                          "output_video": "bus-terminal-night-movement.mp4"}


def test_same_spec_same_manifest():
    assert yaml.safe_dump(build("bestofn-job.yaml")) == yaml.safe_dump(build("bestofn-job.yaml"))


def test_speed_options_reach_the_runtime():
    assert run_config(build("video2world-job.yaml")).performance.fast_mode == "off"

    def fast(spec):
        spec["performance"] = {"fastMode": "step_cache", "stepCacheInterval": 5, "compile": True}
    perf = run_config(build("video2world-job.yaml", fast)).performance
    assert (perf.fast_mode, perf.step_cache_interval, perf.compile) == ("step_cache", 5, True)


def test_a_job_created_suspended_gets_the_queue_label_only_when_resumed():
    """With the label Kueue would admit the PyTorchJob and unsuspend it: the user's suspend would lose."""
    pj = build("bestofn-job.yaml", lambda s: s.update(suspend=True))
    assert pj["spec"]["runPolicy"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in pj["metadata"]["labels"]


def test_parent_of_reads_child_name_backwards():
    assert child.parent_of(child.child_name("BestOfNJob", "a-b")) == ("BestOfNJob", "a-b")
    assert child.parent_of(child.child_name("Video2WorldJob", "x")) == ("Video2WorldJob", "x")
    assert child.parent_of("someone-elses") is None
