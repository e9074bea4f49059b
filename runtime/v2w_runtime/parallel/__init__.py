"""Multi-GPU sampling: data parallelism over groups, CFG parallelism and Ulysses context parallelism."""

from .launch import ParallelContext, init_parallel, make_context, world_from_env
from .layout import CONTEXT_PARALLEL_SIZES, Layout, choose_layout
from .sampler import parallelize_pipeline
from .transformer import ParallelCosmosTransformer, check_parallelizable, parallelize
from .ulysses import SequenceSplit, UlyssesAttnProcessor

__all__ = [
    "CONTEXT_PARALLEL_SIZES",
    "Layout",
    "ParallelContext",
    "ParallelCosmosTransformer",
    "SequenceSplit",
    "UlyssesAttnProcessor",
    "check_parallelizable",
    "choose_layout",
    "init_parallel",
    "make_context",
    "parallelize",
    "parallelize_pipeline",
    "world_from_env",
]
