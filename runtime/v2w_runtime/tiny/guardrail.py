"""Tiny guardrail checkpoints of the real classes, for the demo and the tests (offline, seeded).

`write_tiny_guardrail(out_dir, seed)` writes the layout `load_guardrail` reads:
    llm_guard/          LlamaForCausalLM (2 layers, width 32) + a word-level tokenizer built here
    video_classifier/   encoder/ SiglipVisionModel (2 layers, width 32, 32 px input), head.safetensors,
                        head.json (7 classes, "safe" first)

A random model answers random text, so both models are given weights that make their answer a chosen one
by ordinary arithmetic, not by patching code:
- the LLM's residual stream carries a "state" coordinate per token kind (any prompt word, the verdict word,
  the category code) that dwarfs the random layers' contributions; the final norm keeps only those
  coordinates and the LM head maps each state to the next token, so greedy decoding spells
  "safe" then end-of-text, or "unsafe", "S1", end-of-text;
- the video head's last layer has zero weights and a bias that favours the chosen class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

from ..guardrail.checker import LLM_GUARD, VIDEO_CLASSIFIER
from ..guardrail.llm_guard import INSTRUCTION
from ..guardrail.video_classifier import ENCODER, HeadConfig, SafetyHead, save_head

VIDEO_CLASSES = ["safe", "sexual", "violence", "drugs", "child_abuse", "hate", "self_harm"]

_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
_WORDS = (
    "a an the of in on at to and or with from is are it by for into over while then video scene camera "
    "bus car street road city night day light people person man woman worker hand table snow rain red "
    "white black moves slowly forward terminal"
).split()
_STATE = 30.0  # size of the state coordinates against the random layers' O(0.1) contributions


def build_tokenizer():
    """A word-level tokenizer: our instruction's words, a few scene words, the verdict words and codes."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    instruction_words = [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(INSTRUCTION.lower())]
    vocab_words = dict.fromkeys([*_SPECIALS, "safe", "unsafe", *(f"s{i}" for i in range(1, 15)),
                                 *instruction_words, *_WORDS, ",", ".", ":", "'", "!", "?", "-"])
    vocab = {w: i for i, w in enumerate(vocab_words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def build_llm_guard(verdict: Literal["safe", "unsafe"], seed: int):
    """A tiny LlamaForCausalLM whose greedy answer is `verdict` (with category S1 when unsafe)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=ids("<s>"), eos_token_id=ids("</s>"), pad_token_id=ids("<pad>"), tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    # State coordinates: 0 = "the verdict comes next", 1 = "the category comes next", 2 = "stop next".
    # Every token puts the model in state 0, except the verdict and category tokens of the chain.
    after = {ids("safe"): 2} if verdict == "safe" else {ids("unsafe"): 1, ids("s1"): 2}
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb[:, :3] = 0.0
        emb[:, 0] = _STATE
        for token, state in after.items():
            emb[token, 0] = 0.0
            emb[token, state] = _STATE
        model.model.norm.weight.zero_()
        model.model.norm.weight[:3] = 1.0
        head = model.lm_head.weight
        head.zero_()
        head[ids(verdict), 0] = 1.0
        head[ids("s1"), 1] = 1.0
        head[ids("</s>"), 2] = 1.0
    return model, tokenizer


def build_video_classifier(verdict: Literal["safe", "unsafe"], seed: int, unsafe_class: str = "violence"):
    """A tiny SiglipVisionModel and a head whose top class is "safe" or `unsafe_class` for any frame."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8)
    torch.manual_seed(seed)
    encoder = SiglipVisionModel(config).eval()
    head_config = HeadConfig(input_dim=32, hidden_dims=[16, 8], classes=VIDEO_CLASSES, safe_class="safe")
    head = SafetyHead(head_config)
    with torch.no_grad():
        last = head.layers[-1]
        last.weight.zero_()
        last.bias.fill_(-5.0)
        last.bias[VIDEO_CLASSES.index("safe" if verdict == "safe" else unsafe_class)] = 5.0
    return encoder, head, head_config


def write_tiny_guardrail(out_dir: str | Path, seed: int = 0, text_verdict: Literal["safe", "unsafe"] = "safe",
                         video_verdict: Literal["safe", "unsafe"] = "safe") -> Path:
    """Write a tiny guardrail checkpoint; by default both models let everything pass (the blocklist and
    face pixelation still work for real)."""
    for name, value in (("text_verdict", text_verdict), ("video_verdict", video_verdict)):
        if value not in ("safe", "unsafe"):
            raise ValueError(f"{name} must be 'safe' or 'unsafe', got {value!r}")
    out = Path(out_dir)
    model, tokenizer = build_llm_guard(text_verdict, seed)
    model.save_pretrained(out / LLM_GUARD)
    tokenizer.save_pretrained(out / LLM_GUARD)
    encoder, head, head_config = build_video_classifier(video_verdict, seed + 1)
    encoder.save_pretrained(out / VIDEO_CLASSIFIER / ENCODER)
    (out / VIDEO_CLASSIFIER / ENCODER / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, indent=2) + "\n"
    )
    save_head(out / VIDEO_CLASSIFIER, head, head_config)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m v2w_runtime.tiny.guardrail",
        description="Write a tiny random guardrail checkpoint (LLM guard + SigLIP video classifier). Offline.",
    )
    parser.add_argument("--out", required=True, help="Folder to write the checkpoint into (created).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default: 0).")
    parser.add_argument("--text-verdict", choices=["safe", "unsafe"], default="safe",
                        help="What the LLM guard answers for every prompt (default: safe).")
    parser.add_argument("--video-verdict", choices=["safe", "unsafe"], default="safe",
                        help="What the video classifier says of every frame (default: safe).")
    args = parser.parse_args(argv)
    path = write_tiny_guardrail(args.out, args.seed, args.text_verdict, args.video_verdict)
    print(f"tiny guardrail checkpoint written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
