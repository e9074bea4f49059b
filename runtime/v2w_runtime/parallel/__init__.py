"""Multi-GPU sampling: data parallelism over groups, CFG parallelism and Ulysses context parallelism."""

from .launch import (
    CP_SIZES,
    ParallelContext,
    add_parallel_arguments,
    choose_layout,
    init_parallel,
    make_context,
    world_from_env,
)
from .sampler import parallelize_pipeline
from .transformer import ParallelCosmosTransformer, check_parallelizable, parallelize
from .ulysses import SequenceSplit, UlyssesAttnProcessor

__all__ = [
    "CP_SIZES",
    "ParallelContext",
    "ParallelCosmosTransformer",
    "SequenceSplit",
    "UlyssesAttnProcessor",
    "add_parallel_arguments",
    "check_parallelizable",
    "choose_layout",
    "init_parallel",
    "make_context",
    "parallelize",
    "parallelize_pipeline",
    "world_from_env",
]
