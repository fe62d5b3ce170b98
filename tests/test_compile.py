"""torch.compile: a compiled denoiser with cachekit gives the eager cachekit output, with few graph breaks.

Every compile uses the ``aot_eager`` backend (dynamo and AOTAutograd, no code generation): it
runs the same ATen kernels as eager, so outputs are compared within 1e-6 (measured: equal). A
test also checks that the eager cached output differs from the uncached one, so equality proves
that caching ran under compile. Inductor's speed is a benchmark (benchmarks/test_compile.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch._dynamo.utils
from torch import nn

import cachekit
from cachekit.errors import ConfigError
from tests.dit_models import flux_pipeline, run_pipeline
from tests.models import tiny_transformer
from tests.unet_models import build_unet, one_thread  # noqa: F401  (autouse fixture)

BACKEND = "aot_eager"
T = torch.linspace(1000, 100, 7)
TWO_REGIONS = {
    "declare": [
        {"name": "early", "entry": "blocks.1", "exit": "blocks.2"},
        {"name": "late", "entry": "blocks.3", "exit": "blocks.4"},
    ],
    "num_steps": len(T),
}
"""Two residual regions of a 6-block tiny transformer, for the bare loop of :func:`run` (7 steps)."""
UNIFORM = {"kind": "uniform", "interval": 3}
MIXED = {**TWO_REGIONS, "policy": UNIFORM, "region_policies": {"late": {"kind": "similarity", "threshold": 0.05}}}
"""Uniform refreshes for ``early``, similarity for ``late``."""
CLOSE = {"rtol": 0.0, "atol": 1e-6}


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Each test compiles from scratch and counts only its own graphs and breaks."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@torch.no_grad()
def run(model: Callable[..., torch.Tensor]) -> torch.Tensor:
    """The bare denoising loop over :data:`T` on :func:`tiny_transformer`."""
    sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    for t in T:
        sample = sample - 0.1 * model(sample, t)
    return sample


def eager_cached(config: dict[str, Any]) -> tuple[torch.Tensor, str]:
    """The eager cachekit output of a fresh tiny transformer, and its hit map."""
    model = tiny_transformer()
    with cachekit.cached(model, config) as handle:
        return run(model), handle.stats.hit_map()


def graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def breaks() -> int:
    return sum(torch._dynamo.utils.counters["graph_break"].values())


@pytest.mark.parametrize(("forecast", "on_wrapper"), [("none", False), ("linear", True)])
def test_compiled_model_gives_the_eager_cached_output(forecast: str, on_wrapper: bool) -> None:
    """Compiled first; cachekit enabled on the model, or on the compiled wrapper (hooks then sit on its model)."""
    config = {**MIXED, "forecast": forecast}
    expected, hit_map = eager_cached(config)
    assert not torch.allclose(expected, run(tiny_transformer()), atol=1e-3)  # caching changes the output
    model = tiny_transformer()
    compiled = torch.compile(model, backend=BACKEND)
    with cachekit.cached(compiled if on_wrapper else model, config) as handle:
        assert "forward" in vars(model.blocks[1])
        torch.testing.assert_close(run(compiled), expected, **CLOSE)
        assert handle.stats.hit_map() == hit_map
        torch.testing.assert_close(run(compiled), expected, **CLOSE)  # stores into forecasters made in the first
        before = graphs()
        torch.testing.assert_close(run(compiled), expected, **CLOSE)
    assert graphs() == before  # from the third generation on nothing new compiles


def explain(model: nn.Module) -> list[int]:
    """The graph breaks of each of two forwards (the first refreshes every region, the second may reuse)."""
    sample = torch.randn(1, 8, 4)
    with torch.no_grad():
        return [torch._dynamo.explain(model)(sample, t).graph_break_count for t in T[:2]]


def test_graph_breaks_are_at_most_one_per_region_and_one_for_the_clock() -> None:
    """Measured: 1 + one per region on a forward that refreshes (3 here), 1 on one that reuses both."""
    model = tiny_transformer()
    with cachekit.cached(model, MIXED) as handle:
        counts = explain(model)
    assert handle.stats.hit_map().splitlines()[0].split()[1] == "R."  # 'early' reused at the second
    assert max(counts) <= 1 + 2, counts


def test_compiling_in_place_after_enabling_and_disabling_restore_the_outputs() -> None:
    expected, _ = eager_cached(MIXED)
    model = tiny_transformer()
    handle = cachekit.enable(model, MIXED)
    model.compile(backend=BACKEND)
    torch.testing.assert_close(run(model), expected, **CLOSE)
    handle.disable()
    torch.testing.assert_close(run(model), run(tiny_transformer()), **CLOSE)


# --- static mode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "forecast"), [(UNIFORM, "none"), ({"kind": "nonuniform", "interval": 2, "center": 3}, "linear")]
)
def test_static_mode_compiles_fullgraph_with_no_break(policy: dict[str, Any], forecast: str) -> None:
    config = {**TWO_REGIONS, "policy": policy, "forecast": forecast}
    expected, hit_map = eager_cached(config)
    model = tiny_transformer()
    compiled = torch.compile(model, backend=BACKEND, fullgraph=True)  # a break would raise
    with cachekit.cached(compiled, config, static=True) as handle:
        torch.testing.assert_close(run(compiled), expected, **CLOSE)
        assert handle.stats.hit_map() == hit_map
        compiled_graphs = graphs()
        torch.testing.assert_close(run(compiled), expected, **CLOSE)
    assert breaks() == 0
    assert graphs() == compiled_graphs  # the next generation reuses the graphs
    # a graph per path (refresh, reuse; the first refresh stores into nothing yet); linear adds
    # one per distinct extrapolation ratio
    assert compiled_graphs <= (3 if forecast == "none" else 8)


def test_static_mode_in_eager_gives_the_dynamic_output() -> None:
    config = {**TWO_REGIONS, "policy": {"kind": "nonuniform", "interval": 2, "center": 3}}
    expected, hit_map = eager_cached(config)
    model = tiny_transformer()
    with cachekit.cached(model, config, static=True) as handle:
        torch.testing.assert_close(run(model), expected, rtol=0.0, atol=0.0)
        assert handle.stats.hit_map() == hit_map


def test_static_mode_compiled_after_enabling_breaks_once_at_the_clock() -> None:
    """The clock then runs inside the compiled code: one break, and ``fullgraph=True`` says what to do."""
    model = tiny_transformer()
    with cachekit.cached(model, {**TWO_REGIONS, "policy": UNIFORM}, static=True):
        assert max(explain(model)) <= 1
        with pytest.raises(Exception, match=r"clock runs inside the compiled code.*enable cachekit on the compiled"):
            torch.compile(model, backend=BACKEND, fullgraph=True)(torch.randn(1, 8, 4), T[0])


def test_static_mode_refuses_a_policy_that_measures() -> None:
    model = tiny_transformer()
    config = MIXED
    with pytest.raises(ConfigError, match=r"static: true needs .* fixed in advance.*'late' \(similarity\)"):
        cachekit.enable(model, config, static=True)
    assert "forward" not in vars(model)


def test_static_mode_needs_the_number_of_steps() -> None:
    model = tiny_transformer()
    config = {**TWO_REGIONS, "num_steps": None}
    with cachekit.cached(model, config, static=True), pytest.raises(cachekit.PolicyError, match="number of steps"):
        run(model)


# --- real models --------------------------------------------------------------------------------


def tiny_unet() -> nn.Module:
    """A two-block SD-layout UNet, one layer per block (the smallest that compiles quickly)."""
    return build_unet(
        "UNet2DConditionModel", ("DownBlock2D", "CrossAttnDownBlock2D"), layers_per_block=1,
        cross_attention_dim=8, attention_head_dim=4,
    )  # fmt: skip


@pytest.mark.slow
def test_compiled_unet_gives_the_eager_cached_output() -> None:
    """A UNet compiled in place; DeepCache's branch, uniform refreshes, linear forecasts."""
    model = tiny_unet()
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1))

    @torch.no_grad()
    def loop(unet: Callable[..., Any]) -> torch.Tensor:
        x = sample
        for t in T:
            x = x - 0.1 * unet(x, t, encoder_hidden_states=context).sample
        return x

    config = {"policy": {"kind": "uniform", "interval": 2}, "forecast": "linear", "num_steps": len(T)}
    with cachekit.cached(model, config) as handle:
        expected, hit_map = loop(model), handle.stats.hit_map()
    assert not torch.allclose(expected, loop(model), atol=1e-4)
    model.compile(backend=BACKEND)
    with cachekit.cached(model, config) as handle:
        torch.testing.assert_close(loop(model), expected, **CLOSE)
        assert handle.stats.hit_map() == hit_map


