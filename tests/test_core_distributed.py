"""Ranks of a sharded denoiser take one decision (process_group), on two gloo CPU processes.

The denoiser (tests/ranks.py) is sharded along its sequence: rank 0 holds the first half of
the tokens, which move a lot from step to step, rank 1 the second half, which barely moves.
Alone, each rank's similarity policy sees its own drift and the ranks refresh at different
steps, so the output they join mixes two schedules. With ``process_group: world`` they sum
each row's drift terms and take, step by step, the decisions of one process holding the whole
sequence; the joined output equals that process's to float32 rounding (the sums are added in
another order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

import cachekit
from cachekit.config import load_config
from cachekit.engine.probes import drift_of, row_drift_terms
from cachekit.engine.ranks import rank_group
from cachekit.errors import ConfigError, RankMismatchError
from tests.ranks import drifting_inputs, mixer, recorded_sums, run_ranks, shard

STEPS = 10
CONFIG = {
    "policy": {"kind": "similarity", "threshold": 0.5},
    "declare": [{"name": "tail", "entry": "blocks.1", "exit": "blocks.3"}],
    "num_steps": STEPS,
}
TOLERANCE = 1e-5
"""Absolute tolerance of the joined output against one process's (values of order 1)."""


def denoise(
    model: torch.nn.Module,
    config: dict[str, Any],
    rank: int | None = None,
    world: int = 1,
    after_enable: Callable[[], Any] = lambda: None,
) -> dict[str, Any]:
    """Run the drifting inputs (this rank's shard of them) through ``model`` with caching
    (``after_enable`` is called once cachekit is on): the hit map of the region (one mark per
    step), the output of every step and the ranks the generation agreed over."""
    outputs = []
    with cachekit.cached(model, config) as handle, torch.no_grad():
        after_enable()
        for step, sample in enumerate(drifting_inputs(STEPS)):
            timestep = torch.tensor(1000.0 * (1 - step / STEPS))
            outputs.append(model(sample if rank is None else shard(sample, rank, world), timestep))
        hits = handle.stats["tail"].hits[0]
        marks = "".join(hits[step][0] for step in sorted(hits))
        ranks = handle.runtimes[0].ranks
    return {
        "marks": marks,
        "output": torch.stack(outputs),
        "ranks": None if ranks is None else (ranks.origin, ranks.size),
    }


def mismatched_steps(rank: int, world: int) -> str:
    """Rank 0 runs 20 steps, rank 1 runs 21, under a fixed schedule agreed over the world: the error."""
    model = mixer(sharded=True)
    config = {**CONFIG, "policy": "uniform", "num_steps": 20 + rank, "process_group": "world"}
    sample = shard(drifting_inputs(1)[0], rank, world)
    with cachekit.cached(model, config), pytest.raises(RankMismatchError) as error:
        model(sample, torch.tensor(1000.0))
    return str(error.value)


def sharded_runs(rank: int, world: int) -> dict[str, Any]:
    """On each rank (one spawn for every test, spawning costs seconds): the run alone (``none``),
    the runs agreed over the world and over a given group, what ``auto`` resolves to, and the
    error of mismatched step counts."""
    model = mixer(sharded=True)
    runs = {"none": denoise(model, {**CONFIG, "process_group": "none"}, rank, world)}
    with recorded_sums() as sums:
        runs["world"] = denoise(model, {**CONFIG, "process_group": "world"}, rank, world)
        runs["world_sums"] = [tuple(terms.shape) for terms in sums]
        denoise(model, {**CONFIG, "policy": "uniform", "process_group": "world"}, rank, world)
        runs["uniform_sums"] = len(sums) - len(runs["world_sums"])
    pair = dist.new_group([0, 1])
    runs["group"] = denoise(model, {**CONFIG, "process_group": pair}, rank, world)["marks"]
    runs["auto"] = denoise(model, CONFIG, rank, world)["ranks"]

    def shard_a_parameter() -> None:  # as parallelize_module would, after cachekit was enabled
        mesh = init_device_mesh("cpu", (world,))
        model.register_parameter("sharded", torch.nn.Parameter(distribute_tensor(torch.zeros(world), mesh, [Shard(0)])))

    dtensor = denoise(model, CONFIG, rank, world, after_enable=shard_a_parameter)
    runs["dtensor"] = {"marks": dtensor["marks"], "ranks": dtensor["ranks"]}
    runs["mismatch"] = mismatched_steps(rank, world)
    return runs


