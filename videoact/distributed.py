"""Several processes, one job: ``torchrun`` launches, ``torch.distributed`` connects.

There is no ``--distributed`` switch. ``torchrun`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each
process it starts; when ``WORLD_SIZE`` is above 1, :func:`init_distributed` joins the
process group from those variables (``env://``). Started any other way, everything
runs as one process and every helper here is a no-op.

    with distributed_session("auto") as dist_info:   # RANK/WORLD_SIZE from torchrun
        dist_info.rank, dist_info.world_size, dist_info.device
        ...

Backends: NCCL when each rank drives a GPU (rank ``LOCAL_RANK`` of a node uses
``cuda:LOCAL_RANK``), gloo on CPUs. On CPUs ``torchrun`` sets ``OMP_NUM_THREADS=1``
for every rank unless it is already set, so N ranks on N cores do not oversubscribe.

Launch lines: ``tools/dist_extract.sh`` and ``tools/dist_train.sh``.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "DistInfo",
    "DistributedSetupError",
    "env_world_size",
    "launched_distributed",
    "local_device",
    "init_distributed",
    "current",
    "is_main_process",
    "barrier",
    "cleanup",
    "distributed_session",
    "all_gather_objects",
    "broadcast_object",
    "ShardSampler",
]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedSetupError(RuntimeError):
    """The torchrun environment is incomplete or does not fit this machine."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job.

    ``rank``/``world_size`` count processes over all nodes; ``local_rank`` counts them
    on this node (it picks the GPU). ``backend`` is ``"nccl"``, ``"gloo"`` or None
    (a single process, no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when a process group with more than one rank is in use."""
        return self.backend is not None and self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes shared files and prints summaries."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={value!r} is not an integer") from None


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    return _env_int("WORLD_SIZE", 1)


def launched_distributed() -> bool:
    """True when started by torchrun (or similar) with more than one rank."""
    return env_world_size() > 1


def local_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The device of this rank: ``"auto"`` -> ``cuda:LOCAL_RANK`` when CUDA is available,
    else CPU; ``"cuda"`` without an index -> ``cuda:LOCAL_RANK``; anything else as given."""
    local_rank = _env_int("LOCAL_RANK", 0) if local_rank is None else local_rank
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from .device import parse_device  # device.py imports this module: not at the top

    device = parse_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def current() -> DistInfo:
    """The :class:`DistInfo` of the initialized process group (single-process info otherwise)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    backend = str(dist.get_backend())
    local_rank = _env_int("LOCAL_RANK", 0)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return DistInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
        local_world_size=_env_int("LOCAL_WORLD_SIZE", 1), device=device, backend=backend,
    )


def init_distributed(
    device: str | torch.device | None = "auto",
    backend: str | None = None,
    timeout_s: float = 1800.0,
) -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    With ``WORLD_SIZE`` unset or 1 nothing is initialized and a single-process
    :class:`DistInfo` is returned (its ``device`` resolved from ``device``). Calling it
    again once initialized returns the current state.

    Args:
        device: ``"auto"`` (``cuda:LOCAL_RANK`` if CUDA is available, else CPU),
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        backend: default ``"nccl"`` for CUDA devices, ``"gloo"`` for the CPU.
        timeout_s: how long collectives wait for a missing rank before failing.

    Raises:
        DistributedSetupError: a torchrun variable is missing or malformed, or
            ``LOCAL_RANK`` names a GPU this machine does not have.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    world = env_world_size()
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = local_device(device, local_rank)
    if world <= 1:
        return DistInfo(device=dev)
    if not dist.is_available():
        raise DistributedSetupError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    missing = [name for name in _ENV if not os.environ.get(name)]
    if missing:
        raise DistributedSetupError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with torchrun "
            "(see tools/dist_extract.sh), or unset WORLD_SIZE for a single process"
        )
    rank = _env_int("RANK", 0)
    if not 0 <= rank < world:
        raise DistributedSetupError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if dev.index is None or dev.index >= count:
            raise DistributedSetupError(
                f"rank {rank} (LOCAL_RANK={local_rank}) wants {dev} but this machine has {count} GPU(s): "
                "start at most one rank per GPU (--nproc_per_node)"
            )
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        kwargs["device_id"] = dev  # binds the rank to its GPU (eager NCCL init)
    dist.init_process_group(backend=backend, init_method="env://", world_size=world, rank=rank,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank,
                    local_world_size=_env_int("LOCAL_WORLD_SIZE", 1), device=dev, backend=backend)


def is_main_process() -> bool:
    """Rank 0, or the only process."""
    return current().is_main


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def cleanup() -> None:
    """Leave the process group (no-op when none is initialized)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(
    device: str | torch.device | None = "auto", backend: str | None = None, timeout_s: float = 1800.0
) -> Iterator[DistInfo]:
    """:func:`init_distributed` on entry; on exit leave the group if this call joined it.

    On a normal exit the ranks meet at a barrier first, so no rank tears the group down
    while another still needs it.
    """
    joined = not (dist.is_available() and dist.is_initialized())
    info = init_distributed(device, backend, timeout_s)
    try:
        yield info
        if joined and info.enabled:
            barrier()
    finally:
        if joined and info.enabled:
            cleanup()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (``obj`` itself in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of a dataset: every item exactly once over all
    ranks, without the padding ``DistributedSampler`` adds (which would count some
    items twice in evaluation metrics). Ranks may get one item more than others.

    In one process (``world_size=1``) it is ``range(len(dataset))``.
    """

    def __init__(self, data_source: Sequence[Any], rank: int | None = None, world_size: int | None = None):
        info = current()
        self.n = len(data_source)
        self.rank = info.rank if rank is None else int(rank)
        self.world_size = info.world_size if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside 0..{self.world_size - 1}")

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))
