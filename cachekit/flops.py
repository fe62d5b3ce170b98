"""Compute shares counted in FLOPs: what a region costs in one forward, and what a cached run still computes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cachekit.modules import get_submodule
from cachekit.region import Region


def module_flops(
    model: nn.Module, paths: Iterable[str], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, dict[str, int]]:
    """Run one forward under torch's FLOP counter: total FLOPs and FLOPs inside each module path.

    A module's count is everything that ran between its entry and exit (its submodules included).
    """
    counter = FlopCounterMode(display=False)
    inside = dict.fromkeys(paths, 0)
    started: dict[str, int] = {}
    hooks = []
    for path in inside:
        module = get_submodule(model, path)

        def before(*_: Any, path: str = path) -> None:
            started[path] = counter.get_total_flops()

        def after(*_: Any, path: str = path) -> None:
            inside[path] += counter.get_total_flops() - started.pop(path)

        hooks += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        with counter, torch.no_grad():
            model(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return counter.get_total_flops(), inside


class RegionFlops(dict[str, float]):
    """Each region's share of one forward's FLOPs, in [0, 1], by region name.

    :attr:`forward` holds the FLOPs of that whole forward, to weigh several denoisers.
    """

    def __init__(self, shares: dict[str, float], forward: int):
        super().__init__(shares)
        self.forward = forward
        """FLOPs of the whole forward call the shares are of."""


def region_flop_shares(
    model: nn.Module, regions: Iterable[Region], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> RegionFlops:
    """Each region's share of one forward's FLOPs, by region name, with the forward's FLOPs."""
    regions = list(regions)
    paths = {path for region in regions for path in region.modules}
    total, inside = module_flops(model, paths, args, kwargs)
    scale = max(total, 1)
    return RegionFlops({region.name: sum(inside[path] for path in region.modules) / scale for region in regions}, total)


def computed_flop_share(region_shares: dict[str, float], computed_shares: dict[str, float]) -> float:
    """Share of the uncached FLOPs a cached run still computes.

    ``region_shares`` are the regions' shares of a forward; ``computed_shares`` the share of
    calls on which each region refreshed (:attr:`~cachekit.state.RegionStats.computed_share`).
    """
    skipped = sum(share * (1 - computed_shares.get(name, 1.0)) for name, share in region_shares.items())
    return 1 - skipped
