"""The keyword blocklist of NVIDIA's Cosmos-Guardrail1 release, checked the way upstream checks it
(cosmos_predict2/auxiliary/guardrail/blocklist), with the same PyPI packages: better-profanity and NLTK.

Release layout (`blocklist/` in the Cosmos-Guardrail1 folder; every file of a folder is read, one entry a
line):
    custom/       blocked words and phrases
    whitelist/    words never censored
    exact_match/  words and phrases matched as whole words, and fuzzily when long
    nltk_data/    NLTK's data: corpora/wordnet.zip (the lemmatizer) and tokenizers/punkt_tab/ (the tokenizer)

A text is blocked when, in upstream's order:
1. it is empty;
2. better-profanity, loaded with the custom words and the whitelist, censors a word of the text (non-ASCII
   characters become spaces first), and the word is not on the whitelist;
3. the same for the text's words lemmatized by NLTK (word tokenizer, WordNet lemmatizer);
4. an exact_match entry occurs in the lower-cased text as whole words, or, for an entry of at least 6
   characters, some run of as many words is within difflib similarity (len - 0.4) / len of it.

The NLTK data is read from the release folder only (never from a system-wide nltk_data), through a
reader of this instance, so two guardrails in one process do not share it. Blank lines in the word
files are no entry (upstream would read an empty entry, which matches every text).
"""

from __future__ import annotations

import re
import string
import warnings
from difflib import SequenceMatcher
from pathlib import Path

from v2w_runtime.interfaces import GuardrailError, Verdict

CHECK = "blocklist"
FOLDER = "blocklist"
WORD_FOLDERS = ("custom", "whitelist", "exact_match")
NLTK_DATA = "nltk_data"
NLTK_RESOURCES = ("corpora/wordnet.zip", "tokenizers/punkt_tab/english")
# Upstream's defaults for the fuzzy exact-match check.
PARTIAL_MATCH_MIN_CHARS = 6
PARTIAL_MATCH_LETTER_COUNT = 0.4
_CENSOR = "\u2588"  # cannot occur in the text, which is ASCII by then


def read_words(folder: Path) -> list[str]:
    """Every line of every file in `folder`, stripped; blank lines skipped."""
    if not folder.is_dir():
        raise GuardrailError(f"the release blocklist has no {folder.name}/ folder ({folder})")
    words: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GuardrailError(f"cannot read the blocklist file {path}: {exc}") from exc
        words += [line.strip() for line in text.splitlines() if line.strip()]
    return words


def to_ascii(text: str) -> str:
    return re.sub(r"[^\x00-\x7F]+", " ", text)


def partial_match(prompt: str, entry: str, letters: float = PARTIAL_MATCH_LETTER_COUNT) -> bool:
    """Some run of as many words of `prompt` as `entry` has is at least (len - letters) / len similar to it
    (difflib's ratio), both lower-cased with single spaces."""
    words = prompt.split()
    count = len(entry.split())
    needed = (len(entry) - letters) / len(entry)
    return any(SequenceMatcher(None, " ".join(words[i : i + count]), entry).ratio() >= needed
               for i in range(len(words) - count + 1))


def exact_match(prompt: str, entries: list[str], min_chars: int = PARTIAL_MATCH_MIN_CHARS,
                letters: float = PARTIAL_MATCH_LETTER_COUNT) -> tuple[str, bool] | None:
    """The first entry found in `prompt` and whether it was a fuzzy (partial) match, or None."""
    text = re.sub(r"\s+", " ", prompt).strip().lower()
    for raw in entries:
        entry = re.sub(r"\s+", " ", raw).strip().lower()
        if re.search(r"\b" + re.escape(entry) + r"\b", text):
            return raw, False
        if len(entry) >= min_chars and partial_match(text, entry, letters):
            return raw, True
    return None