@pytest.fixture(scope="module")
def ranks() -> list[dict[str, Any]]:
    return run_ranks(sharded_runs)


@pytest.fixture(scope="module")
def alone() -> dict[str, Any]:
    """One process holding the whole sequence."""
    return denoise(mixer(sharded=False), CONFIG)


def joined(ranks: list[dict[str, Any]], setting: str) -> torch.Tensor:
    return torch.cat([rank[setting]["output"] for rank in ranks], dim=2)


@pytest.mark.slow
def test_ranks_alone_take_different_decisions_and_join_a_wrong_output(ranks, alone) -> None:
    first, second = (rank["none"]["marks"] for rank in ranks)
    assert first != second, f"the ranks' own drifts should differ: {first} vs {second}"
    assert not torch.allclose(joined(ranks, "none"), alone["output"], atol=1e-3)


@pytest.mark.slow
def test_ranks_that_sum_their_drift_terms_decide_as_one_process(ranks, alone) -> None:
    assert "R" in alone["marks"] and "." in alone["marks"], alone["marks"]  # the schedule both refreshes and reuses
    assert [rank["world"]["marks"] for rank in ranks] == [alone["marks"]] * 2
    assert [rank["group"] for rank in ranks] == [alone["marks"]] * 2
    torch.testing.assert_close(joined(ranks, "world"), alone["output"], atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_a_probing_region_sums_2_x_batch_terms_per_call_and_a_fixed_schedule_none(ranks) -> None:
    assert [rank["world_sums"] for rank in ranks] == [[(2, 2)] * (STEPS - 1)] * 2  # from the second call on
    assert [rank["uniform_sums"] for rank in ranks] == [0, 0]


@pytest.mark.slow
def test_auto_finds_dtensor_parameters_sharded_after_enable_and_no_sharding_it_cannot_see(ranks, alone) -> None:
    assert [rank["dtensor"] for rank in ranks] == [
        {"marks": alone["marks"], "ranks": ("the mesh of its DTensor parameters", 2)}
    ] * 2
    assert [rank["auto"] for rank in ranks] == [None, None]  # sequence sharding by hand: declare it


def test_drift_terms_of_the_shards_add_up_to_the_drift_of_the_whole() -> None:
    before, after = drifting_inputs(2)
    whole = drift_of(row_drift_terms(after, before))
    parts = sum(row_drift_terms(shard(after, rank, 3), shard(before, rank, 3)) for rank in range(3))
    torch.testing.assert_close(drift_of(parts), whole)
    mean_of_means = sum(drift_of(row_drift_terms(shard(after, r, 3), shard(before, r, 3))) for r in range(3)) / 3
    assert not torch.allclose(mean_of_means, whole, atol=1e-3)  # why the terms are summed, not the drifts


@pytest.mark.slow
def test_ranks_that_run_different_step_counts_fail_at_the_first_call_on_every_rank(ranks) -> None:
    first, second = (rank["mismatch"] for rank in ranks)
    assert first == second
    assert "rank 0: 20 steps, 2 batch rows, rank 1: 21 steps, 2 batch rows" in first
    assert "same num_inference_steps and batch" in first


def test_a_process_group_that_names_no_ranks_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"process_group: must be 'auto', 'world', 'none' or a torch.distributed"):
        load_config({"process_group": "wrld"})
    with pytest.raises(ConfigError, match=r"\(did you mean 'world'\?\)"):
        load_config({"process_group": "wrld"})


def test_world_without_torch_distributed_is_a_clear_error() -> None:
    assert not dist.is_initialized()
    with pytest.raises(ConfigError, match=r"process_group world needs torch.distributed initialised"):
        cachekit.enable(mixer(sharded=False), {**CONFIG, "process_group": "world"})
    assert rank_group("auto", mixer(sharded=False)) is None
