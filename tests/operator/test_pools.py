"""The pool's builders (workers' Deployment, ServiceAccount, RoleBinding, WorkerConfig) and its status derivation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from v2w_api.lease import LABEL_POOL, micro_time
from v2w_api.pool import Video2WorldPoolSpec, Video2WorldPoolStatus
from v2w_api.run import RunConfig
from v2w_api.worker import WorkerConfig, mismatches
from v2w_operator import metrics, pools, workers
from v2w_operator.backends import child
from v2w_operator.config import OperatorConfig

CONFIG = OperatorConfig(checkpoint_2b="pvc://models/2b", refiner_checkpoint="s3://models-bucket/reason1",
                        guardrail_checkpoint="pvc://models/guard", runtime_extra_args=["--num_frames", "9"],
                        pool_worker_cluster_role="v2w-video2world-operator-pool-worker")
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def pool_spec(**extra) -> Video2WorldPoolSpec:
    return Video2WorldPoolSpec.model_validate({"replicas": 2, "generation": {"resolution": 480},
                                               "output": {"credentialsSecret": {"name": "team-s3"},
                                                          "endpoint": "http://minio:9000"}, **extra})


def test_deployment_runs_the_worker_module_with_the_pools_config():
    dep = workers.deployment("fast", "team-a", "uid-1", pool_spec(), CONFIG)
    assert dep["metadata"]["name"] == "v2wpool-fast"
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "Video2WorldPool"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {LABEL_POOL: "fast"}}
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0  # never more GPUs than the pool holds
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"][LABEL_POOL] == "fast"
    container = pod["spec"]["containers"][0]
    assert container["name"] == "worker" and container["command"] == ["v2w-launch"]
    args = container["args"]
    assert args[:2] == ["--module", "v2w_runtime.worker"] and args[2] == "--config" and args[4:] == ["--num_frames", "9"]
    config = WorkerConfig.from_yaml(args[3], "worker")
    assert config.pool == "fast" and config.generation.resolution == 480
    assert config.model.checkpoint == "pvc://models/2b"  # the operator's default, as a job's run gets it
    assert config.lease_duration_seconds == 20
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team-s3"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert container["readinessProbe"]["exec"]["command"] == ["test", "-e", env["V2W_READY_FILE"]["value"]]
    assert env["PET_NPROC_PER_NODE"]["value"] == "1" and env["PET_STANDALONE"]["value"] == "1"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "v2wpool-fast" and spec["automountServiceAccountToken"] is True
    # The job pod's hardening, unchanged.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models"}


def test_the_critics_claim_is_mounted_too():
    dep = workers.deployment("bon", "ns", "u", pool_spec(critic={"checkpoint": "pvc://critic/reason1"}), CONFIG)
    spec = dep["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models", "critic"}
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert "/mnt/pvc/critic" in mounts


def test_a_changed_spec_changes_the_template_and_replicas_alone_do_not():
    one = workers.deployment("p", "ns", "u", pool_spec(), CONFIG)
    scaled = workers.deployment("p", "ns", "u", pool_spec(replicas=0), CONFIG)
    other = workers.deployment("p", "ns", "u", pool_spec(guardrail={"enabled": False}), CONFIG)
    assert scaled["spec"]["replicas"] == 0 and scaled["spec"]["template"] == one["spec"]["template"]
    assert other["spec"]["template"] != one["spec"]["template"]  # a rollout


def test_service_account_and_role_binding_give_the_worker_role_in_the_pools_namespace():
    sa = workers.service_account("p", "team-a", "u")
    rb = workers.role_binding("p", "team-a", "u", "rel-pool-worker")
    assert sa["metadata"]["name"] == rb["metadata"]["name"] == "v2wpool-p"
    assert rb["metadata"]["namespace"] == "team-a"
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rel-pool-worker"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "v2wpool-p", "namespace": "team-a"}]


def test_children_need_the_worker_role_configured():
    with pytest.raises(ValueError, match="ClusterRole"):
        pools.children("p", "ns", "u", pool_spec(), OperatorConfig())
    kinds = [d["kind"] for d in pools.children("p", "ns", "u", pool_spec(), CONFIG)]
    assert kinds == ["ServiceAccount", "RoleBinding", "Deployment"]


@pytest.mark.parametrize("bad, message", [
    ({"parallelism": {"gpus": 16, "gpusPerNode": 8}}, "one pod"),
    ({"scheduling": {"queueName": "q"}}, "Kueue"),
    ({"scheduling": {"serviceAccountName": "x"}}, "ServiceAccount"),
    ({"replicas": -1}, "greater than or equal"),
])
def test_pool_spec_refusals(bad, message):
    with pytest.raises(ValidationError, match=message):
        pool_spec(**bad)


def job_run(**spec_extra) -> RunConfig:
    from v2w_api import Video2WorldJobSpec
    spec = Video2WorldJobSpec.model_validate({"input": {"uri": "s3://in-bucket/a.jpg", "prompt": "a bus"},
                                              "output": {"uri": "s3://out-bucket/r"}, "poolRef": "p",
                                              "generation": {"resolution": 480}, **spec_extra})
    return child.run_config("Video2WorldJob", "j", spec, CONFIG, "s3://out-bucket/r/ns/j")


def test_a_job_with_the_pools_settings_matches_and_others_are_named():
    worker = workers.worker_config("p", pool_spec(), CONFIG)
    assert mismatches(worker, job_run()) == []
    assert mismatches(worker, job_run(generation={"resolution": 720}, model={"size": "14B"})) == [
        "model.size", "model.checkpoint", "generation.resolution"]


def lease(name: str, holder: str | None = None, renewed: datetime | None = None, **notes) -> dict:
    spec = {"leaseDurationSeconds": 20}
    if holder:
        spec.update(holderIdentity=holder, renewTime=micro_time(renewed or NOW), leaseTransitions=1)
    return {"metadata": {"name": name, "labels": {LABEL_POOL: "p"},
                         "annotations": {f"video2world.io/{k}": v for k, v in notes.items()}}, "spec": spec}


def deployment_status(ready: int, replicas: int, generation: int = 1, observed: int = 1, updated: int | None = None):
    return {"metadata": {"generation": generation},
            "status": {"replicas": replicas, "readyReplicas": ready, "observedGeneration": observed,
                       "updatedReplicas": replicas if updated is None else updated}}


def test_status_counts_busy_workers_and_the_queue():
    leases = [lease("v2w-a", "w-1"), lease("v2w-b", "w-2"), lease("v2w-c"), lease("v2w-d"),
              lease("v2w-e", "w-3", NOW - timedelta(seconds=60)),  # expired: claimable again
              lease("v2w-f", outcome="Succeeded"), lease("v2w-g", suspend="true")]
    status = pools.derive_status(Video2WorldPoolStatus(), "p", 2, 3, deployment_status(2, 2), leases, NOW)
    assert (status.replicas, status.ready_replicas, status.busy_workers, status.queue_length) == (2, 2, 2, 3)
    assert status.selector == f"{LABEL_POOL}=p" and status.observed_generation == 3
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status == "True" and ready.reason == "WorkersReady"


def test_status_while_starting_rolling_and_scaled_to_zero():
    starting = pools.derive_status(Video2WorldPoolStatus(), "p", 2, 1, deployment_status(0, 2), [], NOW)
    assert next(c for c in starting.conditions if c.type == "Ready").reason == "WorkersStarting"
    rolling = pools.derive_status(Video2WorldPoolStatus(), "p", 2, 1,
                                  deployment_status(2, 2, generation=2, observed=1), [], NOW)
    assert next(c for c in rolling.conditions if c.type == "Progressing").status == "True"
    zero = pools.derive_status(Video2WorldPoolStatus(), "p", 0, 1, deployment_status(0, 0), [lease("v2w-a")], NOW)
    ready = next(c for c in zero.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, zero.queue_length) == ("True", "ScaledToZero", 1)
    missing = pools.derive_status(Video2WorldPoolStatus(), "p", 1, 1, None, [], NOW)
    assert next(c for c in missing.conditions if c.type == "Ready").reason == "NoDeployment"


def test_unchanged_status_keeps_its_condition_times():
    first = pools.derive_status(Video2WorldPoolStatus(), "p", 1, 1, deployment_status(1, 1), [], NOW)
    again = pools.derive_status(first, "p", 1, 1, deployment_status(1, 1), [], NOW + timedelta(seconds=30))
    assert again.to_wire() == first.to_wire()


def test_pool_metrics_come_from_the_pools_status():
    collector = metrics.PoolsCollector()
    collector.watch({("ns", "p"): [metrics.summarize_pool("ns", "p", {"readyReplicas": 2, "busyWorkers": 1,
                                                                       "queueLength": 4})]})
    families = {f.name: f for f in collector.collect()}
    assert families["v2w_pool_queue_length"].samples[0].value == 4
    assert families["v2w_pool_queue_length"].samples[0].labels == {"namespace": "ns", "pool": "p"}
    assert families["v2w_pool_busy_workers"].samples[0].value == 1
    assert families["v2w_pool_ready_workers"].samples[0].value == 2


def test_a_job_must_write_with_the_pools_secret_endpoint_and_region():
    from v2w_api import Video2WorldJobSpec
    from v2w_operator import pooling

    def job(**output):
        return Video2WorldJobSpec.model_validate({
            "input": {"uri": "s3://in-bucket/a.jpg", "prompt": "a bus"}, "poolRef": "p",
            "generation": {"resolution": 480},
            "output": {"uri": "s3://out-bucket/r", **output}})

    pool = pool_spec()
    same = job(credentialsSecret={"name": "team-s3"}, endpoint="http://minio:9000")
    run = child.run_config("Video2WorldJob", "j", same, CONFIG, "s3://out-bucket/r/ns/j")
    assert pooling.differences("p", pool, same, run, CONFIG) == []
    other = job(credentialsSecret={"name": "mine"}, region="eu-west-1")
    run = child.run_config("Video2WorldJob", "j", other, CONFIG, "s3://out-bucket/r/ns/j")
    fields = pooling.differences("p", pool, other, run, CONFIG)
    assert fields == ["output.credentialsSecret", "output.endpoint", "output.region"]
    message = pooling.refusal("p", fields)
    assert "output.credentialsSecret, output.endpoint, output.region" in message and "pool p" in message
    assert "mine" not in message  # names fields, never a Secret's name or content


def test_a_best_of_n_job_needs_a_pool_with_a_critic():
    from v2w_api import BestOfNJobSpec
    from v2w_operator import pooling

    spec = BestOfNJobSpec.model_validate({
        "input": {"uri": "s3://in-bucket/a.jpg", "prompt": "a bus"}, "poolRef": "p",
        "generation": {"resolution": 480},
        "output": {"uri": "s3://out-bucket/r", "credentialsSecret": {"name": "team-s3"}, "endpoint": "http://minio:9000"}})
    run = child.run_config("BestOfNJob", "j", spec, CONFIG, "s3://out-bucket/r/ns/j")
    assert pooling.differences("p", pool_spec(), spec, run, CONFIG) == ["bestOfN.critic"]
    assert pooling.differences("p", pool_spec(critic={}), spec, run, CONFIG) == []


def test_a_job_reading_a_claim_the_workers_do_not_mount_is_refused():
    from v2w_api import Video2WorldJobSpec
    from v2w_operator import pooling

    spec = Video2WorldJobSpec.model_validate({
        "input": {"uri": "pvc://team-data/a.jpg", "prompt": "a bus"}, "poolRef": "p", "generation": {"resolution": 480},
        "output": {"uri": "s3://out-bucket/r", "credentialsSecret": {"name": "team-s3"}, "endpoint": "http://minio:9000"}})
    run = child.run_config("Video2WorldJob", "j", spec, CONFIG, "s3://out-bucket/r/ns/j")
    fields = pooling.differences("p", pool_spec(), spec, run, CONFIG)
    assert fields == ["PersistentVolumeClaims team-data (the pool's workers do not mount them)"]
    assert workers.volume_claims(pool_spec(critic={"checkpoint": "pvc://critic/x"}), CONFIG) == {"models", "critic"}
