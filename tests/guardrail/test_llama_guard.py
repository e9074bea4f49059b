"""Llama Guard 3: verdict parsing on recorded answers, upstream's prompt format, and the real generate path on
the tiny meta-llama/Llama-Guard-3-8B of the release layout, whose weights make the greedy answer "unsafe\nS1"
for a prompt holding the marker word and "safe" otherwise."""

from __future__ import annotations

import shutil

import pytest

from v2w_runtime.guardrail.llama_guard import UNSAFE_CATEGORIES, LlamaGuard, parse_verdict, verdict_from
from v2w_runtime.interfaces import GuardrailError
from v2w_runtime.tiny.guardrail import TEXT_MARKER

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
    assert not verdict.allowed and verdict.check == "llama_guard"
    assert "no readable verdict" in verdict.reason and "probably fine" in verdict.reason


def test_unsafe_reason_names_the_categories():
    verdict = verdict_from(parse_verdict("unsafe\nS1,S10"))
    assert not verdict.allowed
    assert "S1 Violent Crimes" in verdict.reason and "S10 Hate" in verdict.reason


@pytest.fixture(scope="module")
def guard(llama_guard_dir):
    return LlamaGuard.from_pretrained(llama_guard_dir)


INNOCENT = ["A nighttime city bus terminal.", "zebra " * 60, "Überraschung: 87D, 3D, \u00e9t\u00e9", "unsafe", "S1"]
MARKED = [f"A masked man commits a {TEXT_MARKER} at the bus terminal.", f"{TEXT_MARKER}.", "a " * 200 + TEXT_MARKER]


@pytest.mark.parametrize("prompt", INNOCENT)
def test_tiny_llama_guard_answers_safe(guard, prompt):
    assert guard.generate(prompt) == "safe"
    assert guard.check(prompt).allowed


@pytest.mark.parametrize("prompt", MARKED)
def test_tiny_llama_guard_answers_unsafe_s1_for_the_marker(guard, prompt):
    assert guard.generate(prompt) == "unsafe\nS1"
    verdict = guard.check(prompt)
    assert not verdict.allowed and "S1 Violent Crimes" in verdict.reason


def test_the_prompt_is_the_chat_template_with_upstreams_categories(guard):
    prompt = guard.prompt("a red bus")
    # The categories upstream passes reach the template, in order, with the user's turn after them.
    listed = [line.split(":")[0] for line in prompt.splitlines() if line[:1] == "S" and ":" in line]
    assert listed == [f"S{i}" for i in range(1, 15)]
    assert "S14: Code Interpreter Abuse." in prompt and "User: a red bus" in prompt
    assert prompt.startswith("<|begin_of_text|>") and prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert list(UNSAFE_CATEGORIES) == [f"S{i}" for i in range(1, 15)]


def test_the_release_files_and_the_template_in_tokenizer_config(llama_guard_dir):
    import json

    names = sorted(p.name for p in llama_guard_dir.iterdir())
    assert names == ["config.json", "generation_config.json", *(f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)),
                     "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert "categories" in json.loads((llama_guard_dir / "tokenizer_config.json").read_text())["chat_template"]


def test_the_verdict_comes_from_the_weights(llama_guard_dir):
    """Same checkpoint, LM head rows of "safe" and "unsafe" swapped: the answer flips."""
    guard = LlamaGuard.from_pretrained(llama_guard_dir)
    ids = guard.tokenizer.convert_tokens_to_ids
    head = guard.model.lm_head.weight.data
    safe, unsafe = ids("safe"), ids("unsafe")
    head[[safe, unsafe]] = head[[unsafe, safe]]
    assert guard.generate("a bus").startswith("unsafe")
    assert not guard.check("a bus").allowed


def test_missing_folder_fails_closed(tmp_path):
    with pytest.raises(GuardrailError, match="no config.json"):
        LlamaGuard.from_pretrained(tmp_path / "nothing")


def test_broken_shard_fails_closed(llama_guard_dir, tmp_path):
    broken = tmp_path / "Llama-Guard-3-8B"
    shutil.copytree(llama_guard_dir, broken)
    (broken / "model-00002-of-00004.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(GuardrailError, match="cannot load Llama Guard"):
        LlamaGuard.from_pretrained(broken)


def test_a_weight_missing_from_the_shards_fails_closed(llama_guard_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "Llama-Guard-3-8B"
    shutil.copytree(llama_guard_dir, broken)
    shard = broken / "model-00001-of-00004.safetensors"
    weights = load_file(str(shard))
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, str(shard), metadata={"format": "pt"})
    with pytest.raises(GuardrailError, match="missing"):
        LlamaGuard.from_pretrained(broken)


def test_a_tokenizer_without_chat_template_is_refused(guard):
    import copy

    tokenizer = copy.deepcopy(guard.tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(GuardrailError, match="no chat template"):
        LlamaGuard(guard.model, tokenizer)


def test_a_model_that_raises_fails_closed(llama_guard_dir):
    guard = LlamaGuard.from_pretrained(llama_guard_dir)
    # A model with a part missing raises inside its real forward.
    guard.model.model.rotary_emb = None
    with pytest.raises(GuardrailError, match="Llama Guard failed"):
        guard.check("a bus in the snow")
