"""The seed's entry points, so its commands work as written from the repository root:

    python -m examples.video2world …
    python -m examples.video2world_bestofn …
    torchrun --nproc_per_node=N examples/video2world.py … --num_gpus N

Each is a thin script around the runtime's program (`v2w_runtime.video2world`, `v2w_runtime.bestofn`).
kubectl reads only the YAML and JSON files of this folder; these scripts are not manifests.
"""
