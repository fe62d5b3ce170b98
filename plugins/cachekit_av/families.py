"""The video and audio models this plugin knows: transformers' block lists and attention
kinds, and which UNets are video or audio ones.

Each transformer is a DiT laid out like the ones :mod:`cachekit_dit` maps (one or two block
lists run in turn), described with :mod:`cachekit.trunk`. What is added here is which
sub-layer of a block is which kind of attention (see :mod:`cachekit_av.attention`).

Classes are recognised by name; diffusers is never imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cachekit import isinstance_str, receives_context
from cachekit.trunk import DUAL_STREAM_IN_ORDER, SINGLE_STREAM, Family, Trunk

JOINT = {"attn1": "spatial_attn"}
"""A block whose only attention runs over video and text tokens together (no cross attention)."""

SELF_AND_CROSS = {"attn1": "spatial_attn", "attn2": "cross_attn"}
"""A block with a self-attention over every token of the sample, then a cross attention to the text."""


@dataclass(frozen=True)
class AVFamily:
    """Transformers sharing a block layout, and the attention kind of each block sub-layer.

    Attributes:
        family: the block layout.
        attention: sub-layer name (a child of every block) to attention kind.
    """

    family: Family
    attention: dict[str, str]


AV_FAMILIES: tuple[AVFamily, ...] = (
    AVFamily(
        Family(
            ("CogVideoXTransformer3DModel", "MochiTransformer3DModel"), ("transformer_blocks",), DUAL_STREAM_IN_ORDER
        ),
        JOINT,
    ),
    AVFamily(
        Family(
            ("HunyuanVideoTransformer3DModel",),
            ("transformer_blocks", "single_transformer_blocks"),
            DUAL_STREAM_IN_ORDER,
        ),
        {"attn": "spatial_attn"},
    ),
    AVFamily(Family(("WanTransformer3DModel",), ("blocks",), SINGLE_STREAM), SELF_AND_CROSS),
    AVFamily(
        Family(("LTXVideoTransformer3DModel", "StableAudioDiTModel"), ("transformer_blocks",), SINGLE_STREAM),
        SELF_AND_CROSS,
    ),
)
"""The video and audio transformers mapped, by family."""


def av_trunk_of(model: nn.Module) -> tuple[AVFamily, Trunk] | None:
    """The family and trunk of ``model``, or ``None`` when this plugin maps no transformer there."""
    av_family = next((av_family for av_family in AV_FAMILIES if av_family.family.matches(model)), None)
    trunk = None if av_family is None else av_family.family.trunk(model)
    return None if trunk is None else (av_family, trunk)


AV_UNETS = (
    "UNetSpatioTemporalConditionModel",
    "UNet3DConditionModel",
    "UNetMotionModel",
    "AudioLDM2UNet2DConditionModel",
)
"""Video and audio UNets by class; AudioLDM's and MusicLDM's are told by :func:`cachekit.receives_context`."""


def is_av_unet(model: nn.Module) -> bool:
    """True for the video and audio UNets, whose listed regions gain the attention kinds."""
    if any(isinstance_str(model, name) for name in AV_UNETS):
        return True
    return isinstance_str(model, "UNet2DConditionModel") and not receives_context(model)
