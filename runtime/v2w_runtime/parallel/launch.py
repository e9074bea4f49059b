"""Process groups from the torchrun environment, the layout policy and the few collectives the program needs.

torchrun (or the Kubeflow training-operator through PET_* variables) sets RANK, WORLD_SIZE and
LOCAL_RANK. `init_parallel` checks them against `--num_gpus`, picks a `Layout`, starts NCCL on GPUs or
gloo on CPU, and builds two kinds of groups: the ranks that make one video together (`group`, for the
single output all-gather per step and for sharing inputs), and inside it the ranks of one CFG half
(`cp_group`, for the Ulysses all-to-alls).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .layout import Layout, choose_layout

@dataclass
class ParallelContext:
    """This rank's place in the world, its device and its process groups. `ParallelContext.single()` for one process."""

    layout: Layout
    device: torch.device
    backend: str | None = None  # None: no process group (one process)
    group: dist.ProcessGroup | None = None  # the ranks making one video; None when alone
    cp_group: dist.ProcessGroup | None = None  # the ranks of one CFG half; None when cp_size is 1

    @classmethod
    def single(cls, device: torch.device | str = "cpu") -> "ParallelContext":
        return cls(Layout(), torch.device(device))

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def _group_ranks(self) -> list[int]:
        first = self.layout.group_index * self.layout.group_size
        return list(range(first, first + self.layout.group_size))

    def share(self, obj: Any) -> Any:
        """The group leader's `obj` on every rank of its group (others pass anything, e.g. None).

        Tensors anywhere in lists, tuples and dicts travel as tensors (broadcast on this rank's device,
        arriving there); everything else is pickled. Use it for what only the leader computes once per
        video (prompt embeddings, the refined prompt, the guardrail verdict).
        """
        if self.layout.group_size == 1:
            return obj
        tensors: list[torch.Tensor] = []
        skeleton = _strip_tensors(obj, tensors) if self.layout.is_group_leader else None
        meta = [(skeleton, [(t.shape, t.dtype) for t in tensors]) if self.layout.is_group_leader else None]
        src = self._group_ranks()[0]
        dist.broadcast_object_list(meta, src=src, group=self.group, device=self._object_device())
        skeleton, specs = meta[0]
        if self.layout.is_group_leader:
            buffers = [t.to(self.device).contiguous() for t in tensors]
        else:
            buffers = [torch.empty(shape, dtype=dtype, device=self.device) for shape, dtype in specs]
        for buffer in buffers:
            dist.broadcast(buffer, src=src, group=self.group)
        return _restore_tensors(skeleton, buffers)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's picklable `obj` on every rank of the world (others pass anything, e.g. None).

        For what rank 0 alone looks up and every rank must plan by, such as the files an earlier
        attempt left, so that all ranks share out the same remaining work.
        """
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def add(self, key: str, amount: int = 1) -> int | None:
        """Adds `amount` to a counter shared by the whole world and returns its new total, without waiting
        for any other rank; `add(key, 0)` reads it. None with one process (nothing to share).

        It lives in the rendezvous store every rank already talks to, so it costs no collective: rank 0
        can follow the other groups' videos while they are still being made.
        """
        store = _world_store() if self.distributed else None
        # torchrun may restart the workers on the same store: each attempt counts afresh.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return None if store is None else int(store.add(f"v2w/{attempt}/{key}", amount))

    def gather_to_leader(self, obj: Any) -> list[Any] | None:
        """Every rank's picklable `obj` (no tensors) as a list by global rank on rank 0; None elsewhere."""
        if not self.distributed:
            return [obj]
        out = [None] * self.layout.world_size if self.layout.is_global_leader else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
            self.backend = None

    def _object_device(self) -> torch.device | None:
        return self.device if self.backend == "nccl" else None


def world_from_env(environ: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(world size, rank, local rank) as torchrun sets them; (1, 0, 0) outside torchrun."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return 1, 0, 0
    try:
        return int(env["WORLD_SIZE"]), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise ValueError(f"bad torchrun environment (WORLD_SIZE/RANK/LOCAL_RANK): {e}") from None


def init_parallel(
    num_gpus: int,
    *,
    num_heads: int,
    guidance: bool = True,
    num_videos: int = 1,
    context_parallel_size: int | None = None,
    cfg_parallel: bool | None = None,
    device: str | None = None,
    environ: dict[str, str] | None = None,
    timeout_s: float = 1800.0,
) -> ParallelContext:
    """Check `num_gpus` against torchrun's world, choose the layout, start the process groups.

    `device`: "cuda" or "cpu"; by default CUDA when available. NCCL runs on CUDA, gloo on CPU.
    """
    world, rank, local_rank = world_from_env(environ)
    if num_gpus < 1:
        raise ValueError(f"--num_gpus must be at least 1, got {num_gpus}")
    if num_gpus != world:
        if world == 1:
            raise ValueError(
                f"--num_gpus {num_gpus} needs {num_gpus} processes: launch with "
                f"torchrun --nproc_per_node={num_gpus} (this is a single process)"
            )
        raise ValueError(
            f"--num_gpus {num_gpus} does not match torchrun's world size {world}: "
            "set --nproc_per_node (times the nodes) and --num_gpus to the same number"
        )
    layout = choose_layout(
        world, rank, num_heads=num_heads, guidance=guidance, num_videos=num_videos,
        context_parallel_size=context_parallel_size, cfg_parallel=cfg_parallel,
    )
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world == 1:
        return ParallelContext(layout, dev)
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if use_cuda else {}
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    return make_context(layout, dev, backend)


def make_context(layout: Layout, device: torch.device, backend: str) -> ParallelContext:
    """The groups of `layout` in the started default process group (a collective: every rank calls it).

    Every rank creates every group in the same order, as `new_group` requires.
    """
    if layout.world_size != dist.get_world_size() or layout.rank != dist.get_rank():
        raise ValueError(f"{layout} does not match the process group (rank {dist.get_rank()} of {dist.get_world_size()})")
    ctx = ParallelContext(layout, device, backend)
    size, cp = layout.group_size, layout.cp_size
    for g in range(layout.num_groups):
        ranks = list(range(g * size, (g + 1) * size))
        group = dist.new_group(ranks) if size > 1 else None
        halves = [ranks[i : i + cp] for i in range(0, size, cp)]
        if cp == 1:
            cp_groups = [None] * len(halves)
        elif len(halves) == 1:
            cp_groups = [group]
        else:
            cp_groups = [dist.new_group(h) for h in halves]
        if g == layout.group_index:
            ctx.group = group
            ctx.cp_group = cp_groups[layout.cfg_index]
    return ctx


def _world_store() -> dist.Store | None:
    # The default group's store (torch keeps it on the world group; there is no public accessor).
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


def _strip_tensors(obj: Any, out: list[torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        out.append(obj)
        return _TensorSlot(len(out) - 1)
    if isinstance(obj, (list, tuple)):
        items = [_strip_tensors(o, out) for o in obj]
        return type(obj)(items) if not hasattr(obj, "_fields") else type(obj)(*items)
    if isinstance(obj, dict):
        return {k: _strip_tensors(v, out) for k, v in obj.items()}
    return obj


def _restore_tensors(obj: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(obj, _TensorSlot):
        return tensors[obj.index]
    if isinstance(obj, (list, tuple)):
        items = [_restore_tensors(o, tensors) for o in obj]
        return type(obj)(items) if not hasattr(obj, "_fields") else type(obj)(*items)
    if isinstance(obj, dict):
        return {k: _restore_tensors(v, tensors) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class _TensorSlot:
    index: int
