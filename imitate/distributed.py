"""Several training processes: torch.distributed set-up from torchrun's variables, and the few
collectives the trainer needs, with errors that name the rank.

    torchrun --nproc_per_node N -m imitate train ...      RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
        rank 0 .. N-1: the same trainer; each draws its own share of every epoch's windows
        DistributedDataParallel averages the gradients (gloo on CPU, NCCL on GPU), so the weights
        stay identical; rank 0 alone logs, validates, evaluates and writes checkpoints

Without those variables (or with WORLD_SIZE=1) every function here is a no-op and the trainer runs
exactly as a single process. A process that dies or stops answering ends the run: the others raise
`ImitateError` naming their rank and the collective they were in, either at once (a closed
connection) or after ``timeout`` seconds (a process that hangs).
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from imitate.errors import ConfigError, ImitateError


def env_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables; (0, 1, 0) without them."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None


def pick_device(name: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``auto``: cuda when available, else cpu. With several processes ``cuda`` and ``auto`` take the
    GPU of the process's local rank; ``cuda:N`` is then refused (every process would share one GPU)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: this torch has no usable CUDA GPU (use cpu or auto)")
        if world_size > 1:
            if device.index is not None:
                raise ConfigError(f"--device {name}: with several processes use --device cuda (or auto); "
                                  f"each process takes the GPU of its LOCAL_RANK")
            device = torch.device("cuda", local_rank)
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    return device


@dataclass
class Context:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    # -- collectives (no-ops for one process) -----------------------------------------------------
    @contextlib.contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Turn a failed collective (a peer died, closed its connection or timed out) into an
        `ImitateError` that names this rank and what it was doing."""
        try:
            yield
        except ImitateError:
            raise
        except (dist.DistError, RuntimeError) as e:
            if not self.enabled or not _is_peer_failure(e):
                raise
            raise ImitateError(f"rank {self.rank} of {self.world_size}: {what} failed because another process "
                               f"stopped or stopped answering ({_first_words(e)}); see that process's error. "
                               f"The last checkpoint written is kept; continue with --resume") from None

    def all_gather_object(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj`` (picklable; exchanged between this run's own processes only)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with self.collective(what):
            dist.all_gather_object(out, obj)
        return out

    def sum_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Sum a tensor over the ranks, in place."""
        if self.enabled:
            with self.collective(what):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def min_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        if self.enabled:
            with self.collective(what):
                dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def on_main(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 only; an `ImitateError` it raises is raised on every rank."""
        error = None
        result = None
        if self.is_main:
            try:
                result = fn()
            except ImitateError as e:
                error = str(e)
        if self.enabled:
            error = self.all_gather_object(error, what)[0]
        if error is not None:
            raise ImitateError(error if self.is_main else f"rank 0 failed ({what}): {error}")
        return result

    def data_parallel(self, policy: torch.nn.Module) -> Callable:
        """``policy.compute_loss`` for one process; for several, the same call through
        DistributedDataParallel, whose backward averages the gradients over the ranks. Rank 0's
        weights are broadcast once here; buffers (normalizer statistics, fixed tables) are fitted
        identically on every rank and not broadcast again."""
        if not self.enabled:
            return policy.compute_loss
        from torch.nn.parallel import DistributedDataParallel

        with self.collective("broadcasting the initial weights"):
            return DistributedDataParallel(_LossOf(policy), device_ids=[self.device] if self.device.type == "cuda"
                                           else None, forward_sync_buffers=False)


class _LossOf(torch.nn.Module):
    """A policy's loss as ``forward``, the call DistributedDataParallel hooks."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, obs: dict[str, torch.Tensor], action: torch.Tensor, action_mask: torch.Tensor | None):
        """obs: key -> (B, To, *shape), action (B, Ta, A), action_mask (B, Ta) -> (loss, info)."""
        return self.policy.compute_loss(obs, action, action_mask)


def _first_words(e: BaseException) -> str:
    """The gist of a backend's error: its first sentence, without the source location."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", (str(e).strip().splitlines() or [""])[0])
    return text.split(". ")[0][:200] or type(e).__name__


def _is_peer_failure(e: BaseException) -> bool:
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return any(s in text for s in ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket",
                                   "broken pipe", "process group"))


def setup(device: str = "auto", timeout_s: float = 1800.0) -> Context:
    """The process's `Context`; joins torchrun's process group (gloo on CPU, NCCL on GPU) when
    WORLD_SIZE > 1. The group is made once per process and kept until the process exits, so that
    several runs in one process (train, then resume) share it."""
    rank, world_size, local_rank = env_rank()
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    ctx = Context(rank, world_size, local_rank, pick_device(device, local_rank, world_size))
    if world_size == 1:
        return ctx
    if not dist.is_available():
        raise ImitateError("WORLD_SIZE > 1 but this torch was built without torch.distributed")
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if not dist.is_initialized():
        backend = "nccl" if ctx.device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                    device_id=ctx.device if backend == "nccl" else None)
        except (RuntimeError, ValueError) as e:
            raise ImitateError(f"rank {rank} of {world_size}: cannot join the process group with {backend} "
                               f"({_first_words(e)}); "
                               f"start several processes with torchrun --nproc_per_node N") from None
        atexit.register(_leave_group)
    elif dist.get_world_size() != world_size:
        raise ImitateError(f"a process group of {dist.get_world_size()} processes exists but WORLD_SIZE={world_size}")
    return ctx


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def weights_digest(*modules: torch.nn.Module) -> str:
    """SHA-256 of the modules' parameters and buffers (names, dtypes, bytes): equal on ranks that agree."""
    h = hashlib.sha256()
    for module in modules:
        for name, t in module.state_dict().items():
            h.update(name.encode())
            h.update(str(t.dtype).encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of the torch generator of rank ``rank`` > 0 (rank 0 keeps the run's own seed, so that one
    process trains exactly as before): distinct noise per rank, reproducible."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])
