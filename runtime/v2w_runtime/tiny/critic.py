"""A small Cosmos-Reason1 stand-in that really answers: a tiny Qwen2.5-VL shaped and trained here, on the CPU.

A random tiny model never writes a parsable verdict, so best-of-N would never rank anything. This one is
the same model class and processor as Cosmos-Reason1 (`tiny.qwen`), made in two steps, both deterministic:
- shaped (`seed_vision`, `seed_language`): a tiny tower trained from scratch does not find a one-frame flash
  among busy clips in a few hundred CPU steps, so two patch-embedding channels measure each temporal patch's
  brightness jump, the patch merger passes what is large to one channel, and one language head averages
  the context so that channel reaches the answer;
- trained (`train`, about a thousand steps, half a minute): to answer the critic's question (`critic.SYSTEM`,
  `critic.QUESTION`, the video at the critic's fps and pixel bound, exactly as `Critic` asks it) in
  Cosmos-Reason1's template, "Yes" with the artifact named for a clip with a flash or a blackout frame and
  "No" for a clean one, and to answer the prompt refiner's instruction with one plain paragraph, so that one
  checkpoint serves both, as Cosmos-Reason1 does.
Its verdict goes through the critic's own sampling; like the real critic it is right most of the time
(a busy clean clip is now and then called flawed).

    python -m v2w_runtime.tiny.critic OUT_DIR [--seed 0] [--steps 1000]

`inject_artifact` is the artifact the tests and the demo put into generated videos; the product never
calls it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import critic, refiner
from ..qwen import QwenVL
from .qwen import build_config, build_processor, build_tokenizer

log = logging.getLogger(__name__)

Artifact = Literal["flash", "blackout"]
ARTIFACTS: tuple[Artifact, ...] = ("flash", "blackout")

# What the critic looks at in training: the sizes the demo and the tests make (9 frames, 64 x 96 or 112).
TRAIN_FRAMES = 9
TRAIN_SIZES = ((32, 48), (48, 80), (64, 96), (64, 112), (80, 128))
TRAIN_FPS = 16.0

REFINED = ("The camera holds steady on the scene as it slowly comes to life; every object keeps its shape and "
           "moves smoothly under soft, even light.")

# What it says of the light: the shaped tower sees a jump in brightness, not its sign, so a flash and a
# blackout get the same words.
_LIGHT = {
    None: ("The brightness holds steady from frame to frame.", "No"),
    "flash": ("One frame jumps to a flat white or black for an instant.", "Yes"),
    "blackout": ("One frame jumps to a flat white or black for an instant.", "Yes"),
}


def critic_answer(artifact: Artifact | None) -> str:
    """The answer in Cosmos-Reason1's critic template: the scene, the light, and the verdict."""
    light, verdict = _LIGHT[artifact]
    return (
        "<think>\n<overview>\nColoured shapes drift across the frame.\n</overview>\n"
        "<component name=\"Scene\">\n<analysis>\nThe shapes change from frame to frame without a break.\n"
        "</analysis>\n<anomaly>No</anomaly>\n</component>\n"
        f"<component name=\"Light\">\n<analysis>\n{light}\n</analysis>\n<anomaly>{verdict}</anomaly>\n</component>\n"
        f"</think>\n<answer>\n{verdict}\n</answer>"
    )


def corpus() -> list[str]:
    """Texts the tiny tokenizer should learn as words: the prompts the model is asked and what it answers."""
    return [critic.SYSTEM, critic.QUESTION, refiner.SYSTEM, refiner.INSTRUCTION, REFINED,
            *(critic_answer(a) for a in (None, *ARTIFACTS))]


# ------------------------------------------------------------------------------------------- clips


