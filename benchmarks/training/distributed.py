"""Data parallelism for the one training loop.

The model is not wrapped in ``DistributedDataParallel``: methods differentiate the flow map with
``torch.func.jvp``, and a forward-mode pass through DDP's forward (or through ``model.module``)
silently skips its gradient hooks. Instead every rank holds the same replica, takes a disjoint
shard of the global batch (``shard``), and after ``backward`` the gradients and the loss are
averaged over ranks in one flat all-reduce (``sync_grads``), before clipping and the optimiser
step, so every replica takes the same step. Rank 0 alone writes logs and checkpoints.

Random draws: every rank starts from the cell's seed (identical initial weights); ranks > 0 then
reseed so their noise and times differ from rank 0's. The loss curve thus matches a single process
with the same global batch in distribution, not bit for bit (tests/test_ddp.py states the
tolerance). World size 1 (the default) changes nothing: no process group, no extra work.

A stop request (``benchmarks.base.stop``) is agreed by all ranks at log boundaries. ``shutdown`` ends
the process group (a barrier first, so the ranks leave together after rank 0's evaluation); the
caller that joined the group runs it in a ``finally``.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn

from benchmarks.base.stop import STOP


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def init(rank_: int, world: int, addr: str, port: int, backend: str | None = None) -> None:
    """Join the process group (gloo on CPU, nccl on GPUs); world 1 does nothing."""
    if world <= 1 or dist.is_initialized():
        return
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(
        backend,
        init_method=f"tcp://{addr}:{port}",
        rank=rank_,
        world_size=world,
        timeout=datetime.timedelta(minutes=30),
    )


def init_from_slurm() -> tuple[int, int]:
    """Rank and world size from submitit's JobEnvironment (one task per GPU); returns (rank, local)."""
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        port = 20000 + int(str(env.job_id).split("_")[0]) % 20000
        port += int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")) % 97
        init(env.global_rank, env.num_tasks, env.hostnames[0], port)
    return env.global_rank, env.local_rank


def shard(x: Tensor) -> Tensor:
    """This rank's slice of a global batch ``(B, ...)``; B must divide by the world size."""
    world = world_size()
    if world == 1:
        return x
    if x.shape[0] % world:
        raise ValueError(f"train.batch={x.shape[0]} must be a multiple of the {world} ranks")
    n = x.shape[0] // world
    return x[rank() * n : (rank() + 1) * n]


def sync_grads(params: list[nn.Parameter], loss: Tensor) -> Tensor:
    """Average gradients (in place) and the loss over ranks with one all-reduce; returns the loss.

    Equal shards make the mean of the ranks' mean losses the global-batch mean, so its gradient
    is the single-process gradient of the same samples.
    """
    world = world_size()
    if world == 1:
        return loss
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [loss.detach().float().reshape(1)])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[i : i + n].view_as(g).to(g.dtype)
        i += n
    return flat[-1]


def stop_requested(at_log: bool) -> bool:
    """Whether to stop after this step; with several ranks they agree at log boundaries only."""
    if world_size() == 1:
        return STOP.is_set()
    if not at_log:
        return False
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([1.0 if STOP.is_set() else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def seed_ranks() -> None:
    """Ranks > 0 draw other random numbers than rank 0 (same weights were made before this)."""
    if rank() > 0:
        torch.manual_seed((torch.initial_seed() * 1_000_003 + rank()) % 2**63)


def rng_states() -> list[tuple[Tensor, list[Tensor] | None]]:
    """Every rank's (CPU, CUDA) generator states, gathered (collective when world > 1)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    mine = (torch.get_rng_state(), cuda)
    if world_size() == 1:
        return [mine]
    out: list = [None] * world_size()
    dist.all_gather_object(out, mine)
    return out


def set_rng_state(state: dict) -> None:
    """Restore this rank's generators from a checkpoint written by ``train``."""
    cpu, cuda = state["rng"], state.get("cuda_rng")
    ranks = state.get("rng_ranks")
    if ranks and len(ranks) == world_size() and rank() < len(ranks):
        cpu, cuda = ranks[rank()]
    torch.set_rng_state(cpu)
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave together, then end the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
