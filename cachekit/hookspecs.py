"""The pluggy hook specifications of cachekit (project name ``cachekit``).

A plugin is a module or object with functions named like these, decorated with
:data:`cachekit.hookimpl`. Dispatch hooks are ``firstresult``: the first plugin to return
something other than ``None`` answers, and ``None`` means "not mine". First-party plugins
are registered with ``trylast=True`` so that a third-party plugin can override them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from torch import nn

    from cachekit.denoiser import Denoiser
    from cachekit.engine.probes import Probe
    from cachekit.policies.base import Policy
    from cachekit.region import Region
    from cachekit.reuse.forecaster import Forecaster

hookspec = pluggy.HookspecMarker("cachekit")
"""Decorator marking a hook specification (for plugins that add hooks of their own)."""

hookimpl = pluggy.HookimplMarker("cachekit")
"""Decorator marking a plugin's hook implementations."""


@hookspec(firstresult=True)
def cachekit_find_denoisers(pipeline: Any) -> list[Denoiser] | None:
    """Find the denoiser(s) of ``pipeline`` and the scheduler that drives them.

    Return one :class:`~cachekit.denoiser.Denoiser` per network called at every step
    (``pipe.unet``; ``pipe.transformer``; both experts of a two-expert pipeline), or
    ``None`` when ``pipeline`` is not a kind of object this plugin knows.
    """


@hookspec(firstresult=True)
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    """List the cacheable regions of ``model``, the default one first.

    Regions may overlap (a UNet's branches nest); a config selects disjoint ones by name.
    Return ``None`` when ``model`` is not a model this plugin maps.
    """


@hookspec
def cachekit_extra_regions(model: nn.Module) -> list[Region] | None:
    """Regions any plugin adds to a model another plugin maps (attention kinds, for instance).

    Called on every plugin, not only until one answers: the regions of each answer are
    listed after those of :func:`cachekit_regions`, never first (the default stays the
    mapping plugin's), third-party answers before first-party ones. Return ``None`` (or
    an empty list) to add nothing. Names must differ from every other region of the model.
    """


@hookspec(firstresult=True)
def cachekit_region_named(model: nn.Module, name: str) -> Region | None:
    """Build the region ``name`` of ``model`` when no region listed for it has that name.

    For names with parameters a plugin understands, such as the block range ``blocks[2:10]``,
    too many to list. Asked only for a name that neither :func:`cachekit_regions` nor
    :func:`cachekit_extra_regions` lists, and, like them, of any plugin, not only the one
    mapping the model. Return ``None`` when ``name`` is no name of this plugin for ``model``;
    raise :class:`~cachekit.errors.RegionNotFoundError` when it is one but does not fit the
    model (a range past the last block), saying what does.
    """


@hookspec(firstresult=True)
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Return ``(args, kwargs)`` of one small forward call of ``model``, or ``None``.

    Used by ``cachekit inspect`` to count each region's share of the forward FLOPs and by
    the conformance suite to drive the model.
    """


@hookspec(firstresult=True)
def cachekit_step_completed(scheduler: Any) -> bool | None:
    """Called right after ``scheduler.step``: has a whole solver step finished?

    Return ``False`` after the first call of a two-call step (Heun's predictor, PNDM's
    first warm-up call), ``True`` after a step's last call, ``None`` for schedulers this
    plugin does not know.
    """


@hookspec
def cachekit_register_policies(register: Callable[[type[Policy]], Any]) -> None:
    """Register extra policy kinds by calling ``register(PolicyClass)`` for each.

    The class is a :class:`~cachekit.policies.Policy` with a literal ``kind`` field.
    """


@hookspec
def cachekit_register_probes(register: Callable[[str, Probe], None]) -> None:
    """Register similarity probes by calling ``register(name, probe)`` for each."""


@hookspec
def cachekit_register_forecasters(register: Callable[[str, type[Forecaster]], None]) -> None:
    """Register forecasters by calling ``register(name, ForecasterClass)`` for each.

    The class is a :class:`~cachekit.reuse.forecaster.Forecaster`; configs then accept
    ``forecast: <name>``, with every policy and region mode.
    """
