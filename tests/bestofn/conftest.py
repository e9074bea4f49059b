"""Tiny real models for the best-of-N tests: a Video2World checkpoint and a Cosmos-Reason1 (Qwen2.5-VL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

INJECTED = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
PROMPT = "A red bus leaves the station at night. " + INJECTED
SMALL = ["--height", "32", "--width", "48", "--num_frames", "9", "--num_steps", "2", "--fps", "8"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from v2w_runtime.tiny.critic import write_tiny_critic
    from v2w_runtime.tiny import write_checkpoint

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("models")
    image = root / "input.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(image)
    return {
        "video2world": write_checkpoint(root / "video2world", seed=0),
        # A tiny Cosmos-Reason1 that answers: the critic's verdicts parse and depend on the video.
        "reason": write_tiny_critic(root / "cosmos-reason1", seed=0),
        "input": image,
    }


def cli_args(models: dict[str, Path], save_path: str, *extra: str) -> list[str]:
    return [
        "--checkpoint_dir", str(models["video2world"]),
        "--refiner_checkpoint", str(models["reason"]),
        "--input_path", str(models["input"]),
        "--prompt", PROMPT,
        "--disable_guardrail",
        "--device", "cpu",
        "--critic_max_new_tokens", "160",  # the whole template: about 110 tokens
        "--refiner_max_new_tokens", "16",
        "--save_path", save_path,
        *SMALL,
        *extra,
    ]


FLAWED_SEED = 8  # the generation of the shared run that gets a flash frame


def flash_seeds(seeds: set[int]):
    """A `Run.load_generator` that puts a white flash frame into the videos of `seeds` after they are made:
    the flawed generator of a test, never the product's."""
    from v2w_runtime.runner import Run
    from v2w_runtime.tiny.critic import inject_artifact

    load = Run.load_generator

    def load_generator(self):
        generator = load(self)
        generate = generator.generate

        def flawed(input, prompt, seed, **kwargs):
            made = generate(input, prompt, seed, **kwargs)
            if seed in seeds and made.frames is not None:
                made.frames = inject_artifact(made.frames, "flash", index=len(made.frames) // 2)
            return made

        generator.generate = flawed
        return generator

    return load_generator


@pytest.fixture(scope="session")
def bestofn_run(tiny_models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One whole best-of-N run (3 generations, 2 critic trials) on CPU, shared by several tests; the generation
    with seed 8 carries a flash frame."""
    from v2w_runtime.bestofn import main
    from v2w_runtime.runner import Run

    out = tmp_path_factory.mktemp("bestofn") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Run, "load_generator", flash_seeds({FLAWED_SEED}))
        code = main(cli_args(tiny_models, str(out), "--num_generations", "3", "--num_critic_trials", "2",
                             "--seed", "7"))
    assert code == 0
    return out


def write_video(path: Path, seed: int, frames: int = 9, fps: int = 8) -> Path:
    from v2w_runtime.outputs import write_mp4

    rng = np.random.default_rng(seed)
    return write_mp4(rng.integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8), path, fps)


class Interrupted(Exception):
    """Stands for the pod being killed."""


def record_generations(generator, generated: list[int], stop_after: int | None = None):
    """`generator`, with each generate() call's seed appended to `generated`; once `stop_after` calls are
    recorded, the next one raises Interrupted instead."""
    real = generator.generate

    def generate(input, prompt, seed, **kwargs):
        if stop_after is not None and len(generated) >= stop_after:
            raise Interrupted
        generated.append(seed)
        return real(input, prompt, seed, **kwargs)

    generator.generate = generate
    return generator


def run_in_process(argv: list[str], wrap_generator=None, wrap_critic=None):
    """One best-of-N run of the command line `argv` in this process (rank 0 of one), through the real runner,
    with its generator and critic passed through `wrap_generator(generator)` / `wrap_critic(critic)` when given.
    Returns the ResultManifest; an exception from a wrapper (a killed pod) propagates."""
    from v2w_runtime import bestofn
    from v2w_runtime.cli import parse
    from v2w_runtime.runner import Run

    run = Run(parse("bestofn", argv), "bestofn")
    for name, wrap in (("load_generator", wrap_generator), ("load_critic", wrap_critic)):
        if wrap is not None:
            real = getattr(run, name)
            setattr(run, name, lambda real=real, wrap=wrap: wrap(real()))
    run.open_target()
    try:
        return bestofn.best_of_n(run)
    finally:
        run.close()

