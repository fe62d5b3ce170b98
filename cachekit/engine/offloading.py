"""Offloading hooks already on a model: the one setup found that cachekit cannot serve.

diffusers' group offloading (``enable_group_offload(offload_type="block_level")``) puts
consecutive blocks in groups: the group's *onload leader* (its first block) moves the whole
group's weights to the device before it runs, and its last block moves them back after.
Hooks installed before cachekit sit *under* cachekit's region hooks, so on a reuse step the
hook of a block the region skips does not run. When a group mixes blocks a region skips
with blocks that still run on reuse steps, and its onload leader is one of the skipped, the
blocks that run would find their weights offloaded (a device error on a GPU).

Every other order works: group offloading applied after cachekit wraps cachekit's hooks and
runs on every step, and groups of one block (``num_blocks_per_group=1``) or leaf-level
offloading never mix. Hooks are recognised by the attributes diffusers sets on a module
(``_diffusers_hook``, its ``group_offloading`` hook, the hook's ``group``), so the core never
imports diffusers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from cachekit.errors import UnsupportedCombinationError, listing
from cachekit.modules import get_submodule
from cachekit.region import Region

GROUP_OFFLOADING_HOOK = "group_offloading"
"""The name diffusers registers its group offloading hook under."""


def offload_group(module: nn.Module) -> Any:
    """The diffusers offloading group ``module`` belongs to, or ``None`` when it has none."""
    registry = getattr(module, "_diffusers_hook", None)
    hook = registry.get_hook(GROUP_OFFLOADING_HOOK) if registry is not None else None
    return getattr(hook, "group", None)


def check_offloading(model: nn.Module, regions: Sequence[Region]) -> None:
    """Refuse regions that split a group that diffusers' group offloading loads as one.

    Raises:
        UnsupportedCombinationError: a group's onload leader is skipped on reuse steps while
            another module of the group still runs; the message names both and what to do.
    """
    for region in regions:
        skipped = {id(sub) for path in region.modules for sub in get_submodule(model, path).modules()}
        for path in region.modules:
            group = offload_group(get_submodule(model, path))
            if group is None:
                continue
            leader = group.onload_leader if group.onload_leader is not None else next(iter(group.modules), None)
            running = [module for module in group.modules if id(module) not in skipped]
            if leader is None or id(leader) not in skipped or not running:
                continue
            names = {id(module): name for name, module in model.named_modules()}
            raise UnsupportedCombinationError(
                f"diffusers group offloading was enabled on this {type(model).__name__} before cachekit, and it "
                f"loads {listing(names[id(module)] for module in group.modules)} as one group when "
                f"{names[id(leader)]!r} runs; region {region.name!r} skips {names[id(leader)]!r} on reuse steps "
                f"while {listing(names[id(module)] for module in running)} still runs, so its weights would not "
                "be loaded. Enable cachekit first and group offloading after it, or offload with "
                "num_blocks_per_group=1 or offload_type='leaf_level'"
            )
