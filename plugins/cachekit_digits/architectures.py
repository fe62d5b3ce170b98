"""Configurations of the shipped digits diffusion models (diffusers classes, built by name)."""

from __future__ import annotations

from typing import Any

from cachekit_digits.data import IMAGE_SIZE, NUM_CLASSES

UNET_CONFIG: dict[str, Any] = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 1,
    "out_channels": 1,
    "layers_per_block": 1,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 16,
}
"""``UNet2DModel``: three resolution levels (16, 8, 4), attention at the lowest."""

DIT_CONFIG: dict[str, Any] = {
    "sample_size": IMAGE_SIZE,
    "patch_size": 2,
    "in_channels": 1,
    "out_channels": 1,
    "num_layers": 6,
    "num_attention_heads": 4,
    "attention_head_dim": 24,
    "norm_type": "ada_norm_zero",
    "num_embeds_ada_norm": NUM_CLASSES + 1,
}
"""``DiTTransformer2DModel``: 64 tokens of 2x2 patches, 6 blocks, class labels 0-9 plus a null class 10."""

NULL_CLASS = NUM_CLASSES
"""Label of the unconditional (classifier-free guidance) branch of the DiT."""

SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    "clip_sample": True,
}
"""``DDPMScheduler`` used in training; DDIM sampling reads the same config."""


def build_unet() -> Any:
    """A freshly initialised ``UNet2DModel`` of :data:`UNET_CONFIG`."""
    from diffusers import UNet2DModel

    return UNet2DModel(**UNET_CONFIG)


def build_dit() -> Any:
    """A freshly initialised ``DiTTransformer2DModel`` of :data:`DIT_CONFIG`."""
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(**DIT_CONFIG)
