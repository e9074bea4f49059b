"""The best-of-N pages: one report per video and an index ranking them all, rendered by Jinja2.

Each page sits next to the files it shows: its video is the scored MP4 beside it (a relative link), not a
copy inside the page, so a folder of N videos holds each video once. The pages play from disk (a synced
prefix), static hosting, or S3 where the bucket lets the browser read the folder; a presigned link signs
one object only, so for a private bucket the job's status carries a presigned link for each video.

Templates autoescape every value: prompts and critic answers are shown as text. The pages also carry a
Content Security Policy that forbids scripts, so even a mistake in a template cannot run injected code.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..critic import Critique


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def score_class(score: int) -> str:
    return "good" if score >= 67 else "mid" if score >= 34 else "bad"


def flat(values: dict[str, Any], prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, str]:
    """A nested settings dict as `group.key: value` lines (lists and scalars as written), without `skip`."""
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat(value, name + "."))
        else:
            out[name] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return out


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("v2w_runtime.reports", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["score_class"] = score_class
    env.filters["flat"] = flat
    return env


def render_report(critique: Critique) -> str:
    """The report of one video: the video, its score, prompt, seed, settings and every critic trial."""
    return _environment().get_template("report.html").render(c=critique)


def rank(critiques: list[Critique]) -> list[Critique]:
    """Best first: higher score, then more readable trials, then the name (stable across runs)."""
    return sorted(critiques, key=lambda c: (-c.score, -c.counts.parsed, c.video))


def render_index(ranked: list[Critique], *, title: str = "Best-of-N results", prompt: str | None = None,
                 best_file: str | None = None) -> str:
    """All videos in the given order (see `rank`), each with its score bar and its video; the first on top."""
    return _environment().get_template("index.html").render(ranked=ranked, title=title, prompt=prompt,
                                                            best_file=best_file)
