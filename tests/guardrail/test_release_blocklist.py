"""The release's keyword blocklist, checked as upstream checks it (better-profanity, NLTK lemmas, exact and
partial matches), on the tiny release's word lists."""

from __future__ import annotations

import shutil

import pytest

from v2w_runtime.guardrail.release_blocklist import ReleaseBlocklist, exact_match, partial_match, read_words
from v2w_runtime.interfaces import GuardrailError


@pytest.fixture(scope="module")
def blocklist(guardrail1) -> ReleaseBlocklist:
    return ReleaseBlocklist.from_release(guardrail1)


@pytest.mark.parametrize("text", [
    "A nighttime city bus terminal gradually shifts from stillness to subtle movement.",
    "Gorse on the hills at dawn.",  # on the whitelist
    "A gorgeous sunset.",  # a longer word holding a blocked one
    "Überraschung 87D",
    "The mass of the shooting star.",  # the words of an exact-match phrase, not the phrase
])
def test_innocent_texts_pass(blocklist, text):
    assert blocklist.check(text).allowed


@pytest.mark.parametrize("text,reason", [
    ("a massacre in the street", "contains a word of the release blocklist"),
    ("A BLOODBATH", "contains a word of the release blocklist"),
    ("g0re everywhere", "contains a word of the release blocklist"),  # better-profanity's leetspeak variants
    ("two massacres", "a form of a word"),  # NLTK's lemma of "massacres"
    ("a public beheading", "an exact-match term"),
    ("the   Mass\tShooting", "an exact-match term"),  # case and spaces do not matter
    ("", "empty"),
])
def test_blocked_texts(blocklist, text, reason):
    verdict = blocklist.check(text)
    assert not verdict.allowed and verdict.check == "blocklist" and reason in verdict.reason


def test_partial_match_by_hand():
    # Upstream's fuzzy exact-match: a run of as many words must reach difflib ratio (len - 0.4) / len.
    assert partial_match("a beheading now", "beheading")
    # "beheadings": ratio 2 * 9 / 19 = 0.947 < (9 - 0.4) / 9 = 0.956 — one letter off is already too far.
    assert not partial_match("beheadings", "beheading")
    assert exact_match("BEHEADING!", ["beheading"]) == ("beheading", False)
    assert exact_match("beheadings", ["beheading"]) is None


def test_non_ascii_becomes_spaces(blocklist):
    assert not blocklist.check("a\u00e9massacre").allowed  # "a massacre" once the accent is a space


def test_two_releases_in_one_process_do_not_share_lists(guardrail1, tmp_path):
    other = tmp_path / "Cosmos-Guardrail1"
    shutil.copytree(guardrail1 / "blocklist", other / "blocklist")
    (other / "blocklist" / "custom" / "tiny.txt").write_text("zeppelin\n")
    mine, theirs = ReleaseBlocklist.from_release(guardrail1), ReleaseBlocklist.from_release(other)
    assert not theirs.check("a zeppelin").allowed and mine.check("a zeppelin").allowed
    assert not mine.check("a massacre").allowed and theirs.check("a massacre").allowed


def test_every_file_of_a_folder_is_read_and_blank_lines_are_no_entry(tmp_path):
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "a.txt").write_text("one\n\n  two  \n")
    (tmp_path / "custom" / "b").write_text("three")
    assert read_words(tmp_path / "custom") == ["one", "two", "three"]
    with pytest.raises(GuardrailError, match="no whitelist/ folder"):
        read_words(tmp_path / "whitelist")


def test_missing_nltk_data_is_named(guardrail1, tmp_path):
    other = tmp_path / "Cosmos-Guardrail1"
    shutil.copytree(guardrail1 / "blocklist", other / "blocklist")
    shutil.rmtree(other / "blocklist" / "nltk_data" / "tokenizers")
    with pytest.raises(GuardrailError, match=r"NLTK data \(looked for .*punkt_tab/english\)"):
        ReleaseBlocklist.from_release(other)
