"""Several CPU processes joined by gloo, and a toy denoiser whose sequence they share.

:func:`run_ranks` spawns ``world`` processes (torch.multiprocessing, spawn), joins them into
one gloo process group on a free local port, runs ``worker(rank, world, *args)`` in each and
returns what each returned, by rank. Every wait is bounded: a collective that never finds its
partner fails after ``timeout`` seconds (gloo's own timeout), and a process that does not
answer in time is killed, so a deadlock fails the test instead of hanging it.

:class:`SequenceMixer` is a denoiser sharded along its sequence: each rank holds a slice of
the tokens; its first block mixes the whole sequence (a mean over every token, summed over
the ranks with one all-reduce), the blocks after it work token by token.
"""

from __future__ import annotations

import os
import pickle
import queue
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cachekit.engine.ranks import RankGroup

WIDTH, CHANNELS, TOKENS = 16, 4, 12


def free_port() -> int:
    """A TCP port no one listens on now, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(worker: Callable[..., Any], *args: Any, world: int = 2, timeout: float = 60.0) -> list[Any]:
    """What ``worker(rank, world, *args)`` returns on each of ``world`` gloo ranks, by rank.

    Raises:
        AssertionError: a rank raised (its traceback is in the message) or did not finish in
            ``timeout`` seconds.
    """
    context = mp.get_context("spawn")
    answers = context.Queue()
    port = free_port()
    processes = [
        context.Process(target=_rank_main, args=(rank, world, port, timeout, worker, args, answers))
        for rank in range(world)
    ]
    for process in processes:
        process.start()
    results: dict[int, Any] = {}
    deadline = time.monotonic() + timeout + 30  # gloo's own timeout fails a stuck collective first
    dead: list[int] = []
    try:
        while len(results) < world:
            try:
                rank, ok, value = answers.get(timeout=1)
            except queue.Empty:
                # an answer sent just before exiting is read on the next turn: fail on the second look
                silent = [rank for rank in dead if rank not in results]
                codes = [processes[rank].exitcode for rank in silent]
                assert not silent, f"ranks {silent} exited (exit codes {codes}) without answering"
                dead = [rank for rank, p in enumerate(processes) if p.exitcode is not None]
                assert time.monotonic() < deadline, f"ranks {sorted(set(range(world)) - set(results))} hang"
                continue
            assert ok, f"rank {rank} failed:\n{value}"
            results[rank] = pickle.loads(value)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    return [results[rank] for rank in range(world)]


def _rank_main(
    rank: int, world: int, port: int, timeout: float, worker: Callable[..., Any], args: tuple[Any, ...], answers: Any
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
    try:
        answers.put((rank, True, pickle.dumps(worker(rank, world, *args))))  # by value: the rank may exit first
    except BaseException:
        answers.put((rank, False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


@contextmanager
def recorded_sums() -> Iterator[list[torch.Tensor]]:
    """Every tensor of drift terms this rank's :meth:`RankGroup.sum` adds up, as it was before the sum."""
    recorded: list[torch.Tensor] = []
    total = RankGroup.sum

    def recording(self: RankGroup, terms: torch.Tensor) -> torch.Tensor:
        recorded.append(terms.clone())
        return total(self, terms)

    RankGroup.sum = recording  # type: ignore[method-assign]
    try:
        yield recorded
    finally:
        RankGroup.sum = total  # type: ignore[method-assign]


def shard(tensor: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s slice of ``tensor``'s sequence (dimension 1), the slices as even as they can be."""
    return tensor.tensor_split(world, dim=1)[rank]


class MixerBlock(nn.Module):
    """Adds an MLP of each token and, when ``mixes``, a projection of the mean of all tokens."""

    def __init__(self, mixes: bool, sharded: bool):
        super().__init__()
        self.mixes, self.sharded = mixes, sharded
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))
        self.mix = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mlp(x)
        if not self.mixes:
            return x
        total = torch.cat((x.sum(dim=1), torch.full((len(x), 1), float(x.shape[1]))), dim=1)
        if self.sharded:
            dist.all_reduce(total)
        mean = total[:, :-1] / total[:, -1:]
        return x + self.mix(mean)[:, None]


class SequenceMixer(nn.Module):
    """A toy denoiser, ``sharded`` along its sequence over the default process group or not."""

    def __init__(self, sharded: bool, depth: int = 4):
        super().__init__()
        self.embed = nn.Linear(CHANNELS, WIDTH)
        self.time = nn.Linear(1, WIDTH)
        self.blocks = nn.ModuleList(MixerBlock(mixes=index == 0, sharded=sharded) for index in range(depth))
        self.out = nn.Linear(WIDTH, CHANNELS)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        x = self.embed(sample) + self.time(timestep.reshape(-1, 1).float() / 1000)[:, None]
        for block in self.blocks:
            x = block(x)
        return self.out(x)


def mixer(sharded: bool) -> SequenceMixer:
    """The same seeded weights on every rank and in the single process."""
    torch.manual_seed(0)
    return SequenceMixer(sharded).eval()


def drifting_inputs(steps: int) -> list[torch.Tensor]:
    """The sample of each step (two rows): the first half of the sequence moves a lot from step to
    step, the second half barely, so the ranks holding either half see different local drifts."""
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(2, TOKENS, CHANNELS, generator=generator)
    moves = torch.randn(steps, 2, TOKENS, CHANNELS, generator=generator)
    moves[:, :, TOKENS // 2 :] *= 0.02
    return [base + 0.3 * moves[: step + 1].sum(dim=0) for step in range(steps)]