FLUX_REGIONS = {
    "regions": ["transformer_blocks[1:2]", "single_transformer_blocks[0:2]"],
    "policy": {"kind": "uniform", "interval": 2},
    "region_policies": {"single_transformer_blocks[0:2]": {"kind": "similarity", "threshold": 0.1}},
    "forecast": "linear",
}
"""Flux's joint and single block ranges: uniform on one, similarity on the other, both forecast."""
STEPS = 6


@pytest.mark.slow
def test_compiled_flux_pipeline_gives_the_eager_cached_output() -> None:
    """The pipeline's transformer compiled in place, both block lists cached."""
    pipe, kwargs = flux_pipeline()
    with cachekit.cached(pipe, FLUX_REGIONS) as handle:
        expected, hit_map = run_pipeline(pipe, kwargs, STEPS), handle.stats.hit_map()
    assert "R.R.R." in hit_map and not torch.allclose(expected, run_pipeline(pipe, kwargs, STEPS), atol=1e-4)
    pipe.transformer.compile(backend=BACKEND)
    with cachekit.cached(pipe, FLUX_REGIONS) as handle:
        torch.testing.assert_close(run_pipeline(pipe, kwargs, STEPS), expected, **CLOSE)
        assert handle.stats.hit_map() == hit_map


@pytest.mark.slow
def test_static_flux_pipeline_compiles_fullgraph() -> None:
    """``pipe.transformer = torch.compile(..., fullgraph=True)``, then static mode: no break, eager output."""
    pipe, kwargs = flux_pipeline()
    config = {**FLUX_REGIONS, "region_policies": {}, "forecast": "none"}
    with cachekit.cached(pipe, config) as handle:
        expected, hit_map = run_pipeline(pipe, kwargs, STEPS), handle.stats.hit_map()
    pipe.transformer = torch.compile(pipe.transformer, backend=BACKEND, fullgraph=True)
    with cachekit.cached(pipe, config, static=True) as handle:
        torch.testing.assert_close(run_pipeline(pipe, kwargs, STEPS), expected, **CLOSE)
        assert handle.stats.hit_map() == hit_map
    assert breaks() == 0 and graphs() <= 3
