"""Which transformers this plugin maps, and where their blocks are.

diffusers' transformers are recognised by class name (diffusers is never imported here).
timm's ``VisionTransformer`` (and any subclass, such as a ViT made a denoiser) is recognised
by class name too: its ``blocks`` (an ``nn.Sequential``) take and return the tokens alone. A
timm-based DiT, as in the DiT paper's code, is recognised by its shape: ``x_embedder`` and
``t_embedder`` modules and a ``blocks`` ``nn.ModuleList`` of one block class whose ``forward``
takes ``(x, c)``.
"""

from __future__ import annotations

import inspect

from torch import nn

from cachekit import isinstance_str
from cachekit.trunk import DUAL_STREAM, SINGLE_STREAM, Family, Trunk, family_of


def hunyuan_skip_pairs(length: int) -> list[tuple[int, int]]:
    """HunyuanDiT's skips: blocks before ``length // 2 - 1`` feed the mirror block of the second half."""
    half = length // 2
    pairs = [(2 * half - 1 - consumer, consumer) for consumer in range(half + 1, length)]
    return [(producer, consumer) for producer, consumer in pairs if producer >= 0]


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
    Family(("VisionTransformer",), ("blocks",), SINGLE_STREAM),
    Family((), ("blocks",), SINGLE_STREAM, recognise=is_timm_style),
)
"""The transformers mapped, by family: diffusers' and timm's ViT by class, then the DiT paper's layout
(``x_embedder``, ``t_embedder``, ``blocks`` of ``forward(x, c)``, ``final_layer``) by shape."""


def trunk_of(model: nn.Module) -> Trunk | None:
    """The trunk of ``model``, or ``None`` when this plugin does not map it."""
    family = family_of(model, FAMILIES)
    return None if family is None else family.trunk(model)
