#!/usr/bin/env python3
"""The main job end to end on the embedded local stack (the README's demo command runs this).

Starts etcd, kube-apiserver, kube-controller-manager and MinIO on loopback; installs the PyTorchJob
CRD and ours; gives the operator the chart's ServiceAccount and RBAC and runs it with `kopf run`;
starts the executor (the stand-in for training-operator + kubelet); writes tiny random checkpoints
of the real architectures into MinIO; applies the example jobs; prints `kubectl get` as they
progress; and ends with where the videos and the best-of-N report are.
"""

from __future__ import annotations

import argparse
import copy
import json
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


def demo_manifest(path: Path) -> dict:
    """An example as a user would apply it, scaled to what two CPU cores can run."""
    doc = copy.deepcopy(yaml.safe_load(path.read_text()))
    spec = doc["spec"]
    spec.setdefault("generation", {})["numSteps"] = 4
    if doc["kind"] == "BestOfNJob":
        spec["parallelism"] = {"gpus": 1}
        spec["bestOfN"]["numGenerations"] = 3
        spec["bestOfN"]["critic"]["numTrials"] = 2
        spec.pop("scheduling", None)  # no Kueue queue or GPU taints on the local stack
    return doc


def write_models(out: Path) -> None:
    subprocess.run([sys.executable, "-m", "v2w_runtime.tiny", "--out", str(out / "video2world")], check=True)
    from v2w_runtime.tiny.guardrail import write_tiny_guardrail
    from v2w_runtime.tiny.qwen import write_tiny_qwen

    write_tiny_guardrail(out / "guardrail")
    write_tiny_qwen(out / "reason1")


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

        say("writing tiny random checkpoints of the real architectures into MinIO")
        write_models(workdir / "models")
        models = {name: stack.upload_tree(s3, workdir / "models" / name, "v2w-models", name)
                  for name in ("video2world", "guardrail", "reason1")}
        for i in range(3):
            s3.put_object(Bucket="v2w-inputs", Key=f"video2world/input{i}.jpg", Body=stack.sample_image(i))

        say("starting the operator (kopf run, the chart's ServiceAccount and RBAC) and the executor")
        kubeconfig = stack.install_operator_identity(plane, ROOT / "charts" / "video2world-operator", OPERATOR_NS,
                                                     OPERATOR_SA, workdir / "operator.kubeconfig")
        servers.append(stack.start_executor(plane, workdir / "executor", workdir / "pvcs"))
        servers.append(stack.start_operator(kubeconfig, {
            "V2W_CHECKPOINT_2B": models["video2world"],
            "V2W_GUARDRAIL_CHECKPOINT": models["guardrail"],
            "V2W_REFINER_CHECKPOINT": models["reason1"],
            "V2W_S3_ENDPOINT": minio.endpoint,
            "V2W_S3_REGION": minio.region,
            "V2W_POLL_INTERVAL_SECONDS": "2",
            "V2W_METRICS_PORT": str(stack.free_port()),
            "V2W_RUNTIME_EXTRA_ARGS": DEBUG_ARGS,
        }, workdir / "logs" / "operator.log"))

        say(f"applying the examples in namespace {NAMESPACE} (with the S3 Secret they name)")
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl("create", "secret", "generic", "v2w-s3", "-n", NAMESPACE,
                      f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
                      f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}")
        for name in EXAMPLES:
            out = plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(demo_manifest(ROOT / "examples" / name)))
            print(out.stdout.strip())

        say("kubectl get v2wjobs,bonjobs (every few seconds until all finish)")
        deadline = time.monotonic() + args.timeout
        last = ""
        while time.monotonic() < deadline:
            table = plane.kubectl("get", "v2wjobs,bonjobs", "-n", NAMESPACE).stdout
            if table != last:
                print(time.strftime("%H:%M:%S"), "\n" + table, flush=True)
                last = table
            items = json.loads(plane.kubectl("get", "video2world", "-n", NAMESPACE, "-o", "json").stdout)["items"]
            if items and all((i.get("status") or {}).get("phase") in ("Succeeded", "Failed") for i in items):
                break
            time.sleep(3)

        say("results")
        items = json.loads(plane.kubectl("get", "video2world", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        local = workdir / "results"
        ok = True
        for item in items:
            status = item.get("status") or {}
            ok &= status.get("phase") == "Succeeded"
            print(f"{item['kind']}/{item['metadata']['name']}: {status.get('phase')} — {status.get('message')}")
            for output in status.get("outputs") or []:
                print(f"  {output['verdict']:8} {output.get('uri') or output.get('reason')}"
                      + (f"  score {output['score']:03d}" if output.get("score") is not None else ""))
            if status.get("indexUri"):
                bucket, _, key = status["indexUri"][len("s3://"):].partition("/")
                prefix = key.rsplit("/", 1)[0]
                for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", []):
                    target = local / obj["Key"][len(prefix) + 1:]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, obj["Key"], str(target))
                url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
                print(f"  best: {status.get('best', {}).get('uri')} (score {status.get('best', {}).get('score')})")
                print(f"  report (presigned, while the stack runs): {url}")
                print(f"  report (downloaded): {local / 'index.html'}")
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
