"""The best-of-N critic: Cosmos-Reason1 watches a video and says whether it has anomalies.

Each video is shown K times (sampling is on, so the trials differ); every answer is parsed on its own.
An answer that cannot be read counts as unparsable and stays out of the score. The score is the share
of parsed trials that found no anomaly, as an integer percent 0-100.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from v2w_api.manifest import CriticTrials

from .qwen import QwenVL, Sampling, sample_frames

# Cosmos-Reason1 was trained to critique videos in one XML template (its own video-critic prompt): an
# overview, then one <component> per element of the scene with an <analysis> and an <anomaly> verdict, then
# the <answer>. We ask for that template in our own words; the parser below also reads looser answers.
SYSTEM = (
    "You inspect generated videos for artifacts and anomalies: anything that could not happen in a real "
    "recording. Look at the whole video and reply in this template:\n"
    "<think>\n"
    "<overview>\nOne or two sentences on what the video shows.\n</overview>\n"
    "<component name=\"A main element of the scene\">\n"
    "<analysis>\nHow it looks and moves, frame to frame.\n</analysis>\n"
    "<anomaly>Yes or No</anomaly>\n"
    "</component>\n"
    "(one <component> per main element)\n"
    "</think>\n"
    "<answer>\nYes if the video has any anomaly or artifact, No if it has none.\n</answer>"
)

QUESTION = (
    "Does this video contain any anomaly or artifact? For example objects that appear, vanish, merge or change "
    "shape or colour for no reason; distorted bodies, hands or faces; motion that breaks physics; flicker, "
    "flashes, smearing, warped textures or garbled text."
)

# Sampling settings for the critic: sampled trials, so K answers are K independent looks.
CRITIC_SAMPLING = Sampling(
    max_new_tokens=1024, do_sample=True, temperature=0.6, top_p=0.95, top_k=50, repetition_penalty=1.05
)
CRITIC_FPS = 16.0

_SPECIAL = re.compile(r"<\|[^|>]*\|>")
_ANSWER_TAG = re.compile(r"<\s*answer\s*>(.*?)(?:<\s*/\s*answer\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"(?:final\s+)?answer\s*[:=-]\s*[*_\"'`\s]*(yes|no)\b", re.IGNORECASE)
_VERDICT = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_COMPONENT = re.compile(r"<\s*component\b([^>]*)>(.*?)(?:<\s*/\s*component\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_COMPONENT_NAME = re.compile(r"""name\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_ANALYSIS = re.compile(r"<\s*analysis\s*>(.*?)(?:<\s*/\s*analysis\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_ANOMALY_TAG = re.compile(r"<\s*anomaly\s*>(.*?)<\s*/\s*anomaly\s*>", re.DOTALL | re.IGNORECASE)
_OVERVIEW = re.compile(r"<\s*overview\s*>(.*?)(?:<\s*/\s*overview\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_HEADER = re.compile(r"^[\s#*_]*(components?|anomal(?:y|ies)|artifacts?)[\s*_]*:[\s*_]*(.*)$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)\s*$")
_NOTHING = re.compile(r"^(none|nothing|n/?a|no (?:anomal(?:y|ies)|artifacts?)(?: (?:found|detected|observed))?)\W*$",
                      re.IGNORECASE)


class TrialAnswer(BaseModel):
    """One look of the critic at one video."""

    trial: int = Field(..., ge=0, description="Trial number, from 0.")
    seed: int | None = Field(None, description="Sampling seed of this trial.")
    raw: str = Field(..., description="The critic's whole answer, as written.")
    parsed: bool = Field(..., description="Whether a Yes/No verdict could be read.")
    anomaly: bool | None = Field(None, description="True: the critic found an anomaly (answered Yes).")
    reasoning: str = Field("", description="The text inside <think>.")
    overview: str | None = Field(None, description="The critic's short description of the video, when it gave one.")
    components: list[str] = Field(default_factory=list, description="Elements of the scene the critic looked at.")
    anomalies: list[str] = Field(default_factory=list, description="What it found wrong, as 'element: why'.")
    error: str | None = Field(None, description="Why the answer could not be parsed.")


def _component_items(reasoning: str) -> dict[str, list[str]] | None:
    """Components and anomalies from Cosmos-Reason1's XML template, or None when it did not use it."""
    blocks = _COMPONENT.findall(reasoning)
    if not blocks:
        return None
    sections: dict[str, list[str]] = {"components": [], "anomalies": []}
    for attributes, body in blocks:
        named = _COMPONENT_NAME.search(attributes)
        name = " ".join(next((g for g in named.groups() if g), "").split() if named else []) or "component"
        analysis = _ANALYSIS.search(body)
        detail = " ".join((analysis.group(1) if analysis else _ANOMALY_TAG.sub("", body)).split())
        sections["components"].append(f"{name}: {detail}" if detail else name)
        verdict = _ANOMALY_TAG.search(body)
        if verdict and _VERDICT.match(verdict.group(1).strip()) and verdict.group(1).strip().lower().startswith("y"):
            sections["anomalies"].append(f"{name}: {detail}" if detail else name)
    return sections


def _section_items(reasoning: str) -> dict[str, list[str]]:
    """Components and anomalies from either the XML template or "Components:/Anomalies:" lists."""
    found = _component_items(reasoning)
    if found is not None:
        return found
    sections: dict[str, list[str]] = {"components": [], "anomalies": []}
    current: str | None = None
    for line in reasoning.splitlines():
        header = _HEADER.match(line)
        if header:
            current = "components" if header.group(1).lower().startswith("component") else "anomalies"
            inline = header.group(2).strip()
            if inline:
                sections[current].extend(p.strip() for p in inline.split(";" if ";" in inline else ",") if p.strip())
            continue
        bullet = _BULLET.match(line)
        if bullet and current:
            sections[current].append(bullet.group(1).strip())
        elif line.strip():
            current = None
    sections["anomalies"] = [a for a in sections["anomalies"] if not _NOTHING.match(a.strip())]
    return sections


def _split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning inside <think>, the text outside it). An unclosed <think> ends at <answer> or the end."""
    opening = _THINK_OPEN.search(text)
    if not opening:
        return "", text
    closing = _THINK_CLOSE.search(text, opening.end())
    if closing:
        return text[opening.end() : closing.start()].strip(), text[: opening.start()] + " " + text[closing.end() :]
    answer = _ANSWER_OPEN.search(text, opening.end())
    end = answer.start() if answer else len(text)
    return text[opening.end() : end].strip(), text[: opening.start()] + " " + text[end:]


def parse_answer(raw: str, trial: int = 0, seed: int | None = None) -> TrialAnswer:
    """Read the critic's verdict, reasoning, components and anomalies from one answer.

    The verdict is the last <answer>…</answer> (an unclosed tag at the very end is accepted) whose
    text starts with Yes or No, ignoring case, markdown and punctuation. Without an answer tag, a last
    "Answer: Yes/No" line is accepted. Anything else is unparsable.
    """
    text = _SPECIAL.sub("", raw or "")
    reasoning, outside = _split_reasoning(text)

    verdict: str | None = None
    error: str | None = None
    tags = _ANSWER_TAG.findall(outside)
    if tags:
        content = tags[-1].strip()
        match = _VERDICT.match(content)
        if match:
            verdict = match.group(1).lower()
        else:
            error = f"the <answer> tag holds neither Yes nor No: {content[:80]!r}"
    else:
        lines = _ANSWER_LINE.findall(outside)
        if lines:
            verdict = lines[-1].lower()
        else:
            error = "no <answer> tag and no 'Answer: Yes/No' line"

    sections = _section_items(reasoning or outside)
    overview = _OVERVIEW.search(reasoning or outside)
    return TrialAnswer(
        trial=trial,
        seed=seed,
        raw=raw or "",
        parsed=verdict is not None,
        anomaly=None if verdict is None else verdict == "yes",
        reasoning=reasoning,
        overview=" ".join(overview.group(1).split()) or None if overview else None,
        components=sections["components"],
        anomalies=sections["anomalies"],
        error=error,
    )


def count_trials(trials: list[TrialAnswer]) -> CriticTrials:
    parsed = [t for t in trials if t.parsed]
    anomaly = sum(1 for t in parsed if t.anomaly)
    return CriticTrials(
        total=len(trials),
        parsed=len(parsed),
        no_anomaly=len(parsed) - anomaly,
        anomaly=anomaly,
        unparsable=len(trials) - len(parsed),
    )


def score(counts: CriticTrials) -> int:
    """Percent of parsed trials that found no anomaly, rounded half up; 0 when none could be parsed."""
    if counts.parsed == 0:
        return 0
    return (200 * counts.no_anomaly + counts.parsed) // (2 * counts.parsed)


def score_label(value: int) -> str:
    """The score as it appears in file names: three digits, 000-100."""
    if not 0 <= value <= 100:
        raise ValueError(f"score must be within 0-100, got {value}")
    return f"{value:03d}"


class Critique(BaseModel):
    """The critique file written next to each scored video (`<name>_score<NNN>.json`)."""

    kind: Literal["Critique"] = "Critique"
    video: str = Field(..., description="Base name of the video (without score and extension).")
    source_uri: str | None = Field(None, description="Where the video came from.")
    seed: int | None = Field(None, description="Generation seed (best-of-N generations).")
    prompt: str | None = None
    refined_prompt: str | None = None
    trials: list[TrialAnswer]
    counts: CriticTrials
    score: int = Field(..., ge=0, le=100)
    settings: dict = Field(default_factory=dict, description="Critic settings: trials, fps, sampling, checkpoint.")
    run_settings: dict = Field(default_factory=dict, description="How the video was made (its run record's settings).")
    warnings: list[str] = Field(default_factory=list)
    poster: str | None = Field(None, description="A small JPEG still of the video as a data: URI.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def anomaly_summary(self) -> str | None:
        """The anomaly the critic named most often, with how many trials named it."""
        named: dict[str, int] = {}
        for trial in self.trials:
            for anomaly in dict.fromkeys(trial.anomalies):
                named[anomaly] = named.get(anomaly, 0) + 1
        if not named:
            return None
        anomaly, count = max(named.items(), key=lambda item: (item[1], item[0]))
        return f"{anomaly} ({count} of {len(self.trials)} trials)"

    @property
    def label(self) -> str:
        return score_label(self.score)

    @property
    def stem(self) -> str:
        return scored_stem(self.video, self.score)

    @property
    def video_file(self) -> str:
        return self.stem + ".mp4"

    @property
    def critique_file(self) -> str:
        return self.stem + ".json"

    @property
    def report_file(self) -> str:
        return self.stem + ".html"


SCORED = re.compile(r"^(?P<base>.+)_score(?P<score>\d{3})$")


def scored_stem(base: str, value: int) -> str:
    """`<base>_score<NNN>`: the name every file about a scored video starts with."""
    return f"{base}_score{score_label(value)}"


class Critic:
    """Asks a Qwen2.5-VL model K times whether a video has anomalies."""

    def __init__(
        self,
        qwen: QwenVL,
        *,
        num_trials: int = 3,
        fps: float = CRITIC_FPS,
        max_pixels: int | None = None,
        sampling: Sampling = CRITIC_SAMPLING,
        seed: int = 0,
    ) -> None:
        if num_trials < 1:
            raise ValueError(f"num_critic_trials must be at least 1, got {num_trials}")
        self.qwen = qwen
        self.num_trials = num_trials
        self.fps = fps
        self.max_pixels = max_pixels
        self.sampling = sampling
        self.seed = seed

    def settings(self) -> dict:
        return {
            "num_trials": self.num_trials,
            "fps": self.fps,
            "max_pixels": self.max_pixels,
            "seed": self.seed,
            "sampling": self.sampling.generate_kwargs(),
        }

    def trials(self, frames: np.ndarray, video_fps: float) -> list[TrialAnswer]:
        """K parsed answers about the video `frames` (T, H, W, 3) uint8 recorded at `video_fps`."""
        clip, clip_fps = sample_frames(frames, video_fps, self.fps)
        answers = []
        for k in range(self.num_trials):
            seed = self.seed + k
            raw = self.qwen.ask(QUESTION, clip, system=SYSTEM, sampling=self.sampling, fps=clip_fps,
                                max_pixels=self.max_pixels, seed=seed)
            answers.append(parse_answer(raw, trial=k, seed=seed))
        return answers
