"""Property-based fuzz of what the runtime reads from users and models: batch JSON, output names, CLI
arguments and the critic's answers. Bounded and reproducible (derandomized, no example database)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from v2w_runtime.batch import BatchError, BatchItem, parse_batch
from v2w_runtime.critic import count_trials, parse_answer, score
from v2w_runtime.outputs import OutputPathError, OutputTarget, resolve_output
from v2w_api.base import is_blank
from v2w_api.run import RunConfig, RunConfigError
from v2w_runtime.cli import UsageError, build_parser, parse

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ODD = st.sampled_from(["\x00", "\u2024", "\uff0e", "\u2215", "\uff0f", "\u200b", "\ufeff", "\u202e", "é", "日",
                       "\U0001f600", "\\", "/", ".", "..", "~", "%2e", "%2f", " ", "\n", ":"])
NAME_PARTS = st.one_of(ODD, st.from_regex(r"[A-Za-z0-9_\-]{1,6}", fullmatch=True),
                       st.sampled_from(["../", "/etc/", "output/", "./", "s3://b/", "C:\\", "//", "x.mp4"]))
OUTPUT_NAMES = st.one_of(st.lists(NAME_PARTS, max_size=8).map("".join), st.text(max_size=40))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
ENTRY = st.fixed_dictionaries(
    {
        "input_video": st.one_of(st.text(max_size=20), st.sampled_from(["in.jpg", "s3://b/in.mp4"]), JSON),
        "prompt": st.one_of(st.text(max_size=20), JSON),
        "output_video": st.one_of(OUTPUT_NAMES, JSON),
    },
    optional={"seed": st.one_of(st.integers(), JSON), "negative_prompt": JSON, "extra": JSON,
              "output": OUTPUT_NAMES, "negativePrompt": st.text(max_size=5)},
)
BATCHES = st.one_of(JSON, st.lists(st.one_of(ENTRY, JSON), max_size=5))


@FUZZ
@given(BATCHES)
@example([])
@example([{"input_video": "a.jpg", "prompt": "p", "output_video": "../x.mp4"}])
@example([{"input_video": "a.jpg", "prompt": "p"}])
@example([{"input_video": "a.jpg", "prompt": "\u3000 ", "output_video": "a"}])
def test_batch_json_is_parsed_or_refused_naming_the_entry(data):
    try:
        items = parse_batch(data, "batch.json")
    except BatchError as error:
        message = str(error)
        assert message.startswith("batch file batch.json: ")
        if isinstance(data, list) and data:
            assert re.search(r"entry \d+", message), message
        return
    assert isinstance(data, list) and len(items) == len(data)
    for item, entry in zip(items, data):
        assert isinstance(item, BatchItem) and not is_blank(item.prompt) and item.input_video and item.output_video
        assert not set(entry) - {"input_video", "input", "prompt", "output_video", "output", "seed",
                                 "negative_prompt", "negativePrompt"}


_WORK = Path(tempfile.mkdtemp(prefix="v2w-fuzz-"))
_ROOT = _WORK / "out"


@FUZZ
@given(OUTPUT_NAMES)
@example("../x.mp4")
@example("/etc/x.mp4")
@example("\u2024\u2024/x.mp4")
@example("\uff0e\uff0e/x")
@example("out/../../x")
@example("x\x00.mp4")
@example("..\\..\\x.mp4")
@example(".")
@example("")
def test_output_names_never_leave_the_output_folder_or_prefix(name: str):
    cwd = os.getcwd()
    os.chdir(_WORK)  # the seed's form `output/x.mp4` is read relative to the working directory
    try:
        rel = resolve_output(name, _ROOT)
    except OutputPathError as error:
        assert repr(name) in str(error)
        return
    finally:
        os.chdir(cwd)
    assert rel.endswith(".mp4") and "\x00" not in rel
    pure = PurePosixPath(rel)
    assert not pure.is_absolute() and ".." not in pure.parts and "." not in pure.parts
    local = Path(os.path.normpath(_ROOT / rel))
    assert local.is_relative_to(_ROOT) and local != _ROOT
    uri = OutputTarget(_ROOT, "s3://bucket/jobs/ns/name").uri_of(rel)
    assert uri.startswith("s3://bucket/jobs/ns/name/") and "/../" not in uri + "/"


def _options() -> list[tuple[str, object]]:
    parser = build_parser("video2world")
    found = []
    for action in parser._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                found.append((flag, action))
    return found


OPTIONS = _options()
ARG_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(["1", "5", "-1", "0", "720", "16:9", "2B", "1e9", "nan",
                                                              "--prompt", "", "s3://b/x", "\x00"]))
ARGV = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([flag for flag, _ in OPTIONS]), ARG_VALUES).map(list),
        st.sampled_from([flag for flag, _ in OPTIONS]).map(lambda f: [f]),
        ARG_VALUES.map(lambda v: [v]),
    ),
    max_size=6,
).map(lambda parts: [p for part in parts for p in part])


@FUZZ
@given(ARGV)
@example(["--fps", "x"])
@example(["--resolution", "1080"])
@example(["--bogus"])
def test_cli_arguments_parse_or_exit_2_with_a_message(argv: list[str]):
    """Any command line either makes a valid run configuration or is refused with a message, never a traceback."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            config = parse("video2world", argv)
    except SystemExit as exit_:
        assert exit_.code == 2, (argv, exit_.code)
        assert "error: " in stderr.getvalue(), stderr.getvalue()
        return
    except (UsageError, RunConfigError) as exc:
        assert str(exc), argv
        return
    assert isinstance(config, RunConfig) and config.generation.fps >= 1


ANSWER_PARTS = st.one_of(
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "Answer: Yes", "Answer: No", "Yes", "No",
                     "**Yes**", "Components:", "Anomalies:", "- a hand", "1) blur", "none", "<|im_end|>", "\n",
                     "yes.", "NO!", "<answer>Maybe</answer>", "\x00", "\u202e", "日本"]),
    st.text(max_size=15),
)
ANSWERS = st.lists(ANSWER_PARTS, max_size=12).map("".join)


@FUZZ
@given(st.lists(st.one_of(ANSWERS, st.none(), st.text(max_size=200)), min_size=1, max_size=5))
@example(["<think>Components: a\n- b</think><answer>Yes</answer>", "<answer>No", "garbage"])
def test_critic_answers_never_raise_and_unparsable_ones_are_counted(raws):
    trials = [parse_answer(raw, trial=i) for i, raw in enumerate(raws)]
    counts = count_trials(trials)
    assert counts.total == len(raws) == counts.parsed + counts.unparsable
    assert counts.unparsable == sum(1 for t in trials if not t.parsed)
    assert counts.anomaly + counts.no_anomaly == counts.parsed
    for trial in trials:
        assert trial.parsed == (trial.anomaly is not None)
        assert trial.parsed or trial.error
    assert 0 <= score(counts) <= 100
    json.dumps([t.model_dump(mode="json") for t in trials])  # the critique file can always be written
