"""Upstream's native key layouts in diffusers' names: the DiT and the Wan 2.1 VAE, as tables of rules.

A rule pairs a native key pattern with its diffusers name: `{n}` stands for a block index, `{p}` for
`weight` or `bias`, `{side}` for `encoder` or `decoder`. Each native key is renamed by the one rule it
matches in full. Keys that only upstream keeps (buffers diffusers computes itself, training counters,
Transformer Engine's `_extra_state`) are dropped by name. Any other key is an error that names it, and so
is a key the diffusers model wants that no native key gave. The same table read from right to left writes
the tiny native checkpoints of the tests (`v2w_runtime.tiny.upstream`).

Where the mappings come from (learnt, not copied): diffusers' `scripts/convert_cosmos_to_diffusers.py` (its
Cosmos 2.0 rename table and the keys it removes), `scripts/convert_wan_to_diffusers.py` (the Wan 2.1 VAE),
and upstream's model code (`cosmos_predict2/models/text2image_dit.py`: the DiT's module names and which
buffers are persistent; `cosmos_predict2/tokenizers/wan2pt1.py`: the Encoder3d / Decoder3d layout, whose
decoder keeps its residual and resample blocks in one flat list that diffusers splits into up blocks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from .common import ARCHITECTURES, DIT_FIXED, CheckpointError, shown, size_of

_PLACEHOLDERS = {"n": r"\d+", "p": r"weight|bias", "side": r"encoder|decoder", "any": r".+"}


def _compile(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_PLACEHOLDERS[part]})"
                              for i, part in enumerate(parts)))


@dataclass(frozen=True)
class Rule:
    """One native key pattern and the diffusers name it becomes."""

    native: str
    diffusers: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_native", _compile(self.native))
        object.__setattr__(self, "_diffusers", _compile(self.diffusers))

    def to_diffusers(self, key: str) -> str | None:
        match = self._native.fullmatch(key)
        return self.diffusers.format(**match.groupdict()) if match else None

    def to_native(self, key: str) -> str | None:
        match = self._diffusers.fullmatch(key)
        return self.native.format(**match.groupdict()) if match else None


@dataclass(frozen=True)
class RuleTable:
    """The rules of one model: what each native key is called in diffusers, and what is dropped."""

    name: str  # what the checkpoint holds, for messages
    target: str  # the diffusers class
    rules: tuple[Rule, ...]
    dropped: tuple[str, ...] = ()
    _dropped: tuple[re.Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dropped", tuple(_compile(d) for d in self.dropped))

    def is_dropped(self, key: str) -> bool:
        return any(p.fullmatch(key) for p in self._dropped)

    def diffusers_name(self, key: str) -> str | None:
        for rule in self.rules:
            if (new := rule.to_diffusers(key)) is not None:
                return new
        return None

    def native_name(self, key: str) -> str | None:
        for rule in self.rules:
            if (old := rule.to_native(key)) is not None:
                return old
        return None

    def to_diffusers(self, state: Mapping[str, Any], source: str) -> dict[str, Any]:
        """`state` (native keys, no prefix) renamed; CheckpointError names every key that maps to nothing."""
        out: dict[str, Any] = {}
        origin: dict[str, str] = {}
        unmapped = []
        for key, value in state.items():
            if self.is_dropped(key):
                continue
            new = self.diffusers_name(key)
            if new is None:
                unmapped.append(key)
            elif new in out:
                raise CheckpointError(f"{source}: keys {origin[new]} and {key} both map to {new}")
            else:
                out[new], origin[new] = value, key
        if unmapped:
            raise CheckpointError(f"{source}: {len(unmapped)} key(s) map to nothing in {self.target}: "
                                  f"{shown(sorted(unmapped))} (is it a {self.name} checkpoint?)")
        return out

    def to_native(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The inverse: diffusers keys in upstream's names (for writing native test checkpoints)."""
        out = {}
        for key, value in state.items():
            old = self.native_name(key)
            if old is None:
                raise ValueError(f"no rule gives the native name of {key}")
            out[old] = value
        return out

    def check(self, converted: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], source: str) -> None:
        """Every key the diffusers model wants is there with its shape; CheckpointError names the others."""
        missing = sorted(set(expected) - set(converted))
        extra = sorted(set(converted) - set(expected))
        wrong = [f"{self.native_name(k) or k} {tuple(converted[k].shape)} where {self.target} wants "
                 f"{tuple(expected[k])}" for k in sorted(set(converted) & set(expected))
                 if tuple(converted[k].shape) != tuple(expected[k])]
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): " + shown([f"{self.native_name(k) or k} ({k})"
                                                                        for k in missing]))
        if extra:
            problems.append(f"{len(extra)} key(s) the model does not have: "
                            + shown([self.native_name(k) or k for k in extra]))
        if wrong:
            problems.append(f"{len(wrong)} of the wrong shape: {shown(wrong)}")
        if problems:
            raise CheckpointError(f"{source} does not fit {self.target}: {'; '.join(problems)}")


