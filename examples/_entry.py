"""Makes the runtime importable from a plain checkout, for the entry scripts beside this file."""

from __future__ import annotations

import sys
from pathlib import Path


def ensure_importable() -> None:
    """`v2w_runtime` and `v2w_api` come from the installed project; in a checkout that was not installed,
    from its `runtime/` and `api/` folders."""
    try:
        import v2w_runtime  # noqa: F401
    except ImportError:
        root = Path(__file__).resolve().parents[1]
        sys.path[:0] = [str(root / "runtime"), str(root / "api")]
