"""Keyword blocklist: the guardrail's first, cheap text check, run before any model loads.

Text and terms are normalised the same way (case, accents, leetspeak digits and symbols inside words,
letters spaced out one by one), then each term is looked for as a sequence of words, each word within an
edit distance that grows with its length, and as one compact string glued from adjacent words
("child-porn", "childporn", "be heading"). Short words never match fuzzily (their one-letter variants are
mostly innocent words), and an allow list keeps known innocent neighbours out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import Iterable

from v2w_runtime.interfaces import Verdict

CHECK = "blocklist"
CUSTOM_CATEGORY = "custom"
_ALLOW_SECTION = "allow"

# Characters that stand for letters inside a word ("sch00l", "$uicide", "b0mb"). Only applied to
# tokens that are mostly letters, so numbers and codes ("2024", "87D", "3D", "4K") stay as they are.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "i", "+": "t"})
# A token: word characters, with leet symbols allowed inside or in front ("$uicide", "b@mb").
_TOKEN = re.compile(r"[@$]?[^\W_]+(?:[@$!|+*.\-_']?[^\W_]+)*", re.UNICODE)
_INNER_SPLIT = re.compile(r"[*.\-_']")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
# Cyrillic and Greek letters that look like Latin ones, a common way around keyword filters.
_LOOKALIKES = str.maketrans("аеорсухіјѕԁɡοατνκ", "aeopcyxijsdgoatvk")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.translate(_ZERO_WIDTH))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return text.translate(_LOOKALIKES)


def _leet(token: str) -> str:
    letters = sum(ch.isalpha() for ch in token)
    if letters > len(token) - letters:
        return token.translate(_LEET)
    return token


def normalize_words(text: str) -> list[str]:
    """The words of `text` as the blocklist compares them."""
    return [word for word, _ in _words_and_runs(text)]


def _words_and_runs(text: str) -> list[tuple[str, bool]]:
    """Normalised words, each flagged True when it was spelled out one letter at a time."""
    words: list[str] = []
    for raw in _TOKEN.findall(_fold(text)):
        # A word split by a separator keeps its halves ("child-porn" -> child, porn); leet symbols were
        # kept inside the token so that they can be read as letters first.
        for part in _INNER_SPLIT.split(_leet(raw)):
            part = re.sub(r"[^\w]", "", part)
            if part:
                words.append(part)
    return _join_spelled_out(words)


def _join_spelled_out(words: list[str]) -> list[tuple[str, bool]]:
    """Runs of three or more one-letter words are one word spelled out ("s h o o t i n g"). Where
    such a run spells several words, or starts with an article ("a s h o o t i n g"), the term is found
    inside it (see `_find_term`)."""
    out: list[tuple[str, bool]] = []
    run: list[str] = []
    for word in words + [""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        if len(run) >= 3:
            out.append(("".join(run), True))
        else:
            out.extend((letter, False) for letter in run)
        run = []
        if word:
            out.append((word, False))
    return out


def max_edits(word: str) -> int:
    """How many edits a word of the text may be away from a term's word and still match."""
    if len(word) <= 5:
        return 0
    if len(word) <= 9:
        return 1
    return 2


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (substitution, insertion, deletion, adjacent swap), or
    `limit + 1` as soon as it is certain to exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]
    category: str
    exact_only: bool = False

    @property
    def compact(self) -> str:
        return "".join(self.words)


@dataclass(frozen=True)
class Match:
    term: Term
    found: str  # the normalised words of the text that matched
    fuzzy: bool


