"""LLM safety classifier: a causal LM that answers "safe", or "unsafe" followed by hazard codes.

This is the verdict format of the Llama Guard family (first line `safe` / `unsafe`, second line the
violated categories as `S1,S10`), so any transformers causal-LM checkpoint trained to answer that way
works. When the tokenizer carries a chat template (Llama Guard's holds its own policy text), the prompt is
built with it; otherwise with our instruction below.

An answer that cannot be read as one of the two verdicts blocks the text (fail closed): a model that ran
but did not say "safe" has not cleared the text. It is a verdict, not an error, so a batch goes on and the
reason shows in result.json; a guard checkpoint that never answers in the format blocks every prompt with
that visible reason, which points at the checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from v2w_runtime.interfaces import GuardrailError, Verdict

CHECK = "llm"

# The MLCommons hazard taxonomy codes used by Llama Guard 3, for readable block reasons.
HAZARD_CATEGORIES = {
    "S1": "violent crimes",
    "S2": "non-violent crimes",
    "S3": "sex-related crimes",
    "S4": "child sexual exploitation",
    "S5": "defamation",
    "S6": "specialized advice",
    "S7": "privacy",
    "S8": "intellectual property",
    "S9": "indiscriminate weapons",
    "S10": "hate",
    "S11": "suicide and self-harm",
    "S12": "sexual content",
    "S13": "elections",
    "S14": "code interpreter abuse",
}

INSTRUCTION = (
    "You review requests sent to a video generation service. Decide whether the request below asks for "
    "harmful material: sexual content involving minors, sexual violence, graphic violence or gore, "
    "terrorism, weapons of mass harm, hate, self-harm, or other clearly harmful content.\n\n"
    "Request: {text}\n\n"
    "Reply with one word, safe or unsafe. After unsafe, put the violated category codes on the next line.\n"
    "Verdict:"
)

# Words a model may put in front of its verdict ("Verdict: safe", "**Answer**: unsafe").
_LABELS = {"verdict", "answer", "assessment", "result", "classification", "output", "rating", "final"}
_WORD = re.compile(r"[a-z]+")
_CODE = re.compile(r"\bS(\d{1,2})\b", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedVerdict:
    safe: bool | None  # None: the text is not a verdict we can read
    categories: list[str] = field(default_factory=list)
    raw: str = ""


def parse_verdict(raw: str) -> ParsedVerdict:
    """Read a guard model's answer. The first word after optional labels decides; a "safe" answer that
    also says "unsafe" (or "not safe") is ambiguous and reads as no verdict."""
    words = _WORD.findall(raw.lower())
    while words and words[0] in _LABELS:
        words.pop(0)
    if not words:
        return ParsedVerdict(None, raw=raw)
    first = words[0]
    categories = [f"S{int(n)}" for n in _CODE.findall(raw)]
    if first == "unsafe":
        return ParsedVerdict(False, categories, raw)
    if first == "safe":
        contradicted = "unsafe" in words or any(a == "not" and b == "safe" for a, b in zip(words, words[1:]))
        return ParsedVerdict(None if contradicted else True, raw=raw)
    return ParsedVerdict(None, raw=raw)


def verdict_from(parsed: ParsedVerdict) -> Verdict:
    if parsed.safe:
        return Verdict.ok(CHECK)
    if parsed.safe is False:
        named = [f"{c} {HAZARD_CATEGORIES[c]}" if c in HAZARD_CATEGORIES else c for c in parsed.categories]
        detail = f" (categories: {', '.join(named)})" if named else ""
        return Verdict(False, CHECK, f"the safety classifier rated the text unsafe{detail}")
    shown = " ".join(parsed.raw.split())[:60]
    return Verdict(False, CHECK, f"the safety classifier gave no readable verdict ({shown!r}); blocked to stay safe")


class LLMGuard:
    """A causal LM with its tokenizer, asked for a verdict with greedy decoding."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 20) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, **kwargs) -> "LLMGuard":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(path, "config.json").is_file():
            raise GuardrailError(f"cannot load the LLM guard: {path} holds no config.json of a transformers model")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, local_files_only=True)
            model.to(device)
        except Exception as exc:  # any failure to load means no text check: fail closed
            raise GuardrailError(f"cannot load the LLM guard from {path}: {type(exc).__name__}: {exc}") from exc
        return cls(model, tokenizer, **kwargs)

    def prompt(self, text: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return INSTRUCTION.format(text=text)

    @torch.inference_mode()
    def generate(self, text: str) -> str:
        """The model's raw answer about `text`."""
        prompt = self.prompt(text)
        # A chat template already writes the special tokens it needs.
        with_specials = not getattr(self.tokenizer, "chat_template", None)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=with_specials)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        out = self.model.generate(
            **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, temperature=None, top_p=None,
            top_k=None, pad_token_id=pad,
        )
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def check(self, text: str) -> Verdict:
        try:
            raw = self.generate(text)
        except Exception as exc:
            raise GuardrailError(f"the LLM guard failed while checking a prompt: {type(exc).__name__}: {exc}") from exc
        return verdict_from(parse_verdict(raw))

    def to(self, device: str | torch.device) -> "LLMGuard":
        self.model.to(device)
        return self
