"""The LLM guard: verdict parsing on recorded answers, and the real generate path on tiny checkpoints whose
weights make the greedy answer "safe" or "unsafe S1"."""

from __future__ import annotations

import shutil

import pytest

from v2w_runtime.guardrail.llm_guard import LLMGuard, parse_verdict, verdict_from
from v2w_runtime.interfaces import GuardrailError

# Answers in the shapes guard models give (Llama Guard 3 answers "\n\nsafe" or "\n\nunsafe\nS1,S10").
RECORDED = [
    ("\n\nsafe", True, []),
    ("safe", True, []),
    ("Safe.", True, []),
    ("  SAFE<|eot_id|>", True, []),
    ("Verdict: safe", True, []),
    ("**Answer**: safe\n", True, []),
    ("\n\nunsafe\nS1", False, ["S1"]),
    ("unsafe\nS1,S10", False, ["S1", "S10"]),
    ("Unsafe\ns4, s12", False, ["S4", "S12"]),
    ("unsafe", False, []),
    ("verdict: UNSAFE (S9)", False, ["S9"]),
    # Not a verdict: fail closed (blocked, see llm_guard.py's docstring).
    ("", None, []),
    ("   \n ", None, []),
    ("I cannot help with that.", None, []),
    ("The request is probably fine", None, []),
    ("safe? no, unsafe", None, []),
    ("safe but not safe for children", None, []),
    ("not safe", None, []),
    ("safety first", None, []),
    ("unsafely", None, []),
    ("s1 s2 s3 fields ok", None, []),
]


@pytest.mark.parametrize("raw,safe,categories", RECORDED)
def test_parse_recorded_answers(raw, safe, categories):
    parsed = parse_verdict(raw)
    assert parsed.safe is safe
    assert parsed.categories == categories


def test_unreadable_answers_block_and_say_why():
    verdict = verdict_from(parse_verdict("The request is probably fine"))
    assert not verdict.allowed and verdict.check == "llm"
    assert "no readable verdict" in verdict.reason and "probably fine" in verdict.reason


def test_unsafe_reason_names_the_categories():
    verdict = verdict_from(parse_verdict("unsafe\nS1,S10"))
    assert not verdict.allowed
    assert "S1 violent crimes" in verdict.reason and "S10 hate" in verdict.reason


@pytest.fixture(scope="module")
def safe_guard(tiny_guardrails):
    return LLMGuard.from_pretrained(tiny_guardrails["safe-safe"] / "llm_guard")


@pytest.fixture(scope="module")
def unsafe_guard(tiny_guardrails):
    return LLMGuard.from_pretrained(tiny_guardrails["unsafe-safe"] / "llm_guard")


PROMPTS = ["A nighttime city bus terminal.", "zebra " * 60, "Überraschung: 87D, 3D, \u00e9t\u00e9"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tiny_safe_model_answers_safe(safe_guard, prompt):
    assert safe_guard.generate(prompt).strip() == "safe"
    assert safe_guard.check(prompt).allowed


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tiny_unsafe_model_answers_unsafe_with_a_category(unsafe_guard, prompt):
    assert unsafe_guard.generate(prompt).split() == ["unsafe", "s1"]
    verdict = unsafe_guard.check(prompt)
    assert not verdict.allowed and "S1 violent crimes" in verdict.reason


def test_the_verdict_comes_from_the_weights(tiny_guardrails):
    """Same checkpoint, LM head rows of "safe" and "unsafe" swapped: the answer flips."""
    guard = LLMGuard.from_pretrained(tiny_guardrails["safe-safe"] / "llm_guard")
    ids = guard.tokenizer.convert_tokens_to_ids
    head = guard.model.lm_head.weight.data
    safe, unsafe = ids("safe"), ids("unsafe")
    head[[safe, unsafe]] = head[[unsafe, safe]]
    assert guard.generate("a bus").split()[0] == "unsafe"
    assert not guard.check("a bus").allowed


def test_chat_template_builds_the_prompt(tiny_guardrails):
    """A checkpoint with a chat template (as Llama Guard has) gets its prompt from the template."""
    guard = LLMGuard.from_pretrained(tiny_guardrails["unsafe-safe"] / "llm_guard")
    guard.tokenizer.chat_template = (
        "{% for m in messages %}review : {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} verdict :{% endif %}"
    )
    assert guard.prompt("a red bus") == "review : a red bus verdict :"
    assert not guard.check("a red bus").allowed


def test_missing_folder_fails_closed(tmp_path):
    with pytest.raises(GuardrailError, match="no config.json"):
        LLMGuard.from_pretrained(tmp_path / "nothing")


def test_broken_weights_fail_closed(tiny_guardrails, tmp_path):
    broken = tmp_path / "llm_guard"
    shutil.copytree(tiny_guardrails["safe-safe"] / "llm_guard", broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(GuardrailError, match="cannot load the LLM guard"):
        LLMGuard.from_pretrained(broken)


def test_a_model_that_raises_fails_closed(tiny_guardrails):
    guard = LLMGuard.from_pretrained(tiny_guardrails["safe-safe"] / "llm_guard")
    # A model with a part missing raises inside its real forward.
    guard.model.model.rotary_emb = None
    with pytest.raises(GuardrailError, match="LLM guard failed"):
        guard.check("a bus in the snow")
