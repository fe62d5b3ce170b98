"""cachekit on diffusers' own context parallelism: a tiny Flux, Ulysses over two gloo CPU ranks.

``enable_parallelism(config=ContextParallelConfig(ulysses_degree=2))`` splits Flux's image and
text tokens over the ranks at the model's input, runs attention with all-to-alls and gathers
the output at ``proj_out``; so every block of a cached region sees half the tokens, and ranks
that decided differently would wait forever in the next all-to-all. ``process_group: auto``
finds the context parallel mesh on the model; the ranks take the decisions one process takes
on the whole sequence and return its output.

diffusers 0.42.1 needs one thing patched to run it on CPU: ``_resolve_parallel_config`` places
each rank on ``torch.device(device_type, rank % torch.accelerator.device_count())``, and a
CPU-only torch counts 0 accelerators (``ZeroDivisionError``); the ranks here report 1. Only
Ulysses runs on CPU: ring attention needs the attention's log-sum-exp, which the native
backend does not return (``ValueError: Native attention does not support return_lse=True``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from cachekit_dit.inputs import EXAMPLES

import cachekit
from cachekit.engine.probes import drift_of
from tests import dit_models
from tests.ranks import recorded_sums, run_ranks

STEPS = 8
CONFIG = {"policy": {"kind": "similarity", "probe": "entry_residual", "threshold": 0.5}, "num_steps": STEPS}
TOLERANCE = 1e-4
"""Absolute tolerance of the context-parallel output against one process's: attention is
computed in another order (values of order 1)."""


def generate(model: torch.nn.Module) -> dict[str, Any]:
    """The hit map of the cached region and the output of a short denoising loop."""
    kwargs = {**EXAMPLES.kwargs(model), "return_dict": False}
    with cachekit.cached(model, CONFIG) as handle, torch.no_grad():
        output = dit_models.denoise(model, kwargs, steps=STEPS)
        (view,) = handle.views.values()
        hits = view.stats.hits[0]
        ranks = handle.runtimes[0].ranks
    return {
        "marks": "".join(hits[step][0] for step in sorted(hits)),
        "output": output,
        "ranks": None if ranks is None else (ranks.origin, ranks.size),
    }


def context_parallel_run(rank: int, world: int) -> dict[str, Any]:
    """A tiny Flux under Ulysses context parallelism over the ranks, cached with the config's
    default group; with the drift each rank measured on its own half, before the sum."""
    from diffusers import ContextParallelConfig

    torch.accelerator.device_count = lambda: 1  # see the module docstring: 0 on CPU-only torch
    model = dit_models.tiny_flux()
    model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    with recorded_sums() as sums:
        return {**generate(model), "local": [drift_of(terms) for terms in sums]}


@pytest.mark.slow
def test_context_parallel_ranks_decide_as_one_process_and_return_its_output() -> None:
    alone = generate(dit_models.tiny_flux())
    assert "R" in alone["marks"] and "." in alone["marks"], alone["marks"]
    ranks = run_ranks(context_parallel_run)
    assert [rank["ranks"] for rank in ranks] == [("diffusers context parallel mesh", 2)] * 2
    first, second = (torch.tensor(rank["local"]) for rank in ranks)
    assert len(first) == STEPS - 1 and (first - second).abs().max() > 0.01  # each half drifts its own way
    assert [rank["marks"] for rank in ranks] == [alone["marks"]] * 2
    for rank in ranks:
        torch.testing.assert_close(rank["output"], alone["output"], atol=TOLERANCE, rtol=0)