class Blocklist:
    """A set of blocked terms. `check(text)` gives a Verdict; `find(text)` the first match, if any."""

    def __init__(self, terms: Iterable[Term], allow: Iterable[str] = ()) -> None:
        self.terms = tuple(t for t in terms if t.words)
        self.allow = frozenset(allow)

    # -- building -----------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, source: str = "<blocklist>") -> "Blocklist":
        """Read the data-file format (see blocklist.txt beside this module)."""
        terms: list[Term] = []
        allow: list[str] = []
        category: str | None = None
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                category = line[1:-1].strip()
                continue
            if category is None:
                raise ValueError(f"{source}:{number}: term {line!r} before any [category] header")
            if category == _ALLOW_SECTION:
                allow.extend(normalize_words(line))
            else:
                terms.append(make_term(line, category))
        return cls(terms, allow)

    @classmethod
    def builtin(cls) -> "Blocklist":
        data = resources.files(__package__).joinpath("blocklist.txt").read_text("utf-8")
        return cls.parse(data, "built-in blocklist")

    def extended(self, extra: Iterable[str], category: str = CUSTOM_CATEGORY) -> "Blocklist":
        """A copy with the user's terms added ("=word" for exact-only, as in the data file)."""
        added = []
        for item in extra:
            if not isinstance(item, str) or not normalize_words(item.lstrip("=")):
                raise ValueError(f"blocklist term {item!r} has no letters or digits to match")
            added.append(make_term(item, category))
        return Blocklist(self.terms + tuple(added), self.allow)

    # -- matching -----------------------------------------------------------------------------------
    def _word_matches(self, token: str, word: str, exact_only: bool) -> bool | None:
        """None: no match; False: exact match; True: fuzzy match."""
        if token == word:
            return False
        if exact_only or token in self.allow:
            return None
        limit = max_edits(word)
        if limit and edit_distance(token, word, limit) <= limit:
            return True
        return None

    def find(self, text: str) -> Match | None:
        words = _words_and_runs(text)
        if not words:
            return None
        tokens = [word for word, _ in words]
        spelled = [word for word, run in words if run]
        index = _WordIndex(tokens)
        glued = self._glued(tokens)
        for term in self.terms:
            match = self._find_term(term, index, spelled, glued)
            if match is not None:
                return match
        return None

    def _glued(self, tokens: list[str]) -> dict[str, tuple[int, int]]:
        """Every string that runs of adjacent words spell without spaces, up to the longest term (and up
        to twice its word count plus two words), mapped to the span of words that spell it."""
        longest = max((len(t.compact) for t in self.terms), default=0)
        window = 2 * max((len(t.words) for t in self.terms), default=0) + 2
        glued: dict[str, tuple[int, int]] = {}
        for start in range(len(tokens)):
            text = ""
            for end in range(start, min(len(tokens), start + window)):
                text += tokens[end]
                if len(text) > longest:
                    break
                glued.setdefault(text, (start, end + 1))
        return glued

    def _find_term(self, term: Term, index: "_WordIndex", spelled: list[str], glued: dict[str, tuple[int, int]]) -> Match | None:
        tokens = index.tokens
        k = len(term.words)
        # 1. Word by word, each word exact or within its edit budget; starts only where the first word
        # matches (found among the text's distinct words of a fitting length).
        first = term.words[0]
        budget = 0 if term.exact_only else max_edits(first)
        starts = sorted(
            i
            for token in index.near(first, budget)
            if self._word_matches(token, first, term.exact_only) is not None
            for i in index.positions[token]
        )
        for start in starts:
            if start + k > len(tokens):
                break
            fuzzy = False
            for offset, word in enumerate(term.words):
                result = self._word_matches(tokens[start + offset], word, term.exact_only)
                if result is None:
                    break
                fuzzy |= result
            else:
                return Match(term, " ".join(tokens[start : start + k]), fuzzy)
        compact = term.compact
        # 2. Inside letters spelled out one by one, which carry no word boundaries at all.
        if len(compact) >= 6:
            for run in spelled:
                if compact in run:
                    return Match(term, run, True)
        # 3. Glued or split differently: adjacent words that spell the term without spaces. Exact only:
        # fuzzy matching across word boundaries finds innocent pairs of words.
        if len(compact) < 6 and term.exact_only:
            return None
        if compact in glued:
            start, end = glued[compact]
            return Match(term, " ".join(tokens[start:end]), True)
        return None

    def check(self, text: str) -> Verdict:
        match = self.find(text)
        if match is None:
            return Verdict.ok(CHECK)
        how = "a variant of a blocked term" if match.fuzzy else "a blocked term"
        return Verdict(False, CHECK, f"the text contains {how} (category: {match.term.category})")

    def __len__(self) -> int:
        return len(self.terms)


class _WordIndex:
    """Where each distinct word of a text occurs, and its distinct words by length."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.positions: dict[str, list[int]] = {}
        for i, token in enumerate(tokens):
            self.positions.setdefault(token, []).append(i)
        self.by_length: dict[int, list[str]] = {}
        for token in self.positions:
            self.by_length.setdefault(len(token), []).append(token)

    def near(self, word: str, budget: int) -> list[str]:
        """Distinct words whose length is within `budget` of `word`'s."""
        return [t for n in range(len(word) - budget, len(word) + budget + 1) for t in self.by_length.get(n, ())]


def make_term(line: str, category: str) -> Term:
    exact_only = line.startswith("=")
    return Term(tuple(normalize_words(line.lstrip("="))), category, exact_only)


def load_blocklist(extra: Iterable[str] = ()) -> Blocklist:
    """The built-in list plus the user's extra terms."""
    blocklist = Blocklist.builtin()
    extra = list(extra)
    return blocklist.extended(extra) if extra else blocklist
