"""The text guard of upstream's guardrail: Llama Guard 3 (`meta-llama/Llama-Guard-3-8B`), a causal LM that
answers "safe", or "unsafe" with the violated hazard categories on the next line ("unsafe\nS1,S10").

As upstream (cosmos_predict2/auxiliary/guardrail/llamaGuard3): the prompt is the user turn of a one-message
conversation, rendered by the checkpoint's own chat template with `categories` set to the 14 MLCommons
hazard categories below; the model answers with greedy decoding, up to 100 new tokens.

Unlike upstream, which lets a prompt through when the model raises, a model that cannot load or run is a
GuardrailError (fail closed), and an answer that cannot be read as one of the two verdicts blocks the text:
a model that ran but did not say "safe" has not cleared it. That is a verdict, not an error, so a batch
goes on and the reason shows in result.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from v2w_runtime.interfaces import GuardrailError, Verdict

CHECK = "llama_guard"
REPO = "meta-llama/Llama-Guard-3-8B"
MAX_NEW_TOKENS = 100

# Llama Guard 3's hazard categories (the MLCommons taxonomy), as upstream passes them to the chat template.
UNSAFE_CATEGORIES = {
    "S1": "Violent Crimes.",
    "S2": "Non-Violent Crimes.",
    "S3": "Sex Crimes.",
    "S4": "Child Exploitation.",
    "S5": "Defamation.",
    "S6": "Specialized Advice.",
    "S7": "Privacy.",
    "S8": "Intellectual Property.",
    "S9": "Indiscriminate Weapons.",
    "S10": "Hate.",
    "S11": "Self-Harm.",
    "S12": "Sexual Content.",
    "S13": "Elections.",
    "S14": "Code Interpreter Abuse.",
}

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
        named = [f"{c} {UNSAFE_CATEGORIES[c].rstrip('.')}" if c in UNSAFE_CATEGORIES else c for c in parsed.categories]
        detail = f" (categories: {', '.join(named)})" if named else ""
        return Verdict(False, CHECK, f"Llama Guard 3 rated the text unsafe{detail}")
    shown = " ".join(parsed.raw.split())[:60]
    return Verdict(False, CHECK, f"Llama Guard 3 gave no readable verdict ({shown!r}); blocked to stay safe")


class LlamaGuard:
    """Llama Guard 3 with its tokenizer, asked for a verdict with greedy decoding."""

    def __init__(self, model, tokenizer, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise GuardrailError("the Llama Guard tokenizer has no chat template: its prompt format cannot be built")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, **kwargs) -> "LlamaGuard":
        """Load a transformers checkpoint folder (config.json, safetensors shards, tokenizer); every weight of
        the model must be in the shards."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(path, "config.json").is_file():
            raise GuardrailError(f"cannot load Llama Guard: {path} holds no config.json of a transformers model")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model, info = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, local_files_only=True,
                                                               output_loading_info=True)
        except Exception as exc:  # any failure to load means no text check: fail closed
            raise GuardrailError(f"cannot load Llama Guard from {path}: {type(exc).__name__}: {exc}") from exc
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise GuardrailError(f"cannot load Llama Guard from {path}: {len(missing)} weight(s) missing, e.g. {missing[0]}")
        return cls(model.to(device), tokenizer, **kwargs)

    def prompt(self, text: str) -> str:
        """The text the model reads: the checkpoint's chat template around one user turn."""
        return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], categories=UNSAFE_CATEGORIES,
                                                  tokenize=False)

    @torch.inference_mode()
    def generate(self, text: str) -> str:
        """The model's raw answer about `text`."""
        # The chat template writes every special token the prompt needs.
        inputs = self.tokenizer(self.prompt(text), return_tensors="pt", add_special_tokens=False)
        device = next(self.model.parameters()).device
        input_ids = inputs["input_ids"].to(device)
        out = self.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=self.max_new_tokens,
            do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=self.tokenizer.pad_token_id or 0,
        )
        return self.tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)

    def check(self, text: str) -> Verdict:
        try:
            raw = self.generate(text)
        except Exception as exc:
            raise GuardrailError(f"Llama Guard failed while checking a prompt: {type(exc).__name__}: {exc}") from exc
        return verdict_from(parse_verdict(raw))

    def to(self, device: str | torch.device) -> "LlamaGuard":
        self.model.to(device)
        return self