def clean_clip(rng: np.random.Generator, frames: int = TRAIN_FRAMES, height: int = 64, width: int = 96) -> np.ndarray:
    """A clip with no artifact, one of three kinds: smooth drifting colour waves; busy waves with noise; or
    saturated patterns that change a lot from frame to frame, as tiny random video models make them."""
    kind = rng.choice(["smooth", "busy", "chaotic"], p=[0.25, 0.3, 0.45])
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((frames, height, width, 3), np.float32)
    if kind == "chaotic":
        for t in range(frames):
            waves = rng.uniform(0.2, 1.6, size=(3, 3, 2)) * rng.choice([-1, 1], size=(3, 3, 2))
            phase = rng.uniform(0, 2 * np.pi, size=(3, 3))
            level = rng.uniform(70, 180, size=3)
            for c in range(3):
                field = sum(np.sin(waves[c, k, 0] * x + waves[c, k, 1] * y + phase[c, k]) for k in range(3))
                out[t, :, :, c] = level[c] + 45 * field
        return np.clip(out, 0, 255).astype(np.uint8)
    busy = kind == "busy"
    waves = rng.uniform(0.02, 0.6 if busy else 0.15, size=(3, 4, 2))
    phase = rng.uniform(0, 2 * np.pi, size=(3, 4))
    speed = rng.uniform(-1.5 if busy else -0.4, 1.5 if busy else 0.4, size=(3, 4))
    base = rng.uniform(60, 190, size=3)
    for t in range(frames):
        for c in range(3):
            field = sum(np.sin(waves[c, k, 0] * x + waves[c, k, 1] * y + phase[c, k] + speed[c, k] * t) for k in range(4))
            out[t, :, :, c] = base[c] + 28 * field
        if busy:
            out[t] += rng.normal(0, 12, size=(height, width, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def inject_artifact(frames: np.ndarray, artifact: Artifact, rng: np.random.Generator | None = None,
                    index: int | None = None) -> np.ndarray:
    """A copy of `frames` with one frame (not the first or last) turned white (flash) or black (blackout)."""
    rng = rng or np.random.default_rng(0)
    out = frames.copy()
    k = index if index is not None else int(rng.integers(1, max(2, len(frames) - 1)))
    level = 250 if artifact == "flash" else 4
    out[k] = np.clip(rng.normal(level, 3, size=out[k].shape), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------- training


def _example(qwen: QwenVL, rng: np.random.Generator, max_pixels: int) -> tuple[dict, list[int]]:
    """One training example: the model's inputs for a question and the tokens of the answer it should give."""
    if rng.random() < 0.25:  # the refiner's question about the conditioning frame(s)
        frames = clean_clip(rng, frames=int(rng.choice([1, 5])))
        inputs = qwen.prompt_inputs(refiner.INSTRUCTION.format(prompt="a short idea"), frames, system=refiner.SYSTEM)
        return inputs, _tokens(qwen, REFINED)
    height, width = TRAIN_SIZES[int(rng.integers(len(TRAIN_SIZES)))]
    frames = clean_clip(rng, height=height, width=width)
    artifact = None if rng.random() < 0.5 else ARTIFACTS[int(rng.integers(len(ARTIFACTS)))]
    if artifact:
        frames = inject_artifact(frames, artifact, rng)
    inputs = qwen.prompt_inputs(critic.QUESTION, frames, system=critic.SYSTEM, fps=TRAIN_FPS, max_pixels=max_pixels)
    return inputs, _tokens(qwen, critic_answer(artifact))


def _tokens(qwen: QwenVL, answer: str) -> list[int]:
    tokenizer = qwen.processor.tokenizer
    return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]


def _decision(qwen: QwenVL, target: list[int]) -> int:
    """Where in `target` the answer decides (the first token a clean and a flawed clip's answers differ in)."""
    clean, flawed = (_tokens(qwen, critic_answer(a)) for a in (None, ARTIFACTS[0]))
    other = flawed if target == clean else clean
    return next((i for i, (a, b) in enumerate(zip(target, other)) if a != b), 0)


def seed_vision(model, strength: float = 3.0, threshold: float = 10.0, gain: float = 0.05) -> None:
    """Shape the vision tower so that its video tokens carry a clip's brightness jumps on one channel.

    A random tower scrambles a one-frame flash among busy clips (a frozen linear probe reads it 70 % of the
    time), and a tiny model trained from scratch does not find it in a few hundred CPU steps. So, before
    training: two patch-embedding channels take the mean of a temporal patch's first frame minus its second
    (and the opposite), which a flash or a blackout frame makes large and an evenly changing clip does not;
    the residual blocks carry them; the patch merger adds them up over its 2 x 2 patches, keeps what is above
    `threshold` and writes it on output channel 0. The rest of the tower stays random."""
    visual = model.model.visual
    proj = visual.patch_embed.proj.weight  # (hidden, channels, time, height, width)
    hidden = proj.shape[0]
    per_frame = proj.shape[1] * proj.shape[3] * proj.shape[4]
    first, second = visual.merger.mlp[0], visual.merger.mlp[2]
    merged = first.in_features // hidden  # sub-patches per merged token
    with torch.no_grad():
        for channel, sign in ((0, 1.0), (1, -1.0)):
            proj[channel].zero_()
            proj[channel, :, 0] = sign * strength / per_frame
            proj[channel, :, 1] = -sign * strength / per_frame
            first.weight[channel].zero_()
            first.weight[channel, [p * hidden + channel for p in range(merged)]] = 1.0
            first.bias[channel] = -threshold
            second.weight[:, channel] = 0.0
        second.weight[0].zero_()
        second.weight[0, :2] = gain
        second.bias[0] = 0.0


def seed_language(model, gain: float = 30.0) -> list:
    """Give the language model one head that averages the whole context: its queries are zero, so it attends
    evenly to every token before it, and its value reads channel 0 (where the seeded vision tower marks a
    brightness jump) and writes it on residual channel 0. Text tokens leave channel 0 empty, so what the head
    adds differs between two clips only by the share of their video tokens that are marked (an offset from
    the prompt's words would be normalized away with the difference by the final RMSNorm). Training then only
    has to learn to read one channel, not where to look.

    Returns gradient hooks that keep the seeded weights as they are while the rest trains (Adam moves every
    weight by about its learning rate a step, which would undo them in a few dozen steps)."""
    attention = model.model.language_model.layers[0].self_attn
    head_dim = attention.head_dim
    embeddings = model.get_input_embeddings().weight
    seeded = [
        (embeddings, (slice(None), 0)),
        (attention.q_proj.weight, slice(0, head_dim)),
        (attention.q_proj.bias, slice(0, head_dim)),
        (attention.v_proj.weight, 0),
        (attention.v_proj.bias, 0),
        (attention.o_proj.weight, (slice(None), 0)),
    ]
    with torch.no_grad():
        for tensor, index in seeded:
            tensor[index] = 0.0
        attention.v_proj.weight[0, 0] = 1.0
        attention.o_proj.weight[0, 0] = gain
    return [tensor.register_hook(lambda grad, index=index: _without(grad, index)) for tensor, index in seeded]


def _without(grad: torch.Tensor, index) -> torch.Tensor:
    grad = grad.clone()
    grad[index] = 0.0
    return grad


def train(qwen: QwenVL, steps: int, seed: int, max_pixels: int = 640 * 360, lr: float = 3e-3,
          decision_weight: float = 10.0) -> list[float]:
    """Seed the model (`seed_vision`, `seed_language`), then teach it the critic's and the refiner's answers;
    returns the verdict's loss at each critic step.

    The template is easy and the verdict is one token of a hundred: that token's loss counts
    `decision_weight` times, or the model learns the template and guesses the verdict."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = qwen.model
    seed_vision(model)
    hooks = seed_language(model)
    model.model.visual.requires_grad_(False)  # the seeded tower sees the artifacts; it is not trained
    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    for _ in range(steps):
        inputs, target = _example(qwen, rng, max_pixels)
        prompt = inputs["input_ids"]
        ids = torch.cat([prompt, torch.tensor([target])], dim=1)
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        for key, value in extra.items():  # per-token inputs (the token types) go on over the answer as text
            if value.dim() == 2 and value.shape == prompt.shape:
                extra[key] = torch.cat([value, value.new_zeros((1, len(target)))], dim=1)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits
        start = prompt.shape[1]
        predicted = logits[0, start - 1 : -1].float()  # the logits that predict each answer token
        per_token = torch.nn.functional.cross_entropy(predicted, torch.tensor(target), reduction="none")
        weights = torch.ones(len(target))
        critic_step = "pixel_values_videos" in inputs
        if critic_step:
            weights[_decision(qwen, target)] = decision_weight
        loss = (per_token * weights).sum() / weights.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if critic_step:
            losses.append(float(per_token.detach()[_decision(qwen, target)]))
    for hook in hooks:
        hook.remove()
    model.requires_grad_(True)
    model.eval()
    return losses


def write_tiny_critic(out_dir: str | Path, seed: int = 0, steps: int = 1000, *, hidden: int = 64,
                      layers: int = 2) -> Path:
    """Write a trained tiny Cosmos-Reason1 (model, processor, tokenizer) to `out_dir`; same seed, same weights."""
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size=768, extra_corpus=corpus())
    processor = build_processor(tokenizer)
    config = build_config(tokenizer, hidden=hidden, layers=layers)
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # the same weights on any machine: no thread-count-dependent reductions
    try:
        model = Qwen2_5_VLForConditionalGeneration(config)
        start = time.perf_counter()
        losses = train(QwenVL(model, processor, "cpu"), steps, seed)
        log.info("tiny critic: %d steps in %.1f s, loss %.3f -> %.3f", steps, time.perf_counter() - start,
                 float(np.mean(losses[:20])), float(np.mean(losses[-20:])))
    finally:
        torch.random.set_rng_state(state)
        torch.set_num_threads(threads)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id, eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id, do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m v2w_runtime.tiny.critic",
        description="Train and write a tiny Cosmos-Reason1 (Qwen2.5-VL) that critiques videos and refines prompts.",
    )
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(write_tiny_critic(args.out_dir, args.seed, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
