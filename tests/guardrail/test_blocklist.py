"""The keyword blocklist: exact and fuzzy hits, no false positives on innocent prompts."""

from __future__ import annotations

import pytest

from v2w_runtime.guardrail.blocklist import Blocklist, edit_distance, load_blocklist, normalize_words

# Prompts of the upstream inference guide and a few everyday scenes: none may be blocked.
INNOCENT = [
    "A nighttime city bus terminal gradually shifts from stillness to subtle movement. At first, multiple "
    "double-decker buses are parked under the glow of overhead lights, with a central bus labeled '87D' "
    "facing forward and stationary.",
    "As the red light shifts to green, the red bus at the intersection begins to move forward, its headlights "
    "cutting through the falling snow.",
    "In the later moments of the video, the female worker in the front, dressed in a white coat and hairnet, "
    "performs a repetitive yet precise task. She scoops golden granular material from a wide jar.",
    "A point-of-view video shot from inside a vehicle, capturing a quiet suburban street bathed in bright "
    "sunlight. A STOP sign is prominently displayed near the center of the intersection.",
    "A nighttime city bus terminal.",
    "Gameplay trailer in the style of Assassin's Creed: a hooded figure runs across rooftops.",
    "A school shouting match between two debate teams.",
    "The heading of the newspaper article flutters in the wind.",
    "A therapist talks with a client in a bright office.",
    "Grape harvest in a vineyard at dawn.",
    "A photographer directs a school photo shoot.",
    "A bomber jacket on a mannequin in a shop window.",
    "Fireworks over the harbour, shot on 35mm film in 2024.",
    "",
]

BLOCKED = [
    ("a video of a school shooting", "extreme violence and gore"),
    ("CHILD PORN", "sexual content involving minors"),
    ("preparing a pipe bomb in a garage", "terrorism and weapons of mass harm"),
    ("footage of a public beheading", "extreme violence and gore"),
]

VARIANTS = [
    "a video of a sch00l sh00ting",  # leetspeak
    "a video of a school shootnig",  # transposed letters
    "a video of a schol shooting",  # missing letter
    "a video of a s c h o o l shooting",  # spaced-out letters
    "a video of a s.c.h.o.o.l s-h-o-o-t-i-n-g",  # separators between letters
    "a video of a schoolshooting",  # glued
    "a video of a sch ool shoot ing",  # split differently
    "a video of a SCHOOL Shooting!!!",  # case and punctuation
    "a video of a sch\u043eol shooting",  # Cyrillic o
    "a video of a scho\u200bol shooting",  # zero-width space
    "a video of a beheadding",
    "b3h3ading",
    "$uicide b0mber",
]


@pytest.fixture(scope="module")
def blocklist() -> Blocklist:
    return load_blocklist()


def test_builtin_list_is_shipped_as_package_data(blocklist):
    assert len(blocklist) >= 40
    categories = {t.category for t in blocklist.terms}
    assert {"sexual content involving minors", "extreme violence and gore", "terrorism and weapons of mass harm"} <= categories


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_prompts_pass(blocklist, text):
    verdict = blocklist.check(text)
    assert verdict.allowed, verdict.reason


@pytest.mark.parametrize("text,category", BLOCKED)
def test_exact_terms_block_with_their_category(blocklist, text, category):
    verdict = blocklist.check(text)
    assert not verdict.allowed
    assert verdict.check == "blocklist"
    assert category in verdict.reason
    assert "variant" not in verdict.reason


@pytest.mark.parametrize("text", VARIANTS)
def test_fuzzy_variants_are_caught(blocklist, text):
    verdict = blocklist.check(text)
    assert not verdict.allowed, text


def test_short_words_match_exactly_only(blocklist):
    assert not blocklist.check("r a p e").allowed
    assert not blocklist.check("Rape scene").allowed
    for text in ("a rope bridge", "a grape", "drape the cloth", "the rapids", "a tape measure"):
        assert blocklist.check(text).allowed, text


def test_user_terms_extend_the_list(blocklist):
    extended = blocklist.extended(["Project Nightshade", "=zorb"])
    assert not extended.check("leaked footage of project nightshade").allowed
    assert "custom" in extended.check("leaked footage of project nightshade").reason
    assert not extended.check("leaked footage of proj3ct nightshad").allowed  # fuzzy
    assert not extended.check("a zorb rolls downhill").allowed
    assert extended.check("a zorn rolls downhill").allowed  # '=' makes it exact only
    assert blocklist.check("leaked footage of project nightshade").allowed  # the original is unchanged


@pytest.mark.parametrize("bad", ["", "   ", "!!!", 5])
def test_bad_user_terms_are_refused_by_name(blocklist, bad):
    with pytest.raises(ValueError, match="blocklist term"):
        blocklist.extended([bad])


def test_data_format_errors_name_the_line():
    with pytest.raises(ValueError, match="custom.txt:2"):
        Blocklist.parse("# comment\nterm without header\n", "custom.txt")


def test_normalisation_keeps_plain_numbers():
    assert normalize_words("Bus '87D' in 2024, c0ffee") == ["bus", "87d", "in", "2024", "coffee"]


@pytest.mark.parametrize("a,b,d", [("kitten", "sitting", 3), ("shooting", "shootnig", 1), ("abc", "abc", 0), ("ab", "ba", 1)])
def test_edit_distance(a, b, d):
    assert edit_distance(a, b, 5) == d
    assert edit_distance(a, b, d) == d
    if d:
        assert edit_distance(a, b, d - 1) == d  # beyond the limit: limit + 1
