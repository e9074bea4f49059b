"""The seed's `examples/video2world_bestofn.py`: best-of-N rejection sampling (`v2w_runtime.bestofn`).

    python -m examples.video2world_bestofn --input_path assets/video2world/input0.jpg --prompt "…" \
        --num_generations 5 --num_critic_trials 3 --save_path output/rejection_sampling_demo
"""

import sys

try:
    from examples._entry import ensure_importable
except ImportError:  # started by path: this folder is on sys.path
    from _entry import ensure_importable

ensure_importable()

from v2w_runtime.bestofn import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
