"""Self-contained HTML pages for best-of-N: one report per video and an index ranking them all.

Why the video is embedded as a base64 `data:` URI rather than referenced by a relative URL: a report
is often opened through an S3 presigned URL, and a presigned URL signs one object only — a relative
`<video src="x.mp4">` would resolve to an unsigned URL and fail on a private bucket. Embedded, the
report plays from disk, from a presigned URL, from static hosting or as a mail attachment, at the
cost of about a third more bytes than the MP4. The relative links to sibling files (the MP4, the
critique JSON, the other reports) are conveniences that work from disk and static hosting.

Every piece of model or user text goes through `html.escape`; the pages also carry a Content
Security Policy that forbids scripts, so even a mistake in escaping cannot run injected code.
"""

from __future__ import annotations

import base64
import html

from ..critic import Critique, TrialAnswer

CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "style-src 'unsafe-inline'; img-src data:; media-src data:"
)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
  padding:0 1rem;color:#1d2430;background:#fafbfc;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.25rem}
.score{font-size:2.2rem;font-weight:700}
.good{color:#16794c}.mid{color:#9a6a00}.bad{color:#b42318}
video{width:min(100%,720px);background:#000;border-radius:6px}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border-bottom:1px solid #d8dee4;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f4}
.prompt{white-space:pre-wrap;background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:.6rem}
.trial{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:.6rem 1rem;margin:.8rem 0}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f5f7;padding:.5rem;border-radius:4px}
.muted{color:#57606a;font-size:.9rem}
img.thumb{width:160px;border-radius:4px}
"""


def e(value: object) -> str:
    """Escape any text for HTML element content and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _score_class(score: int) -> str:
    return "good" if score >= 67 else "mid" if score >= 34 else "bad"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _video(mp4: bytes | None, poster: str | None, element_id: str) -> str:
    if not mp4:
        return "<p class=\"muted\">(video not embedded)</p>"
    poster_attr = f" poster=\"{e(poster)}\"" if poster else ""
    return (
        f"<video id=\"{e(element_id)}\" controls loop muted playsinline preload=\"auto\"{poster_attr}>"
        f"<source src=\"{data_uri(mp4, 'video/mp4')}\" type=\"video/mp4\">"
        "Your browser cannot play H.264 MP4 video.</video>"
    )


def _list(items: list[str], empty: str) -> str:
    if not items:
        return f"<span class=\"muted\">{e(empty)}</span>"
    return "<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>"


def _verdict(trial: TrialAnswer) -> str:
    if not trial.parsed:
        return f"<strong class=\"mid\">unparsable</strong> <span class=\"muted\">({e(trial.error)})</span>"
    if trial.anomaly:
        return "<strong class=\"bad\">Yes</strong> — anomaly found"
    return "<strong class=\"good\">No</strong> — no anomaly"


def _trial(trial: TrialAnswer) -> str:
    seed = f" · seed {e(trial.seed)}" if trial.seed is not None else ""
    return (
        f"<div class=\"trial\" id=\"trial-{trial.trial}\"><h3>Trial {trial.trial + 1}{seed}</h3>"
        f"<p>Answer: {_verdict(trial)}</p>"
        f"<p><b>Components</b></p>{_list(trial.components, 'none listed')}"
        f"<p><b>Anomalies</b></p>{_list(trial.anomalies, 'none listed')}"
        f"<details><summary>Reasoning</summary><pre>{e(trial.reasoning) or '(none)'}</pre></details>"
        f"<details><summary>Raw answer</summary><pre>{e(trial.raw) or '(empty)'}</pre></details></div>"
    )


def render_report(critique: Critique, mp4: bytes | None) -> str:
    """The report of one video: the video itself, its prompt, seed, score and every trial."""
    c = critique.counts
    rows = [
        ("Video file", f"<a href=\"{e(critique.video_file)}\">{e(critique.video_file)}</a>"),
        ("Seed", e(critique.seed) if critique.seed is not None else "<span class=\"muted\">n/a</span>"),
        ("Trials", f"{c.total} ({c.parsed} parsed, {c.unparsable} unparsable)"),
        ("No anomaly / anomaly", f"{c.no_anomaly} / {c.anomaly}"),
    ]
    if critique.source_uri:
        rows.append(("Source", e(critique.source_uri)))
    prompts = ""
    if critique.prompt is not None:
        prompts += f"<h2>Prompt</h2><div class=\"prompt\" id=\"prompt\">{e(critique.prompt)}</div>"
    if critique.refined_prompt and critique.refined_prompt != critique.prompt:
        prompts += f"<h2>Refined prompt</h2><div class=\"prompt\" id=\"refined-prompt\">{e(critique.refined_prompt)}</div>"
    warnings = "".join(f"<li>{e(w)}</li>" for w in critique.warnings)
    body = (
        f"<h1>{e(critique.video)}</h1>"
        f"<div class=\"score {_score_class(critique.score)}\" id=\"score\">{e(critique.label)}</div>"
        "<p class=\"muted\">Score: share of readable critic answers that found no anomaly (000–100).</p>"
        f"{_video(mp4, critique.poster, 'video')}"
        "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
        f"{prompts}"
        + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
        + "<h2>Critic trials</h2>"
        + "".join(_trial(t) for t in critique.trials)
        + f"<p class=\"muted\">Critique data: <a href=\"{e(critique.critique_file)}\">{e(critique.critique_file)}</a></p>"
    )
    return _page(f"{critique.video} — score {critique.label}", body)


def rank(critiques: list[Critique]) -> list[Critique]:
    """Best first: higher score, then more readable trials, then the name (stable across runs)."""
    return sorted(critiques, key=lambda c: (-c.score, -c.counts.parsed, c.video))


def render_index(ranked: list[Critique], best_mp4: bytes | None, *, title: str = "Best-of-N results",
                 prompt: str | None = None, best_file: str | None = None) -> str:
    """All videos in the given order (see `rank`), the first one embedded on top as the best."""
    if not ranked:
        body = f"<h1>{e(title)}</h1><p>No video was scored.</p>"
        return _page(title, body)
    best = ranked[0]
    rows = []
    for position, c in enumerate(ranked, start=1):
        thumb = f"<img class=\"thumb\" alt=\"\" src=\"{e(c.poster)}\">" if c.poster else ""
        rows.append(
            f"<tr class=\"entry\" data-name=\"{e(c.video)}\"><td>{position}</td><td>{thumb}</td>"
            f"<td><a href=\"{e(c.report_file)}\">{e(c.video)}</a></td>"
            f"<td class=\"{_score_class(c.score)}\"><b>{e(c.label)}</b></td>"
            f"<td>{e(c.seed) if c.seed is not None else ''}</td>"
            f"<td>{c.counts.no_anomaly}/{c.counts.parsed} ({c.counts.unparsable} unparsable)</td>"
            f"<td><a href=\"{e(c.video_file)}\">mp4</a></td></tr>"
        )
    best_link = f" · <a href=\"{e(best_file)}\">{e(best_file)}</a>" if best_file else ""
    body = (
        f"<h1>{e(title)}</h1>"
        + (f"<h2>Prompt</h2><div class=\"prompt\" id=\"prompt\">{e(prompt)}</div>" if prompt is not None else "")
        + f"<h2>Best: {e(best.video)} — <span class=\"{_score_class(best.score)}\">{e(best.label)}</span></h2>"
        f"{_video(best_mp4, best.poster, 'best-video')}"
        f"<p class=\"muted\">Seed {e(best.seed)}{best_link}</p>"
        "<h2>Ranking</h2><table id=\"ranking\"><tr><th>#</th><th></th><th>Video</th><th>Score</th><th>Seed</th>"
        "<th>No anomaly / parsed</th><th>File</th></tr>" + "".join(rows) + "</table>"
        "<p class=\"muted\">Each report embeds its video and opens on its own (also from a presigned URL); "
        "the links between files work from disk and static hosting.</p>"
    )
    return _page(title, body)
