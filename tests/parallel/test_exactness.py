"""Parallel sampling on 4 CPU processes (gloo) equals one process: the transformer and whole videos.

One torchrun launch of 4 ranks checks, for every case in models.CASES (even and uneven token counts,
per-frame and per-sample timesteps, text mask, batch 1 and 2): Ulysses 4; CFG x Ulysses 2 (4 ranks);
Ulysses 2 in two data-parallel groups; CFG parallel 2 in two groups. (Groups of 2 are the 2-GPU
layouts: each group of a 4-rank world runs exactly what a 2-process world runs.)
The same launch runs the runtime's whole sampler (text encoder, VAE, DiT, scheduler, decode) per
layout, with guidance on and off, against the same sampler unsplit: the uint8 frames must be equal.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def reports(launch) -> list[dict]:
    return launch.reports  # the 4-rank launch of conftest.py


def test_every_rank_reported_every_layout(reports):
    layouts = {(e["cp"], e["cfg"], e["groups"]) for r in reports for e in r["layouts"]}
    assert layouts == {(4, False, 1), (2, True, 1), (2, False, 2), (1, True, 2)}
    assert all(len(r["layouts"]) == len(reports[0]["layouts"]) == 12 for r in reports)


def test_parallel_output_equals_single_process(reports):
    for r in reports:
        for e in r["layouts"]:
            assert e["shape_ok"], e
            assert e["max_abs_diff"] <= 1e-5, (r["rank"], e)


def test_fused_blocks_on_a_slice_equal_single_process(reports):
    # What perf.accelerate turns on for GPUs: fused.py's blocks on each rank's slice, Ulysses inside the
    # attention op. On CPU the same blocks run eager on SDPA.
    fused = [(r["rank"], e) for r in reports for e in r["layouts"] if e["fused_max_abs_diff"] is not None]
    assert {(e["cp"], e["cfg"]) for _, e in fused} == {(4, False), (2, True), (2, False), (1, True)}
    for rank, e in fused:
        assert e["fused_max_abs_diff"] <= 1e-5, (rank, e)


def test_ulysses_is_bit_exact(reports):
    # Without CFG splitting, every rank computes the same batch rows as one process: identical bits.
    for r in reports:
        for e in r["layouts"]:
            if not e["cfg"]:
                assert e["bitwise"], (r["rank"], e)


def test_group_leader_shares_and_rank0_gathers(reports):
    assert all(r["share_ok"] for r in reports)
    assert all(r["gather_ok"] for r in reports)


def test_videos_equal_single_process_in_every_layout(reports):
    for r in reports:
        layouts = {(v["cp"], v["cfg"], v["groups"]) for v in r["videos"] if v["video"].startswith("guidance on")}
        assert layouts == {(4, False, 1), (2, True, 1), (2, False, 2), (1, True, 2)}
        assert len(r["videos"]) == 6  # no CFG split without guidance
        for v in r["videos"]:
            assert v["frames_equal"], (r["rank"], v)


def test_text_encoder_runs_once_per_group(reports):
    for r in reports:
        for v in r["videos"]:
            assert v["text_encoder_calls"] == (1 if v["leader"] else 0), (r["rank"], v)
