"""The seed's `examples/video2world.py`: Cosmos-Predict2 Video2World generation (`v2w_runtime.video2world`).

    python -m examples.video2world --model_size 2B --input_path assets/video2world/input0.jpg --prompt "…"
    torchrun --nproc_per_node=${NUM_GPUS} examples/video2world.py … --num_gpus ${NUM_GPUS}
"""

import sys

try:
    from examples._entry import ensure_importable
except ImportError:  # started by path (torchrun examples/video2world.py): this folder is on sys.path
    from _entry import ensure_importable

ensure_importable()

from v2w_runtime.video2world import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
