"""Several training processes, one model: DistributedDataParallel when launched by torchrun.

torchrun starts one process per GPU and tells each where it stands through the environment:
WORLD_SIZE (processes in all), RANK (this one's number, 0 first) and LOCAL_RANK (its number on
its node, which is also the GPU it drives). `process_group` reads them, joins the group (NCCL on
CUDA, gloo on the CPU) and leaves it at the end. Launched plainly, or as one process, it does
nothing and training runs exactly as it does without torchrun.

How the processes share the work (`ecg_gcn.train` applies these rules):

- the preprocessing cache is built by rank 0 first, then checked (or built) by the first process
  of every other node, then read by the rest (`in_turn`): right whether each node has its own
  cache folder or the nodes share one (over the same data files);
- each process trains on its own share of the records (DistributedSampler) with a batch of
  `TrainConfig.batch_size`; DDP averages the gradients, so a step sees N x batch_size windows;
- rank 0 alone validates, writes files and shows progress; it hands the validation loss and the
  stop decision to the others (`broadcast`), so every scheduler and loop stays in step.

When a process fails, the others are left waiting in their next collective operation: torchrun
sees the failed process exit and stops the others of its machine, and any process still waiting
gives up after `TIMEOUT`. `in_turn` shares a failure instead, so that every process raises.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ecg_gcn.device import pick_device

# How long a process waits in a collective operation. The others wait while rank 0 builds the
# preprocessing cache, which takes long on a large data set, and while it validates; torch's
# default (10 minutes with NCCL) could cut them off.
TIMEOUT = timedelta(hours=2)

_T = TypeVar("_T")


@dataclass(frozen=True)
class Context:
    """Where this process stands among the training processes: one of one without torchrun."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0


def from_env(environ: Mapping[str, str] | None = None) -> Context:
    """The Context torchrun describes in the environment (one of one when it is not set)."""
    environ = os.environ if environ is None else environ
    values = {}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        text = environ.get(name, "").strip()
        if not text and name == "WORLD_SIZE":
            return Context()
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(
                f"{name}={text!r}: a distributed run needs WORLD_SIZE, RANK and LOCAL_RANK as "
                "integers; launch it with torchrun, which sets them"
            ) from None
    context = Context(values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"])
    if context.world_size < 1 or not 0 <= context.rank < context.world_size:
        raise ValueError(f"RANK {context.rank} of WORLD_SIZE {context.world_size}: out of range")
    return context


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is rank 0 (always, without torchrun): the one that writes files."""
    return from_env(environ).is_main


@contextlib.contextmanager
def process_group(
    device: torch.device | None = None, environ: Mapping[str, str] | None = None
) -> Iterator[tuple[Context, torch.device]]:
    """(context, device) of this process, inside the process group when torchrun started several.

    Under torchrun a CUDA device becomes cuda:LOCAL_RANK and the backend NCCL; on the CPU the
    backend is gloo. The group is left on exit, unless it existed before (then its owner leaves
    it). Without torchrun (or with one process) nothing is initialised and the device is
    `device`, or CUDA when present, else the CPU.
    """
    context = from_env(environ)
    if not context.distributed:
        yield context, device or pick_device()
        return
    if device is None:
        device = pick_device()
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=context.rank,
            world_size=context.world_size,
            timeout=TIMEOUT,
            device_id=device if device.type == "cuda" else None,
        )
    elif dist.get_world_size() != context.world_size:
        raise ValueError(
            f"the process group has {dist.get_world_size()} processes, WORLD_SIZE says "
            f"{context.world_size}"
        )
    try:
        yield context, device
    finally:
        if owner:
            dist.destroy_process_group()


def wrap(model: torch.nn.Module, context: Context, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when there are several processes, else itself.

    Batch norm keeps per-process statistics (no SyncBatchNorm): a process's batch of 32 windows
    is plenty to normalise with, and syncing would add a collective to each of the network's 33
    batch-norm layers in every forward pass. DDP copies rank 0's buffers (running statistics and
    the GCN's label graph) to the others before each forward pass, so the processes agree on them.
    """
    if not context.distributed:
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def broadcast(obj: _T, context: Context) -> _T:
    """Rank 0's `obj` on every process (pickled: tensors in it should be on the CPU)."""
    if not context.distributed:
        return obj
    box = [obj if context.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: _T, context: Context) -> list[_T]:
    """Every process's `obj`, in rank order, on every process."""
    if not context.distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def in_turn(work: Callable[[], _T], context: Context) -> _T:
    """`work()` on every process in three turns: rank 0, then the first process of every other
    node, then all the others, each turn waiting for the one before.

    Made for the preprocessing cache: rank 0 builds it; on another node, its first process
    finds it fresh when the cache folder is shared, or builds the node's own; the rest find a
    fresh cache and only read it. No two processes ever build the same folder at once. When
    `work` raises on any process, every process raises after that turn, so none waits forever.
    """
    if not context.distributed:
        return work()
    turns = (
        context.rank == 0,
        context.local_rank == 0 and context.rank > 0,
        context.local_rank > 0,
    )
    result: Any = None
    error: Exception | None = None
    for mine in turns:
        if mine:
            try:
                result = work()
            except Exception as caught:  # shared below, then raised on this process
                error = caught
        said = None if error is None else f"{type(error).__name__}: {error}"
        failures = [f for f in all_gather(said, context) if f is not None]
        if error is not None:
            raise error
        if failures:
            raise RuntimeError(f"another training process failed ({failures[0]}); stopping")
    return result