# ---------------------------------------------------------------------------------------------- DiT

_ATTENTION = (("q_proj", "to_q"), ("k_proj", "to_k"), ("v_proj", "to_v"), ("output_proj", "to_out.0"),
              ("q_norm", "norm_q"), ("k_norm", "norm_k"))


def _dit_rules() -> tuple[Rule, ...]:
    rules = [
        Rule("x_embedder.proj.1.{p}", "patch_embed.proj.{p}"),
        Rule("t_embedder.1.linear_1.{p}", "time_embed.t_embedder.linear_1.{p}"),
        Rule("t_embedder.1.linear_2.{p}", "time_embed.t_embedder.linear_2.{p}"),
        Rule("t_embedding_norm.{p}", "time_embed.norm.{p}"),
    ]
    for native, ours in (("self_attn", "attn1"), ("cross_attn", "attn2")):
        rules += [Rule(f"blocks.{{n}}.{native}.{a}.{{p}}", f"transformer_blocks.{{n}}.{ours}.{b}.{{p}}")
                  for a, b in _ATTENTION]
    rules += [
        Rule("blocks.{n}.mlp.layer1.{p}", "transformer_blocks.{n}.ff.net.0.proj.{p}"),
        Rule("blocks.{n}.mlp.layer2.{p}", "transformer_blocks.{n}.ff.net.2.{p}"),
    ]
    # AdaLN-LoRA: index 0 of each modulation Sequential is the SiLU, 1 and 2 the two linear layers.
    for native, norm in (("self_attn", "norm1"), ("cross_attn", "norm2"), ("mlp", "norm3")):
        rules += [Rule(f"blocks.{{n}}.adaln_modulation_{native}.{i}.{{p}}", f"transformer_blocks.{{n}}.{norm}.linear_{i}.{{p}}")
                  for i in (1, 2)]
    rules += [
        Rule("final_layer.adaln_modulation.1.{p}", "norm_out.linear_1.{p}"),
        Rule("final_layer.adaln_modulation.2.{p}", "norm_out.linear_2.{p}"),
        Rule("final_layer.linear.{p}", "proj_out.{p}"),
    ]
    return tuple(rules)


DIT = RuleTable(
    name="Cosmos-Predict2 DiT",
    target="diffusers' CosmosTransformer3DModel",
    rules=_dit_rules(),
    dropped=(
        # the RoPE tables (diffusers computes them), training counters, Transformer Engine's fp8 metadata
        "pos_embedder.seq", "pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range",
        "accum_video_sample_counter", "accum_image_sample_counter", "accum_iteration", "accum_train_in_hours",
        "{any}._extra_state", "_extra_state",
    ),
)

_DIFFUSERS_DIT_PREFIXES = ("transformer_blocks.", "patch_embed.", "time_embed.", "norm_out.", "proj_out.")
_NATIVE_DIT_PREFIXES = ("blocks.", "x_embedder.", "t_embedder.", "t_embedding_norm.", "final_layer.", "pos_embedder.")


def dit_naming(state: Mapping[str, Any], source: str) -> str:
    """"diffusers" or "native": which names a DiT state dict uses (CheckpointError when both or neither)."""
    diffusers = [k for k in state if k.startswith(_DIFFUSERS_DIT_PREFIXES)]
    native = [k for k in state if k.startswith(_NATIVE_DIT_PREFIXES)]
    if diffusers and native:
        raise CheckpointError(f"{source} mixes diffusers names ({diffusers[0]}) with upstream's ({native[0]})")
    if not diffusers and not native:
        raise CheckpointError(f"{source} holds no DiT weights that are known by either diffusers' or upstream's "
                              f"names (its keys: {shown(sorted(state))})")
    return "diffusers" if diffusers else "native"


