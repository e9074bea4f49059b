"""Parsing and scoring of recorded critic answers, malformed ones included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2w_runtime.critic import TrialAnswer, count_trials, parse_answer, score, score_label

CASES = json.loads((Path(__file__).parent / "data" / "critic_answers.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_recorded_answers(case):
    answer = parse_answer(case["raw"], trial=2, seed=7)
    assert answer.trial == 2 and answer.seed == 7 and answer.raw == case["raw"]
    assert answer.parsed is case["parsed"]
    assert answer.anomaly is case["anomaly"]
    assert len(answer.components) == case["components"], answer.components
    assert len(answer.anomalies) == case["anomalies"], answer.anomalies
    assert (answer.error is None) is case["parsed"]


def test_components_and_anomalies_text():
    answer = parse_answer(next(c["raw"] for c in CASES if c["id"] == "clean_yes"))
    assert answer.components == ["worker: scoops grain into bottles", "conveyor belt: moves left"]
    assert answer.anomalies[1] == "bottles: one bottle disappears mid-belt"
    assert answer.reasoning.startswith("Components:")


def test_cosmos_reason1_template_fills_components_anomalies_and_overview():
    """The XML template Cosmos-Reason1 answers in: each <component> with its analysis, the ones whose
    <anomaly> says Yes listed as anomalies."""
    answer = parse_answer(next(c["raw"] for c in CASES if c["id"] == "reason1_template_yes"))
    assert answer.overview == "A worker fills bottles on a belt."
    assert answer.components == ["Worker's hand: The fingers merge with the jar for a few frames.",
                                 "Belt: Moves left evenly.", "Bottles: One bottle vanishes mid-belt."]
    assert answer.anomalies == ["Worker's hand: The fingers merge with the jar for a few frames.",
                                "Bottles: One bottle vanishes mid-belt."]


def _trial(parsed: bool, anomaly: bool | None) -> TrialAnswer:
    return TrialAnswer(trial=0, raw="", parsed=parsed, anomaly=anomaly)


@pytest.mark.parametrize(
    "trials, expected_score, unparsable",
    [
        ([(True, False)] * 3, 100, 0),
        ([(True, True)] * 3, 0, 0),
        ([(True, False), (True, False), (True, True)], 67, 0),
        ([(True, False), (True, True), (True, True)], 33, 0),
        ([(True, False), (False, None), (True, True)], 50, 1),
        ([(True, False), (False, None), (False, None)], 100, 2),
        ([(False, None)] * 3, 0, 3),
        ([], 0, 0),
    ],
)
def test_score(trials, expected_score, unparsable):
    counts = count_trials([_trial(*t) for t in trials])
    assert counts.unparsable == unparsable
    assert counts.parsed + counts.unparsable == counts.total == len(trials)
    assert counts.no_anomaly + counts.anomaly == counts.parsed
    assert score(counts) == expected_score


def test_scores_from_recorded_answers():
    answers = [parse_answer(c["raw"], trial=i) for i, c in enumerate(CASES)]
    counts = count_trials(answers)
    expected_parsed = [c for c in CASES if c["parsed"]]
    assert counts.parsed == len(expected_parsed)
    assert counts.no_anomaly == sum(1 for c in expected_parsed if not c["anomaly"])
    assert score(counts) == round(100 * counts.no_anomaly / counts.parsed)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=20))
def test_score_is_a_percent(flags):
    counts = count_trials([_trial(p, a if p else None) for p, a in flags])
    value = score(counts)
    assert 0 <= value <= 100
    assert len(score_label(value)) == 3
    if counts.parsed:
        assert abs(value - 100 * counts.no_anomaly / counts.parsed) <= 0.5


def test_score_label():
    assert [score_label(v) for v in (0, 7, 67, 100)] == ["000", "007", "067", "100"]
    with pytest.raises(ValueError, match="0-100"):
        score_label(101)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_parser_never_raises(text):
    answer = parse_answer(text)
    assert answer.parsed is (answer.anomaly is not None)
