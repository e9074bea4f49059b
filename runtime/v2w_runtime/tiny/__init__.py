"""Small random models of every architecture the runtime loads, written offline for the demo and the tests.

- `video2world`: a Cosmos-Predict2 Video2World checkpoint (diffusers format), `python -m v2w_runtime.tiny`;
- `upstream`: the same weights in the layouts users download: upstream's `checkpoints/` tree (native DiT
  `.pt`, native VAE `.pth`, t5-11b, Cosmos-Reason1) and a Hugging Face cache, `python -m v2w_runtime.tiny.upstream`;
- `qwen`: a Qwen2.5-VL (the class of Cosmos-Reason1: prompt refiner and critic), `python -m v2w_runtime.tiny.qwen`;
- `guardrail`: a guardrail folder (LLM guard and video classifier), `python -m v2w_runtime.tiny.guardrail`;
- `inputs`: synthetic conditioning images and videos.

Each is the real model class with the real config keys, a few layers and small widths; the same seed
writes the same weights, and nothing is downloaded.
"""

from .video2world import write_checkpoint

__all__ = ["write_checkpoint"]
