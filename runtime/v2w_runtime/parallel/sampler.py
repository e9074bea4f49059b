"""Make a Video2World sampler run across one group of ranks."""

from __future__ import annotations

from .launch import ParallelContext
from .transformer import parallelize


def parallelize_pipeline(pipeline, ctx: ParallelContext):
    """Split `pipeline.transformer` over the group and encode prompts once per group; returns the pipeline.

    The pipeline must run its DiT through the `transformer` attribute and its text encoder through
    `encode_prompt(prompts, ...)` (as `v2w_runtime.pipeline.Video2WorldPipeline` does). Every rank of
    the group must then call the pipeline with the same arguments and the same seeded generator.
    """
    if ctx.layout.group_size == 1:
        return pipeline
    pipeline.transformer = parallelize(pipeline.transformer, ctx)
    encode = pipeline.encode_prompt

    def encode_on_leader(prompts, *args, **kwargs):
        # The leader encodes; the group receives the same tensor (one broadcast per video).
        embeds = encode(prompts, *args, **kwargs) if ctx.layout.is_group_leader else None
        return ctx.share(embeds)

    pipeline.encode_prompt = encode_on_leader
    return pipeline
