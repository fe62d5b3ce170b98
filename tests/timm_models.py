"""Tiny seeded models built from timm itself (import only where timm imports).

* :func:`timm_layers_dit`: the DiT paper's model (``tests.dit_models.DiT``, a ``blocks``
  ``ModuleList`` of adaLN-Zero blocks) on timm's own ``PatchEmbed``, ``Attention`` and ``Mlp``.
* :func:`vit_denoiser`: timm's ``VisionTransformer`` made a denoiser, its ``blocks`` unchanged.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from timm.models.vision_transformer import Attention, Mlp, PatchEmbed, VisionTransformer
from torch import nn

from tests import dit_models

TIMM_LAYERS = SimpleNamespace(PatchEmbed=PatchEmbed, Attention=Attention, Mlp=Mlp)


def timm_layers_dit(depth: int = 4) -> dit_models.DiT:
    """A tiny seeded DiT in eval mode whose blocks hold timm's ``Attention`` and ``Mlp``."""
    return dit_models.timm_dit(depth=depth, layers=TIMM_LAYERS)


class ViTDenoiser(VisionTransformer):
    """timm's ``VisionTransformer`` as a denoiser, ``forward(x, t)``: the timestep joins the patch
    tokens as one more token (U-ViT's way), timm's blocks and final norm run as in
    ``forward_features``, and a linear layer maps each patch token back to its pixels."""

    def __init__(self, img_size: int = 8, patch_size: int = 2, in_chans: int = 4, depth: int = 4):
        width = dit_models.WIDTH
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="",
            embed_dim=width, depth=depth, num_heads=dit_models.HEADS, class_token=False,
        )  # fmt: skip
        self.t_embedder = dit_models.TimestepEmbedder(width)
        self.unpatch = nn.Linear(width, patch_size * patch_size * in_chans)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tokens = self._pos_embed(self.patch_embed(x))
        tokens = torch.cat([self.t_embedder(t.expand(x.shape[0]))[:, None], tokens], dim=1)
        patches = self.unpatch(self.norm(self.blocks(tokens))[:, 1:])
        grid, patch = self.patch_embed.grid_size, self.patch_embed.patch_size
        patches = patches.reshape(x.shape[0], *grid, *patch, x.shape[1])
        return torch.einsum("nhwpqc->nchpwq", patches).reshape(x.shape)


def vit_denoiser(depth: int = 4, seed: int = 0) -> ViTDenoiser:
    """A tiny seeded :class:`ViTDenoiser` in eval mode (8x8 images of 4 channels, 16 patches)."""
    torch.manual_seed(seed)
    return ViTDenoiser(depth=depth).eval()
