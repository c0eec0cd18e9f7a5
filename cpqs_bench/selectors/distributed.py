"""Selectors whose ranking is global under ``accelerate launch`` / ``torchrun``.

:func:`cpqs_bench.score.score_pool` hands each process its slice of the pool (``examples[rank::world]``) and the main
process merges the rows. That is exact for a selector whose score of an example depends on that example alone (and
on fixed inputs every process reads: a checkpoint, a query set): ``less``, single-task ``rds``, ``reward``. A
selector whose scores are a *pick order* over the whole pool — DEITA's score-first diversity filter, RDS+'s round
robin across tasks — cannot rank a slice alone: each process computes its slice's expensive part (scorer passes,
embeddings), :func:`all_gather` exchanges those small per-example results, and every process runs the same
deterministic global ranking, then keeps its own slice's rows. The merged output equals one process's.
"""

from __future__ import annotations

import os
from typing import TypeVar, cast

T = TypeVar("T")


def world_size() -> int:
    """The number of processes scoring the pool together (1 outside a launched run)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1"))


def all_gather(obj: T) -> list[T]:
    """Every process's ``obj`` (a picklable value), in rank order; ``[obj]`` in a single process. Launched with
    several processes but without a process group (``score_pool`` forms one through accelerate), it refuses: a
    slice ranked alone would be merged into a wrong global order."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError(
                f"WORLD_SIZE={os.environ['WORLD_SIZE']} but no process group is initialised: a pick-order selector "
                "needs every process's results (score through cpqs_bench.score.score_pool, which forms the group)"
            )
        return [obj]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return [cast(T, o) for o in gathered]
