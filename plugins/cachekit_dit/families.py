"""Which transformers this plugin maps, and where their blocks are.

diffusers' transformers are recognised by class name (diffusers is never imported here).
A timm-based DiT, as in the DiT paper's code, is recognised by its shape: ``x_embedder`` and
``t_embedder`` modules and a ``blocks`` ``nn.ModuleList`` of one block class whose ``forward``
takes ``(x, c)``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from cachekit.modules import isinstance_str
from cachekit.region import RegionIO, TensorIO, TupleIO
from cachekit_dit.trunk import BlockList, SkipPairs, Trunk, hunyuan_skip_pairs

SINGLE_STREAM = TensorIO(names=("hidden_states", "x"))
"""Blocks taking and returning the image tokens alone."""

DUAL_STREAM = TupleIO(inputs=(("hidden_states", 0), ("encoder_hidden_states", 1)), output_order=(1, 0))
"""Blocks taking ``hidden_states, encoder_hidden_states`` and returning ``(encoder_hidden_states,
hidden_states)``: SD3's joint blocks and both kinds of Flux block."""


@dataclass(frozen=True)
class Family:
    """Transformers that share a block layout.

    Attributes:
        classes: class names, matched along the model's MRO.
        lists: the ``nn.ModuleList`` attributes holding the blocks, in execution order.
        io: how every block of those lists takes and returns its streams.
        skip_pairs: long skip connections between blocks, if any.
    """

    classes: tuple[str, ...]
    lists: tuple[str, ...]
    io: RegionIO
    skip_pairs: SkipPairs | None = None

    def trunk(self, model: nn.Module) -> Trunk:
        """The trunk of ``model``, one of this family."""
        lists = tuple(BlockList(name, len(getattr(model, name)), self.io) for name in self.lists)
        return Trunk(
            type(model).__name__, tuple(block_list for block_list in lists if block_list.length), self.skip_pairs
        )


FAMILIES: tuple[Family, ...] = (
    Family(
        ("DiTTransformer2DModel", "PixArtTransformer2DModel", "SanaTransformer2DModel"),
        ("transformer_blocks",),
        SINGLE_STREAM,
    ),
    Family(("SD3Transformer2DModel",), ("transformer_blocks",), DUAL_STREAM),
    Family(
        (
            "FluxTransformer2DModel",
            "BriaTransformer2DModel",
            "LongCatImageTransformer2DModel",
            "OvisImageTransformer2DModel",
        ),
        ("transformer_blocks", "single_transformer_blocks"),
        DUAL_STREAM,
    ),
    Family(("HunyuanDiT2DModel",), ("blocks",), SINGLE_STREAM, hunyuan_skip_pairs),
)
"""The diffusers transformers mapped, by family."""

TIMM_STYLE = Family(("(a timm-style DiT)",), ("blocks",), SINGLE_STREAM)
"""The DiT paper's layout: ``x_embedder``, ``t_embedder``, ``blocks`` of ``forward(x, c)``, ``final_layer``."""


def family_of(model: nn.Module) -> Family | None:
    """The family ``model`` belongs to, or ``None`` when this plugin does not map it."""
    for family in FAMILIES:
        if any(isinstance_str(model, name) for name in family.classes):
            return family
    return TIMM_STYLE if is_timm_style(model) else None


def trunk_of(model: nn.Module) -> Trunk | None:
    """The trunk of ``model``, or ``None`` when this plugin does not map it."""
    family = family_of(model)
    if family is None:
        return None
    trunk = family.trunk(model)
    return trunk if trunk.lists else None


def is_timm_style(model: nn.Module) -> bool:
    """True for a model with ``x_embedder`` and ``t_embedder`` modules whose ``blocks`` is a
    ``ModuleList`` of one class with ``forward(x, c, ...)``.

    diffusers models (``ModelMixin``) are left to their own plugins, whatever their blocks.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks) or isinstance_str(model, "ModelMixin"):
        return False
    if not all(isinstance(getattr(model, name, None), nn.Module) for name in ("x_embedder", "t_embedder")):
        return False
    if len({type(block) for block in blocks}) != 1:
        return False
    parameters = [
        parameter
        for parameter in inspect.signature(blocks[0].forward).parameters.values()
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(parameters) >= 2 and parameters[0].name in ("x", "hidden_states")
