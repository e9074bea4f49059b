"""Layout policy, launch checks and sequence splitting: single process, no torchrun."""

from __future__ import annotations

import pytest
import torch

from tests.parallel.models import CASES, tiny_transformer
from v2w_runtime.parallel import (
    Layout,
    ParallelContext,
    ParallelCosmosTransformer,
    SequenceSplit,
    check_parallelizable,
    choose_layout,
    init_parallel,
    parallelize,
    world_from_env,
)

TORCHRUN_4 = {"WORLD_SIZE": "4", "RANK": "1", "LOCAL_RANK": "1"}


def test_num_gpus_must_match_the_torchrun_world():
    with pytest.raises(ValueError, match="--num_gpus 2 does not match torchrun's world size 4"):
        init_parallel(2, num_heads=16, environ=TORCHRUN_4, device="cpu")


def test_num_gpus_without_torchrun_says_how_to_launch():
    with pytest.raises(ValueError, match="torchrun --nproc_per_node=8"):
        init_parallel(8, num_heads=16, environ={}, device="cpu")


def test_single_process_needs_no_process_group():
    ctx = init_parallel(1, num_heads=16, environ={}, device="cpu")
    assert ctx.layout == Layout() and not ctx.distributed
    assert ctx.share({"x": 1}) == {"x": 1} and ctx.gather_to_leader(3) == [3]


def test_world_from_env():
    assert world_from_env({}) == (1, 0, 0)
    assert world_from_env(TORCHRUN_4) == (4, 1, 1)
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        world_from_env({"WORLD_SIZE": "four"})


@pytest.mark.parametrize(
    "world, heads, guidance, videos, expected",
    [
        (1, 16, True, 1, (1, False)),
        (2, 16, True, 1, (1, True)),  # CFG pair: no all-to-all at all
        (8, 16, True, 1, (4, True)),  # 2 x 4, one group
        (8, 16, False, 1, (8, False)),  # no guidance: all ranks split the sequence
        (16, 16, True, 1, (8, True)),
        (8, 40, True, 1, (4, True)),  # 14B heads
        (8, 12, False, 1, (4, False)),  # 12 heads: Ulysses 4, two data-parallel groups
        (8, 16, True, 8, (1, False)),  # enough videos: data parallelism only
    ],
)
def test_default_layout(world, heads, guidance, videos, expected):
    layout = choose_layout(world, num_heads=heads, guidance=guidance, num_videos=videos)
    assert (layout.cp_size, layout.cfg_parallel) == expected


def test_explicit_layout_wins_and_is_checked():
    assert choose_layout(8, num_heads=16, context_parallel_size=2, cfg_parallel=False).num_groups == 4
    assert choose_layout(4, num_heads=16, num_videos=9, context_parallel_size=4).cp_size == 4
    with pytest.raises(ValueError, match="does not divide the transformer's 12 heads"):
        choose_layout(8, num_heads=12, context_parallel_size=8)
    with pytest.raises(ValueError, match=r"gpus \(6\) must be a multiple of contextParallelSize \(4\)"):
        choose_layout(6, num_heads=16, context_parallel_size=4)
    with pytest.raises(ValueError, match=r"gpus \(4\) must be a multiple of contextParallelSize \(4\) times 2 with cfgParallel"):
        choose_layout(4, num_heads=16, context_parallel_size=4, cfg_parallel=True)
    with pytest.raises(ValueError, match="must be one of"):
        choose_layout(3, num_heads=15, context_parallel_size=3)
    with pytest.raises(ValueError, match="needs classifier-free guidance"):
        choose_layout(2, num_heads=16, guidance=False, cfg_parallel=True)


def test_cli_flags_default_to_auto():
    from v2w_runtime.cli import parse

    par = parse("video2world", ["--prompt", "x"]).parallelism
    assert (par.gpus, par.context_parallel_size, par.cfg_parallel) == (1, None, None)
    par = parse("video2world", ["--prompt", "x", "--num_gpus", "8", "--context_parallel_size", "4",
                                "--no-cfg_parallel"]).parallelism
    assert (par.gpus, par.context_parallel_size, par.cfg_parallel) == (8, 4, False)
    with pytest.raises(SystemExit):
        parse("video2world", ["--prompt", "x", "--context_parallel_size", "3"])


def test_sequence_split():
    assert SequenceSplit(48, 4).sizes == [12] * 4 and SequenceSplit(48, 4).even
    split = SequenceSplit(45, 4)
    assert split.sizes == [12, 11, 11, 11] and split.max_size == 12 and not split.even
    assert [split.bounds(i) for i in range(4)] == [(0, 12), (12, 23), (23, 34), (34, 45)]
    with pytest.raises(ValueError, match="fewer than the 8 context-parallel ranks"):
        SequenceSplit(6, 8)


def test_heads_must_divide_cp_size():
    config = tiny_transformer().config  # 4 heads
    check_parallelizable(config, 4)
    with pytest.raises(ValueError, match="4 attention heads, not divisible by context parallel size 8"):
        check_parallelizable(config, 8)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_wrapper_forward_equals_stock_forward_in_one_process(case):
    """The wrapper's own forward (a group of one) reproduces the stock forward bit for bit."""
    torch.set_num_threads(1)
    model = tiny_transformer(learnable_pos=case.learnable_pos)
    inputs = case.inputs()
    with torch.no_grad():
        expected = model(**inputs, return_dict=False)[0]
        got = ParallelCosmosTransformer(model, ParallelContext.single())(**inputs, return_dict=False)[0]
    assert torch.equal(got, expected)


def test_parallelize_keeps_the_model_in_a_group_of_one():
    model = tiny_transformer()
    assert parallelize(model, ParallelContext.single()) is model
