#!/usr/bin/env python3
"""The main job end to end on the embedded local stack (the README's demo command runs this).

Starts etcd, kube-apiserver, kube-controller-manager and MinIO on loopback; installs the PyTorchJob
CRD and ours; gives the operator the chart's ServiceAccount and RBAC and runs it with `kopf run`;
starts the Kubeflow training-operator (the real PyTorchJob controller, with its validating webhook) and the
executor (the kubelet's stand-in: runs the pods as processes); writes upstream's checkpoints/ tree
(tiny weights of the real architectures in NVIDIA's release layouts, with a Cosmos-Reason1 that really
critiques) into MinIO and verifies it; applies the example jobs, scaled
to two CPU cores (it says what it changed); prints `kubectl get` as they progress. Then it plays a flawed
generator: it copies the batch's videos, gives one a flash frame, and lets a best-of-N job judge them.
It ends with where the videos are and a link to the ranking.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "localstack"))
import stack  # noqa: E402

NAMESPACE = "demo"
OPERATOR_NS, OPERATOR_SA = "v2w-system", "v2w-operator"
# The examples ask for 720p and 93 frames on GPUs; on this CPU-only stack the runtime's debug knobs make
# each tiny-model video take seconds. The platform sets them for every job (V2W_RUNTIME_EXTRA_ARGS).
DEBUG_ARGS = "--height 64 --width 112 --num_frames 9 --device cpu"
EXAMPLES = ["video2world-job.yaml", "video2world-batch-job.yaml", "bestofn-job.yaml"]


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def demo_manifest(path: Path) -> tuple[dict, list[str]]:
    """An example as a user would apply it, scaled to what two CPU cores can run, and what was changed."""
    doc = copy.deepcopy(yaml.safe_load(path.read_text()))
    spec = doc["spec"]
    changed = []

    def change(where: str, old, new, why: str) -> None:
        changed.append(f"{where}: {old} -> {new} ({why})")

    steps = spec.setdefault("generation", {}).get("numSteps", 35)
    spec["generation"]["numSteps"] = 4
    change("spec.generation.numSteps", steps, 4, "a tiny model on a CPU")
    if "parallelism" in spec and spec["parallelism"] != {"gpus": 1}:
        change("spec.parallelism", spec["parallelism"], {"gpus": 1}, "one CPU process plays one GPU")
        spec["parallelism"] = {"gpus": 1}
    if doc["kind"] == "BestOfNJob":
        bon = spec["bestOfN"]
        change("spec.bestOfN.numGenerations", bon.get("numGenerations", 5), 3, "time")
        change("spec.bestOfN.critic.numTrials", bon.get("critic", {}).get("numTrials", 3), 2, "time")
        bon["numGenerations"] = 3
        bon.setdefault("critic", {})["numTrials"] = 2
    if spec.pop("scheduling", None) is not None:
        change("spec.scheduling", "(queue, tolerations)", "removed", "no Kueue queue or GPU taints here")
    return doc, changed


FLAWED = "snowy-intersection-traffic"
JUDGE = {
    "apiVersion": "video2world.io/v1alpha1", "kind": "BestOfNJob", "metadata": {"name": "judge-the-batch"},
    "spec": {"bestOfN": {"skipGeneration": True, "videosUri": f"s3://v2w-results/to-judge/{NAMESPACE}/",
                         "critic": {"numTrials": 3}},
             "output": {"uri": "s3://v2w-results/jobs", "credentialsSecret": {"name": "v2w-s3"}}},
}


def copy_with_a_flaw(s3, job: str, work: Path) -> None:
    """The batch job's videos and run records, copied to be judged; one of them gets a flash frame."""
    from v2w_runtime.bestofn import read_video
    from v2w_runtime.outputs import write_mp4
    from v2w_runtime.tiny.critic import inject_artifact

    work.mkdir(parents=True, exist_ok=True)
    prefix = f"jobs/{NAMESPACE}/{job}/"
    for obj in s3.list_objects_v2(Bucket="v2w-results", Prefix=prefix).get("Contents", []):
        name = obj["Key"][len(prefix):]
        if not name.endswith((".mp4", ".json")) or name in ("result.json", "progress.json", "batch.json"):
            continue
        local = work / name
        s3.download_file("v2w-results", obj["Key"], str(local))
        if name == f"{FLAWED}.mp4":
            frames, fps = read_video(local)
            write_mp4(inject_artifact(frames, "flash", index=len(frames) // 2), local, int(fps))
            print(f"  {name}: frame {len(frames) // 2} of {len(frames)} turned white")
        s3.upload_file(str(local), "v2w-results", f"to-judge/{NAMESPACE}/{name}")


def watch(plane, timeout: float) -> bool:
    """`kubectl get v2wjobs,bonjobs` whenever it changes, until every job has finished; True if all succeeded."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        table = plane.kubectl("get", "v2wjobs,bonjobs", "-n", NAMESPACE).stdout
        if table != last:
            print(time.strftime("%H:%M:%S"), "\n" + table, flush=True)
            last = table
        items = json.loads(plane.kubectl("get", "video2world", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        phases = [(i.get("status") or {}).get("phase") for i in items]
        if items and all(p in ("Succeeded", "Failed") for p in phases):
            return all(p == "Succeeded" for p in phases)
        time.sleep(3)
    return False


def print_results(plane, s3, local: Path) -> bool:
    """Every job's outputs and scores; the best-of-N folders downloaded next to the demo, and their links."""
    items = json.loads(plane.kubectl("get", "video2world", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    # The examples first, the judging of the flawed batch last: its ranking is what the demo ends with.
    items.sort(key=lambda i: (i["kind"] == "BestOfNJob", i["metadata"]["name"] == JUDGE["metadata"]["name"]))
    ok = True
    for item in items:
        status = item.get("status") or {}
        ok &= status.get("phase") == "Succeeded"
        print(f"{item['kind']}/{item['metadata']['name']}: {status.get('phase')} — {status.get('message')}")
        for output in status.get("outputs") or []:
            print(f"  {output['verdict']:10} {output.get('uri') or output.get('reason')}"
                  + (f"  score {output['score']:03d}" if output.get("score") is not None else ""))
        if status.get("indexUri"):
            bucket, _, key = status["indexUri"][len("s3://"):].partition("/")
            prefix = key.rsplit("/", 1)[0]
            folder = local / item["metadata"]["name"]
            for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", []):
                target = folder / obj["Key"][len(prefix) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
            best = status.get("best") or {}
            print(f"  best: {best.get('name')} (score {best.get('score')})")
            print(f"  ranking (presigned, while the stack runs): {status.get('indexUrl')}")
            print(f"  ranking (downloaded, the videos play next to it): {folder / 'index.html'}")
    return ok


def write_checkpoints(out: Path) -> Path:
    """Upstream's checkpoints/ tree as its download script writes it (the file names, formats and key names of
    NVIDIA's releases), with tiny weights: the native DiT and VAE, t5-11b, a Cosmos-Reason1 that really
    critiques, Cosmos-Guardrail1 and Llama Guard 3."""
    from v2w_runtime.tiny.critic import write_tiny_critic
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail_release
    from v2w_runtime.tiny.upstream import shard_safetensors, write_upstream_tree

    def reason1(folder: Path) -> None:
        write_tiny_critic(folder)  # refiner and critic: answers in Cosmos-Reason1's template
        shard_safetensors(folder, 4)  # in the release's four shards

    return write_upstream_tree(out, seed=0, reason1=reason1, guardrail=write_tiny_guardrail_release)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a new temporary folder)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the jobs")
    parser.add_argument("--keep", action="store_true", help="keep the stack running at the end until Ctrl-C")
    args = parser.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="v2w-demo-"))
    bin_dir = stack.build_binaries()

    say(f"starting the local stack in {workdir}")
    plane = stack.ControlPlane(bin_dir, workdir / "kube").start()
    minio = stack.MinioServer(bin_dir, workdir).start()
    servers: list[stack.Server] = []
    try:
        stack.install_crds(plane, ROOT)
        s3 = minio.client()
        for bucket in ("v2w-models", "v2w-inputs", "v2w-results"):
            s3.create_bucket(Bucket=bucket)

        say("writing upstream's checkpoints/ tree into MinIO (tiny weights of the real architectures, in the "
            "release layouts), and checking it before any job runs")
        checkpoints = stack.upload_tree(s3, write_checkpoints(workdir / "checkpoints"), "v2w-models", "checkpoints")
        subprocess.run([sys.executable, "-m", "v2w_runtime.checkpoints", "verify", checkpoints], check=True,
                       env={**os.environ, **minio.env(), "V2W_CACHE_DIR": str(workdir / "verify-cache")})
        for i in range(3):
            s3.put_object(Bucket="v2w-inputs", Key=f"video2world/input{i}.jpg", Body=stack.sample_image(i))

        say("starting the operator (kopf run, the chart's ServiceAccount and RBAC), the Kubeflow training-operator "
            "(PyTorchJob controller and webhook) and the executor (runs the pods as local processes)")
        kubeconfig = stack.install_operator_identity(plane, ROOT / "charts" / "video2world-operator", OPERATOR_NS,
                                                     OPERATOR_SA, workdir / "operator.kubeconfig")
        servers.append(stack.start_training_operator(plane, workdir / "training-operator"))
        servers.append(stack.start_executor(plane, workdir / "executor", workdir / "pvcs"))
        servers.append(stack.start_operator(kubeconfig, {
            # The tree's own Cosmos-Reason1 and Guardrail1 serve as refiner, critic and guardrail.
            "V2W_CHECKPOINT_2B": checkpoints,
            "V2W_S3_ENDPOINT": minio.endpoint,
            "V2W_S3_REGION": minio.region,
            "V2W_POLL_INTERVAL_SECONDS": "2",
            "V2W_METRICS_PORT": str(stack.free_port()),
            "V2W_RUNTIME_EXTRA_ARGS": DEBUG_ARGS,
            "V2W_LINKS_PUBLIC_ENDPOINT": minio.endpoint,  # presigned links in the status
            "V2W_LINKS_TTL_SECONDS": "3600",
        }, workdir / "logs" / "operator.log"))

        say(f"applying the examples in namespace {NAMESPACE} (with the S3 Secret they name)")
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl("create", "secret", "generic", "v2w-s3", "-n", NAMESPACE,
                      f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
                      f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}")
        for name in EXAMPLES:
            doc, changed = demo_manifest(ROOT / "examples" / name)
            print(f"examples/{name}, scaled for this CPU-only stack:" + "".join(f"\n    {c}" for c in changed))
            print("  " + plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(doc)).stdout.strip())
        ok = watch(plane, args.timeout)

        say("a flawed generator, played by this demo: the batch's videos, one with a white flash frame, "
            "judged by a best-of-N job (skipGeneration)")
        copy_with_a_flaw(s3, "city-batch", workdir / "takes")
        plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(JUDGE))
        ok &= watch(plane, args.timeout)

        say("results")
        ok &= print_results(plane, s3, workdir / "results")
        if args.keep:
            say("the stack keeps running; Ctrl-C stops it")
            print(f"export KUBECONFIG={plane.kubeconfig}")
            while True:
                time.sleep(3600)
        return 0 if ok else 1
    except KeyboardInterrupt:
        return 130
    finally:
        for server in reversed(servers):
            server.stop()
        minio.stop()
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
