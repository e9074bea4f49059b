"""Small random checkpoints of the real Video2World architectures, for the demo and the tests.

Every component is the class the 2B checkpoint uses, with the same config keys, but a few layers and
small widths, so a whole generation runs on a CPU in seconds. Weights come from a seeded generator:
the same seed writes the same checkpoint. Nothing is downloaded; the tokenizer is built here.

Each component has its own builder (`build_transformer`, `build_vae`, ...) so that other parts of the
runtime (guardrail, refiner) can add builders for their models next to these.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler
from transformers import T5Config, T5EncoderModel, T5Tokenizer

# Widths of the tiny transformer; the text encoder's width must equal TEXT_EMBED_DIM.
TEXT_EMBED_DIM = 32

# Words that get their own token, so that prompts do not fall apart into single characters.
_WORDS = (
    "a an the of in on at to and or with from as is are it its by for into over under while then "
    "video scene camera shot slowly gradually moves moving forward toward away left right up down "
    "bus car street road city night day light lights sun sky water tree trees people person man woman "
    "worker hand hands table bottle red blue green white black yellow golden bright dark snow rain "
    "ugly blurry static motion blur noise jitter low quality frames footage colors unrealistic "
    "flicker frozen warped duplicated faces text watermark blocked"
).split()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Fill every floating parameter from one seeded generator, in a fixed order.

    The libraries' own initialisers draw from the global RNG and leave some layers at zero (which would
    make the output ignore the input); drawing everything ourselves makes a checkpoint a function of the
    seed alone and gives every layer a visible effect.
    """
    gen = _seeded(seed)
    with torch.no_grad():
        for name, param in sorted(module.named_parameters(), key=lambda item: item[0]):
            if not param.dtype.is_floating_point:
                continue
            if name.endswith("weight") and ("norm" in name or name.endswith(".gamma")) or name.endswith(".gamma"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(std * torch.randn(param.shape, generator=gen))
    return module


def build_tokenizer() -> T5Tokenizer:
    """A T5 (Unigram) tokenizer with a small vocabulary: whole common words, then single characters."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    words = [(f"\u2581{w}", -5.0 - i * 1e-3) for i, w in enumerate(dict.fromkeys(_WORDS))]
    chars = [chr(c) for c in range(33, 127)]
    pieces = [(c, -10.0) for c in chars] + [(f"\u2581{c}", -9.0) for c in chars]
    extra_ids = 100  # T5 keeps 100 sentinel tokens at the end of its vocabulary; so do we
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]
    return T5Tokenizer(vocab=specials + words + pieces + sentinels, extra_ids=extra_ids, model_max_length=512)


def build_text_encoder(seed: int, vocab_size: int) -> T5EncoderModel:
    """A T5 encoder of the kind Cosmos uses (relu feed-forward, relative attention), two layers wide 32."""
    config = T5Config(
        vocab_size=vocab_size,
        d_model=TEXT_EMBED_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=0,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="relu",
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )
    return _randomize(T5EncoderModel(config).eval(), seed, std=0.3)


def build_transformer(seed: int) -> CosmosTransformer3DModel:
    """The Cosmos-Predict2 DiT with the 2B model's config keys: 2 layers, 2 heads of 16."""
    model = CosmosTransformer3DModel(
        in_channels=17,  # 16 latent channels + the conditioning mask, as the 2B model
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=4.0,
        text_embed_dim=TEXT_EMBED_DIM,
        adaln_lora_dim=8,
        max_size=(128, 240, 240),
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
    )
    return _randomize(model.eval(), seed)


def build_vae(seed: int) -> AutoencoderKLWan:
    """The Wan 2.1 VAE (8x spatial, 4x temporal compression, 16 latent channels) at base width 8."""
    model = AutoencoderKLWan(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        attn_scales=[],
        temperal_downsample=[False, True, True],
    )
    return _randomize(model.eval(), seed, std=0.1)


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The scheduler the Video2World checkpoints ship: flow-match Euler over Karras sigmas."""
    return FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True, shift=1.0)


def write_checkpoint(out: str | Path, seed: int = 0) -> Path:
    """Write a diffusers-format Video2World checkpoint folder with random tiny weights; return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    # Separate seeds per component, so that adding a component never changes the others' weights.
    components = {
        "transformer": build_transformer(seed * 10 + 1),
        "vae": build_vae(seed * 10 + 2),
        "text_encoder": build_text_encoder(seed * 10 + 3, vocab_size=len(tokenizer)),
        "scheduler": build_scheduler(),
        "tokenizer": tokenizer,
    }
    index = {"_class_name": "Cosmos2VideoToWorldPipeline", "_diffusers_version": _diffusers_version()}
    for name, component in components.items():
        component.save_pretrained(out / name)
        library = "diffusers" if type(component).__module__.startswith("diffusers") else "transformers"
        index[name] = [library, type(component).__name__]
    index["safety_checker"] = [None, None]
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "TINY.md").write_text(
        f"Random tiny weights (seed {seed}) of the Cosmos-Predict2 Video2World architectures, for tests and "
        "demos only. The videos they make are noise.\n"
    )
    return out


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


__all__ = [
    "build_scheduler",
    "build_text_encoder",
    "build_tokenizer",
    "build_transformer",
    "build_vae",
    "write_checkpoint",
]
