"""`python -m v2w_runtime.checkpoints verify DIR`: check a checkpoint location before any GPU time is spent.

Exit codes: 0 everything needed was found and looks whole; 2 something is missing, damaged or (with
--md5) does not match; 1 the location could not be read at all.
"""

from __future__ import annotations

import argparse
import sys

from v2w_api.spec import GenerationSpec

from .common import CheckpointError
from .md5 import read_table
from .verify import dumps, upstream_table, verify_tree

_DEFAULTS = GenerationSpec()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m v2w_runtime.checkpoints",
        description="Check Video2World checkpoints: a diffusers folder, a Hugging Face cache of the Hub repository, "
        "or upstream's checkpoints/ tree (local, pvc://<claim>/<path> or s3://<bucket>/<prefix>). Nothing is "
        "loaded: files are checked by their headers and sizes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="what was found in which layout, what is missing, sizes",
                                 description="Report every component found (layout, files, size) and every one "
                                 "missing (the file looked for in each layout). Exit 0 when usable, 2 when not.")
    verify.add_argument("dir", metavar="DIR", help="the folder, pvc:// path or s3:// prefix to check")
    verify.add_argument("--model_size", choices=("2B", "14B"), action="append",
                        help="the model size(s) to check (default: every size found)")
    verify.add_argument("--resolution", type=int, choices=(480, 720), default=_DEFAULTS.resolution,
                        help="the run's resolution: chooses upstream's DiT variant (default: %(default)s)")
    verify.add_argument("--fps", type=int, default=_DEFAULTS.fps,
                        help="the run's frame rate: chooses upstream's 10 or 16 fps DiT (default: %(default)s)")
    verify.add_argument("--md5", nargs="?", const="upstream", metavar="FILE",
                        help="also check MD5 sums: of upstream's own table (no FILE), or of FILE (md5sum output or "
                        "a JSON object of path to sum, paths relative to DIR); reads every file it names")
    verify.add_argument("--disable_prompt_refiner", action="store_true",
                        help="do not require the tree's Cosmos-Reason1 folder")
    verify.add_argument("--disable_guardrail", action="store_true",
                        help="do not require the tree's guardrail folders")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.md5 is None:
            table, name = None, ""
        elif args.md5 == "upstream":
            table, name = upstream_table()
        else:
            table, name = read_table(args.md5), f"the table {args.md5}"
        report = verify_tree(args.dir, args.model_size, args.resolution, args.fps, md5=table, md5_source=name,
                             refiner=not args.disable_prompt_refiner, guardrail=not args.disable_guardrail)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(dumps(report) if args.json else report.text())
    return 0 if report.ok else 2


if __name__ == "__main__":
    sys.exit(main())