class ReleaseBlocklist:
    """The Cosmos-Guardrail1 blocklist; `check(text)` gives a Verdict."""

    def __init__(self, custom: list[str], whitelist: list[str], exact: list[str], nltk_data: Path) -> None:
        from better_profanity import Profanity

        self.whitelist = {w.lower() for w in whitelist}
        self.exact = exact
        self.profanity = Profanity(custom)  # custom words replace the package's own list, as upstream
        self.profanity.load_censor_words(custom_words=custom, whitelist_words=list(whitelist))
        self._tokenize, self._lemmatize = _nltk_tools(nltk_data)

    @classmethod
    def from_release(cls, guardrail_dir: str | Path) -> "ReleaseBlocklist":
        folder = Path(guardrail_dir) / FOLDER
        custom, whitelist, exact = (read_words(folder / name) for name in WORD_FOLDERS)
        return cls(custom, whitelist, exact, folder / NLTK_DATA)

    def _censored(self, text: str) -> bool:
        """better-profanity censors a word of `text` that is not whitelisted."""
        censored = self.profanity.censor(text, censor_char=_CENSOR).split()
        for i, word in enumerate(text.split()):
            if i < len(censored) and word.strip(string.punctuation).lower() in self.whitelist:
                censored[i] = word
        return any(_CENSOR in word for word in censored)

    def check(self, text: str) -> Verdict:
        if not text:
            return Verdict(False, CHECK, "the text is empty (the release blocklist lets no empty text through)")
        text = to_ascii(text)
        if self._censored(text):
            return Verdict(False, CHECK, "the text contains a word of the release blocklist")
        try:
            lemmas = " ".join(self._lemmatize(token) for token in self._tokenize(text))
        except Exception as exc:  # the lemmatized check is part of the blocklist: fail closed
            raise GuardrailError(f"the release blocklist could not lemmatize a prompt: {type(exc).__name__}: {exc}") from exc
        if self._censored(lemmas):
            return Verdict(False, CHECK, "the text contains a form of a word of the release blocklist")
        found = exact_match(text, self.exact)
        if found is not None:
            how = "a term close to an exact-match term" if found[1] else "an exact-match term"
            return Verdict(False, CHECK, f"the text contains {how} of the release blocklist")
        return Verdict.ok(CHECK)


def _private_copy_if_linked(folder: Path) -> Path:
    """`folder`, or a private copy of it when it holds linked files (the checkpoint cache hard-links what it
    downloaded from S3): NLTK's path checks refuse a multiply-linked file, as a link may lead out of its root."""
    import atexit
    import shutil
    import tempfile

    if not any(p.is_symlink() or (p.is_file() and p.stat().st_nlink > 1) for p in folder.rglob("*")):
        return folder
    copy = Path(tempfile.mkdtemp(prefix="v2w-nltk-"))
    atexit.register(shutil.rmtree, copy, True)
    shutil.copytree(folder, copy, dirs_exist_ok=True)  # copies what links point at, never the links
    return copy


def _nltk_tools(nltk_data: Path):
    """NLTK's word tokenizer and WordNet lemmatizer reading only `nltk_data` (the release's copy)."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.stem import WordNetLemmatizer
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

    root = str(_private_copy_if_linked(Path(nltk_data)).resolve())
    if root not in nltk.data.path:  # NLTK opens data (zip files above all) only under its data roots
        nltk.data.path.append(root)
    try:
        with warnings.catch_warnings():  # "no multilingual functions": only English lemmas are wanted
            warnings.simplefilter("ignore")
            wordnet = WordNetCorpusReader(nltk.data.find("corpora/wordnet.zip/wordnet/", paths=[root]), None)
        punkt = PunktSentenceTokenizer()
        punkt._params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/", paths=[root]))
    except Exception as exc:
        wanted = ", ".join(f"{nltk_data}/{r}" for r in NLTK_RESOURCES)
        first = next((line.strip() for line in str(exc).splitlines() if line.strip(" *")), "")
        raise GuardrailError(f"cannot read the release blocklist's NLTK data (looked for {wanted}): "
                             f"{type(exc).__name__}: {first}") from exc
    words = NLTKWordTokenizer()

    class _Lemmatizer(WordNetLemmatizer):
        def _morphy(self, form, pos, check_exceptions=True):
            return wordnet._morphy(form, pos, check_exceptions)

    lemmatizer = _Lemmatizer()

    def tokenize(text: str) -> list[str]:
        return [token for sentence in punkt.tokenize(text) for token in words.tokenize(sentence)]

    return tokenize, lemmatizer.lemmatize


__all__ = ["CHECK", "ReleaseBlocklist", "exact_match", "partial_match", "read_words"]
