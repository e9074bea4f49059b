"""`python -m v2w_runtime.tiny --out DIR [--seed N]`: write a tiny random Video2World checkpoint."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m v2w_runtime.tiny",
        description=(
            "Write a small random checkpoint of the Cosmos-Predict2 Video2World architectures (diffusers "
            "format: transformer, vae, text_encoder, tokenizer, scheduler) for demos and tests. Offline; "
            "the same seed writes the same weights."
        ),
    )
    parser.add_argument("--out", required=True, help="Folder to write the checkpoint into (created).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default: 0).")
    parser.add_argument(
        "--example_inputs",
        default=None,
        metavar="DIR",
        help="Also write synthetic conditioning inputs there (input0-2.jpg, input3.mp4) for the examples.",
    )
    args = parser.parse_args(argv)

    from .video2world import write_checkpoint

    path = write_checkpoint(args.out, seed=args.seed)
    print(f"tiny Video2World checkpoint written to {path}")
    if args.example_inputs:
        from .inputs import write_example_inputs

        for written in write_example_inputs(args.example_inputs):
            print(f"example input written to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