def dit_to_diffusers(state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A DiT state dict in either naming, in diffusers' names."""
    if dit_naming(state, source) == "diffusers":
        return {k: v for k, v in state.items() if not DIT.is_dropped(k)}
    return DIT.to_diffusers(state, source)


def dit_config(state: Mapping[str, torch.Tensor], model_size: str, source: str) -> dict:
    """The CosmosTransformer3DModel config of a DiT state dict in diffusers' names, read from its shapes.

    RoPE's scale is not in the weights: it is the known model size's, else (a smaller test model) the run's.
    """
    needed = ("patch_embed.proj.weight", "transformer_blocks.0.attn1.norm_q.weight",
              "transformer_blocks.0.attn2.to_k.weight", "transformer_blocks.0.norm1.linear_1.weight",
              "transformer_blocks.0.ff.net.0.proj.weight", "proj_out.weight")
    absent = [k for k in needed if k not in state]
    if absent:
        raise CheckpointError(f"{source} lacks {shown([DIT.native_name(k) or k for k in absent])}: "
                              "not a complete Cosmos-Predict2 DiT")
    patch = DIT_FIXED["patch_size"]
    volume = patch[0] * patch[1] * patch[2]
    hidden, in_features = state["patch_embed.proj.weight"].shape
    head_dim = state["transformer_blocks.0.attn1.norm_q.weight"].shape[0]
    out_features = state["proj_out.weight"].shape[0]
    if in_features % volume or out_features % volume or hidden % head_dim:
        raise CheckpointError(f"{source}: patch embedding {tuple(state['patch_embed.proj.weight'].shape)} and "
                              f"head size {head_dim} are not a Cosmos-Predict2 DiT's")
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    architecture = {"num_layers": layers, "num_attention_heads": hidden // head_dim, "attention_head_dim": head_dim}
    known = size_of(architecture)
    return {
        # in_channels counts the conditioning mask; the padding mask is one more channel of the patch embedding
        "in_channels": in_features // volume - 1,
        "out_channels": out_features // volume,
        **architecture,
        "mlp_ratio": state["transformer_blocks.0.ff.net.0.proj.weight"].shape[0] / hidden,
        "text_embed_dim": state["transformer_blocks.0.attn2.to_k.weight"].shape[1],
        "adaln_lora_dim": state["transformer_blocks.0.norm1.linear_1.weight"].shape[0],
        "rope_scale": ARCHITECTURES[known or model_size]["rope_scale"],
        **DIT_FIXED,
    }


# ------------------------------------------------------------------------------------------ Wan VAE

_RESIDUAL = (("residual.0.gamma", "norm1.gamma"), ("residual.2.{p}", "conv1.{p}"), ("residual.3.gamma", "norm2.gamma"),
             ("residual.6.{p}", "conv2.{p}"), ("shortcut.{p}", "conv_shortcut.{p}"))


def wan_vae_rules(num_res_blocks: int, num_levels: int) -> RuleTable:
    """The Wan 2.1 VAE's rules for an architecture with `num_levels` resolutions of `num_res_blocks` blocks.

    The encoder's blocks sit in one flat list in both namings. The decoder's flat list holds, per level,
    num_res_blocks + 1 residual blocks and (except at the last level) one upsampler; diffusers numbers them
    up_blocks.<level>.resnets.<i> and up_blocks.<level>.upsamplers.0.
    """
    rules = [
        Rule("encoder.conv1.{p}", "encoder.conv_in.{p}"),
        Rule("decoder.conv1.{p}", "decoder.conv_in.{p}"),
        Rule("conv1.{p}", "quant_conv.{p}"),
        Rule("conv2.{p}", "post_quant_conv.{p}"),
        Rule("{side}.head.0.gamma", "{side}.norm_out.gamma"),
        Rule("{side}.head.2.{p}", "{side}.conv_out.{p}"),
        Rule("{side}.middle.1.norm.gamma", "{side}.mid_block.attentions.0.norm.gamma"),
        Rule("{side}.middle.1.to_qkv.{p}", "{side}.mid_block.attentions.0.to_qkv.{p}"),
        Rule("{side}.middle.1.proj.{p}", "{side}.mid_block.attentions.0.proj.{p}"),
        Rule("encoder.downsamples.{n}.resample.1.{p}", "encoder.down_blocks.{n}.resample.1.{p}"),
        Rule("encoder.downsamples.{n}.time_conv.{p}", "encoder.down_blocks.{n}.time_conv.{p}"),
    ]
    rules += [Rule(f"encoder.downsamples.{{n}}.{a}", f"encoder.down_blocks.{{n}}.{b}") for a, b in _RESIDUAL]
    for native, ours in (("middle.0", "mid_block.resnets.0"), ("middle.2", "mid_block.resnets.1")):
        rules += [Rule(f"{{side}}.{native}.{a}", f"{{side}}.{ours}.{b}") for a, b in _RESIDUAL]
    per_level = num_res_blocks + 2  # the residual blocks and one upsampler
    for level in range(num_levels):
        for i in range(num_res_blocks + 1):
            index = level * per_level + i
            rules += [Rule(f"decoder.upsamples.{index}.{a}", f"decoder.up_blocks.{level}.resnets.{i}.{b}")
                      for a, b in _RESIDUAL]
        if level < num_levels - 1:
            index = level * per_level + num_res_blocks + 1
            rules += [Rule(f"decoder.upsamples.{index}.{part}.{{p}}", f"decoder.up_blocks.{level}.upsamplers.0.{part}.{{p}}")
                      for part in ("resample.1", "time_conv")]
    return RuleTable(name="Wan 2.1 VAE", target="diffusers' AutoencoderKLWan", rules=tuple(rules))


def wan_vae_config(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """The AutoencoderKLWan config of a native Wan 2.1 VAE state dict, read from its keys and shapes."""
    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"{source}: {why}; not a Wan 2.1 VAE in upstream's layout (tokenizer.pth)")

    for key in ("encoder.conv1.weight", "conv2.weight"):
        if key not in state:
            raise fail(f"it lacks {key}")
    prefix = "encoder.downsamples."
    indices = sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)})
    kinds = []
    for i in indices:
        entry = f"{prefix}{i}."
        if entry + "residual.2.weight" in state:
            kinds.append("residual")
        elif entry + "resample.1.weight" in state:
            kinds.append("resample")
        else:
            raise fail(f"block {entry[:-1]} is neither a residual block nor a downsampler (attention in the "
                       "encoder's blocks is not a Wan 2.1 VAE's)")
    if indices != list(range(len(indices))) or "residual" not in kinds:
        raise fail("its encoder blocks are not numbered 0, 1, 2, ...")
    num_res_blocks = kinds.index("resample") if "resample" in kinds else len(kinds)
    levels = kinds.count("resample") + 1
    if kinds != (["residual"] * num_res_blocks + ["resample"]) * (levels - 1) + ["residual"] * num_res_blocks:
        raise fail("its encoder does not repeat residual blocks and one downsampler per level")
    base_dim = state["encoder.conv1.weight"].shape[0]
    per_level = num_res_blocks + 1
    dim_mult = [state[f"{prefix}{level * per_level}.residual.2.weight"].shape[0] // base_dim for level in range(levels)]
    temporal = [f"{prefix}{level * per_level + num_res_blocks}.time_conv.weight" in state for level in range(levels - 1)]
    z_dim = state["conv2.weight"].shape[0]
    if z_dim != 16:
        raise fail(f"its latent has {z_dim} channels, not 16")
    return {"base_dim": base_dim, "z_dim": z_dim, "dim_mult": dim_mult, "num_res_blocks": num_res_blocks,
            "attn_scales": [], "temperal_downsample": temporal, "dropout": 0.0}


def wan_vae_table(config: Mapping[str, Any]) -> RuleTable:
    return wan_vae_rules(config["num_res_blocks"], len(config["dim_mult"]))


# ---------------------------------------------------------------------------- the shape of a .pt file

# Nesting a training or conversion tool may wrap a state dict in.
_WRAPPERS = ("state_dict", "model", "module")
# Prefixes that every key may carry: DDP's, torch.compile's, a Lightning module's.
_COMMON_PREFIXES = ("module.", "_orig_mod.", "model.")
# Upstream's trainer saves the network as `net.` and its EMA copy as `net_ema.`; inference uses `net.`
# unless only an EMA copy is there (upstream's pipelines strip `net.`, or `net_ema.` when asked to).
_REGULAR = "net."
_EMA = ("net_ema.", "ema.", "model_ema.")


@dataclass
class Unwrapped:
    state: dict[str, Any]
    notes: list[str]

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


def unwrap_state(obj: Any, source: str) -> Unwrapped:
    """The DiT's own state dict inside what a .pt/.pth/.safetensors file holds, prefixes and nesting removed."""
    notes: list[str] = []
    while isinstance(obj, dict) and obj and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if key is None:
            break
        notes.append(f"weights under {key!r}")
        obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{source} holds no state dict (found {type(obj).__name__})")
    state = {str(k): v for k, v in obj.items()}
    stripped = True
    while stripped:
        stripped = False
        for prefix in _COMMON_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                notes.append(f"prefix {prefix!r} removed")
                stripped = True
    groups = [p for p in (_REGULAR, *_EMA) if any(k.startswith(p) for k in state)]
    if groups:
        chosen = groups[0]
        left = sorted(k for k in state if not k.startswith(chosen))
        state = {k[len(chosen):]: v for k, v in state.items() if k.startswith(chosen)}
        notes.append(f"weights of {chosen!r}" + (" (an EMA copy: the file has no regular 'net.' weights)"
                                                 if chosen != _REGULAR else ""))
        if left:
            others = sorted({k.split(".", 1)[0] + "." for k in left})
            notes.append(f"{len(left)} key(s) outside it not used ({', '.join(others)})")
    return Unwrapped(state, notes)


__all__ = [
    "DIT",
    "Rule",
    "RuleTable",
    "Unwrapped",
    "dit_config",
    "dit_naming",
    "dit_to_diffusers",
    "unwrap_state",
    "wan_vae_config",
    "wan_vae_rules",
    "wan_vae_table",
]
