"""A small random Qwen2.5-VL checkpoint (the Cosmos-Reason1 architecture) built offline.

The model is the real `Qwen2_5_VLForConditionalGeneration` with a few layers and narrow towers; the
processor is the real `Qwen2_5_VLProcessor` (image + video processors) and the tokenizer a byte-level
BPE trained here on a few sentences of our own, with the special tokens and a chat template that follow
the Qwen layout. Nothing is downloaded. Tests and the demo call `write_tiny_qwen`.
"""

from __future__ import annotations

from pathlib import Path

import torch

# A few sentences so the byte-level BPE learns whole English words; the tiny model then writes
# legible (random) words instead of raw bytes, which keeps the demo's refined prompts readable.
_CORPUS = [
    "A car drives slowly along a wet city street at night while the lights reflect on the road.",
    "The camera follows a red bus as it turns left at the corner and stops near the station.",
    "Snow falls softly over the park; trees sway in the wind and people walk past the bench.",
    "A worker in a white coat pours golden grain into glass bottles on a moving belt.",
    "Sunlight shines through the window onto a wooden table with a cup of coffee and a book.",
    "Waves roll onto the sandy beach as birds fly over the water under a clear blue sky.",
    "The video shows a robot arm that picks up a box and places it on a shelf in the warehouse.",
    "No anomaly was found. Yes, the motion is smooth, the objects keep their shape and size.",
    "Components: car, road, light, person, tree, building, sky. Anomalies: none.",
]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Our chat template in the Qwen layout: <|im_start|>role\n ... <|im_end|>, a vision block per image or
# video, and an open assistant turn when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'video' -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


def build_tokenizer(vocab_size: int = 512, extra_corpus: list[str] | None = None):
    """A byte-level BPE tokenizer with the Qwen special tokens, trained locally (on `extra_corpus` too)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    bpe.train_from_iterator(_CORPUS + list(extra_corpus or []), trainer=trainer)
    state = bpe.model.__getstate__()
    import json

    model_state = json.loads(state.decode() if isinstance(state, bytes) else state)
    vocab: dict[str, int] = model_state["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=131072,
    )


def build_processor(tokenizer, max_pixels: int = 112 * 112):
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=max_pixels, cap_pixels_per_frame=True)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer, hidden: int = 32, layers: int = 2):
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)
    heads = 2
    head_dim = hidden // heads
    # The three M-RoPE sections (time, height, width) must add up to half the head dimension.
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=1,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            bos_token_id=ids[0],
            eos_token_id=ids[2],
            pad_token_id=ids[0],
        ),
        vision_config=dict(
            depth=2,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_heads=heads,
            out_hidden_size=hidden,
            fullatt_block_indexes=[1],
            window_size=56,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids[5],
        video_token_id=ids[6],
        vision_start_token_id=ids[3],
        vision_end_token_id=ids[4],
    )


def write_tiny_qwen(out_dir: str | Path, seed: int = 0, *, hidden: int = 32, layers: int = 2) -> Path:
    """Write a random Qwen2.5-VL checkpoint (config, safetensors, processor, tokenizer) to `out_dir`.

    The same seed gives the same weights. The output head is shaped so that greedy decoding prefers
    tokens that decode to printable ASCII: the text stays random but readable.
    """
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = build_config(tokenizer, hidden=hidden, layers=layers)

    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's generator left as it was
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        for token, index in tokenizer.get_vocab().items():
            text = tokenizer.convert_tokens_to_string([token])
            if token in SPECIAL_TOKENS or not text.isascii() or not text.isprintable():
                head[index].zero_()
        # Make the printable tokens clearly preferred over the zeroed ones under greedy decoding.
        head.mul_(8.0)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Write a small random Qwen2.5-VL (Cosmos-Reason1 layout) checkpoint.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_tiny_qwen(args.out_dir, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
