"""The ``text_kv`` region: the key and value projections of every cross-attention module, reused exactly.

In a cross-attention module the queries come from the latent, which changes at every step,
but the keys and values come from the context (the text embeddings; SVD's and Wan I2V's
image embedding), which is the same at every step of one generation and context. ``text_kv``
is a keyed region (``mode="keyed"``, see :mod:`cachekit.engine.keyed`) over those
projections: they run at the first step of each generation and CFG context, and at every
later step each returns its stored output as long as its input is exactly the stored one;
a new prompt or changed encoder states make them run again. The output is the uncached one,
bit for bit, whatever the policy and the other regions selected beside it.

Plugins offer it for the models they map, listed after their other regions, from the paths
of the cross-attention modules they find (:func:`text_kv_region`). Joint attention (Flux,
SD3, CogVideoX, HunyuanVideo, Mochi) has no such module: its text tokens pass through every
block beside the latent and change at every step, so no key or value repeats. Their
plugins refuse the name with :func:`joint_attention_refusal`.

diffusers' conventions are read by attribute name (diffusers is never imported): an attention
module projects its context with ``to_k`` and ``to_v`` (fused: ``to_kv``) and an added context
(Wan I2V's image tokens, DeepFloyd IF's text) with ``add_k_proj`` and ``add_v_proj`` (fused:
``to_added_kv``); ``is_cross_attention`` says whether it attends to a context at all.
"""

from __future__ import annotations

from torch import nn

from cachekit.errors import RegionNotFoundError
from cachekit.modules import isinstance_str
from cachekit.region import Region

TEXT_KV = "text_kv"
"""The region's name in configs and stats."""

KV_PROJECTIONS = ("to_k", "to_v", "to_kv")
"""Children of an attention module projecting its context into keys and values."""

ADDED_KV_PROJECTIONS = ("add_k_proj", "add_v_proj", "to_added_kv")
"""Children projecting an added context (Wan I2V's image tokens, DeepFloyd IF's text)."""


def projects_latent(attention: nn.Module) -> bool:
    """True when ``to_k`` and ``to_v`` project the latent rather than the context: diffusers'
    ``Attention`` with added K/V projections (``AttnAddedKVProcessor``: DeepFloyd IF, UnCLIP),
    unless it is ``only_cross_attention``."""
    added = getattr(attention, "added_kv_proj_dim", None) is not None
    return added and isinstance_str(attention, "Attention") and not getattr(attention, "only_cross_attention", False)


def context_projections(attention: nn.Module) -> tuple[str, ...]:
    """Names of the children of a cross-attention module that project only its context."""
    names = ADDED_KV_PROJECTIONS if projects_latent(attention) else KV_PROJECTIONS + ADDED_KV_PROJECTIONS
    return tuple(name for name in names if isinstance(getattr(attention, name, None), nn.Module))


def receives_context(model: nn.Module) -> bool:
    """False for AudioLDM's and MusicLDM's UNets: their pipelines pass the text embedding as
    class labels and no cross-attention context, so ``attn2`` attends to the latent itself.
    Their config gives one cross-attention width per block, equal to the block widths."""
    config = getattr(model, "config", None)
    widths = getattr(config, "cross_attention_dim", None)
    return not (isinstance(widths, (list, tuple)) and list(widths) == list(config.block_out_channels))


def cross_attention_paths(model: nn.Module) -> list[str]:
    """Paths of the modules of ``model`` whose ``is_cross_attention`` is true, in registration order
    (diffusers' ``Attention`` with a ``cross_attention_dim``, ``WanAttention``'s cross attention);
    none when the model is given no context (:func:`receives_context`)."""
    if not receives_context(model):
        return []
    return [path for path, module in model.named_modules() if getattr(module, "is_cross_attention", False) is True]


def text_kv_region(model: nn.Module, attention_paths: list[str]) -> Region | None:
    """The keyed region over the context projections of the attention modules at ``attention_paths``;
    ``None`` when they have none."""
    modules = tuple(
        f"{path}.{name}" for path in attention_paths for name in context_projections(model.get_submodule(path))
    )
    if not modules:
        return None
    return Region(
        name=TEXT_KV,
        modules=modules,
        mode="keyed",
        description=(
            f"keys and values of {len(attention_paths)} cross-attention modules from the context: "
            "computed once per generation and context, exact"
        ),
    )


def joint_attention_refusal(model: nn.Module) -> RegionNotFoundError:
    """The error for ``text_kv`` named on a model whose attention is joint (no cross attention)."""
    return RegionNotFoundError(
        f"region {TEXT_KV!r} is not offered for {type(model).__name__}: its attention is joint, the text "
        "tokens pass through every block beside the latent and change at every step, so no key or value "
        "repeats between steps and none can be reused exactly; cache a block range instead (such as "
        "'blocks[1:]')"
    )
