"""Tiny seeded DiT transformers for the DiT plugin's tests.

Each diffusers transformer is built from a tiny config (2 heads of 8, a few blocks). The
timm-style DiT follows the DiT paper's code (``x_embedder``, ``t_embedder``, ``y_embedder``,
``blocks`` of adaLN-Zero blocks, ``final_layer``) on layers shaped exactly like timm's
``PatchEmbed``, ``Attention`` and ``Mlp`` (same attribute names). timm itself cannot be
imported here (every release imports torchvision); :func:`timm_dit` takes timm's own layers
when it is installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

HEADS, HEAD_DIM = 2, 8
WIDTH = HEADS * HEAD_DIM


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """``build()`` under ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return build().eval()


# --- diffusers transformers ----------------------------------------------------------------


def diffusers_model(class_name: str, **config: Any) -> nn.Module:
    """A seeded instance of diffusers' ``class_name`` built from ``config``, in eval mode."""
    import diffusers

    return seeded(lambda: getattr(diffusers, class_name)(**config))


ATTENTION = {"num_attention_heads": HEADS, "attention_head_dim": HEAD_DIM}
FLUX_LAYOUT = {**ATTENTION, "patch_size": 1, "in_channels": 8, "joint_attention_dim": 24, "axes_dims_rope": (2, 2, 4)}
"""What Flux and its kin (Bria, LongCat-Image, Ovis-Image) share in the tests."""


def tiny_dit(num_layers: int = 4) -> nn.Module:
    return diffusers_model(
        "DiTTransformer2DModel", **ATTENTION, in_channels=4, out_channels=8, num_layers=num_layers,
        sample_size=8, patch_size=2, num_embeds_ada_norm=1000,
    )  # fmt: skip


def tiny_pixart(num_layers: int = 4) -> nn.Module:
    return diffusers_model(
        "PixArtTransformer2DModel", **ATTENTION, in_channels=4, out_channels=8, num_layers=num_layers,
        cross_attention_dim=WIDTH, caption_channels=24, sample_size=8, patch_size=2,
    )  # fmt: skip


def tiny_sd3(num_layers: int = 4) -> nn.Module:
    return diffusers_model(
        "SD3Transformer2DModel", **ATTENTION, sample_size=8, patch_size=2, in_channels=4, out_channels=4,
        num_layers=num_layers, joint_attention_dim=24, caption_projection_dim=WIDTH, pooled_projection_dim=12,
        pos_embed_max_size=16,
    )  # fmt: skip


def tiny_flux(num_layers: int = 2, num_single_layers: int = 2, guidance_embeds: bool = False) -> nn.Module:
    return diffusers_model(
        "FluxTransformer2DModel", **FLUX_LAYOUT, num_layers=num_layers, num_single_layers=num_single_layers,
        pooled_projection_dim=12, guidance_embeds=guidance_embeds,
    )  # fmt: skip


def tiny_flux_kin(class_name: str) -> nn.Module:
    """A tiny Bria, LongCat-Image or Ovis-Image transformer: Flux's two block lists and signatures."""
    extra = {"out_channels": 8} if class_name == "OvisImageTransformer2DModel" else {}  # Ovis defaults to 64
    return diffusers_model(class_name, **FLUX_LAYOUT, **extra, num_layers=2, num_single_layers=2)


def tiny_sana(num_layers: int = 4) -> nn.Module:
    return diffusers_model(
        "SanaTransformer2DModel", **ATTENTION, in_channels=4, out_channels=4, num_layers=num_layers,
        num_cross_attention_heads=HEADS, cross_attention_head_dim=HEAD_DIM, cross_attention_dim=WIDTH,
        caption_channels=24, sample_size=8, patch_size=1,
    )  # fmt: skip


def tiny_hunyuan(num_layers: int = 6) -> nn.Module:
    return diffusers_model(
        "HunyuanDiT2DModel", **ATTENTION, in_channels=4, patch_size=2, sample_size=8, hidden_size=WIDTH,
        num_layers=num_layers, cross_attention_dim=WIDTH, cross_attention_dim_t5=24, pooled_projection_dim=12,
        text_len=4, text_len_t5=6,
    )  # fmt: skip


# --- layers shaped like timm's ---------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Image to patch tokens, with timm's attribute names (``proj``, ``img_size``, ``num_patches``)."""

    def __init__(
        self, img_size: int = 8, patch_size: int = 2, in_chans: int = 4, embed_dim: int = WIDTH, bias: bool = True
    ):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Attention(nn.Module):
    """Multi-head self-attention with timm's ``qkv``/``proj`` layout (explicit softmax path)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, **_: Any):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = self.attn_drop((q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Two linear layers around an activation, with timm's ``fc1``/``act``/``fc2`` names."""

    def __init__(
        self, in_features: int, hidden_features: int, act_layer: Callable[[], nn.Module] = nn.GELU, drop: float = 0.0
    ):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


LOCAL_LAYERS = SimpleNamespace(PatchEmbed=PatchEmbed, Attention=Attention, Mlp=Mlp)


# --- a DiT as in the DiT paper's code ------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int, frequency_embedding_size: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)
        self.num_classes = num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)


class DiTBlock(nn.Module):
    """adaLN-Zero block: ``forward(x, c)``."""

    def __init__(self, hidden_size: int, num_heads: int, layers: SimpleNamespace, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = layers.Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = layers.Mlp(
            in_features=hidden_size,
            hidden_features=int(hidden_size * mlp_ratio),
            act_layer=lambda: nn.GELU(approximate="tanh"),
            drop=0,
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """The DiT paper's model: patchify, blocks conditioned on ``t`` and ``y``, unpatchify.

    ``forward(x, t, y)``; ``forward_with_cfg`` runs the conditional and unconditional halves
    of a batch in one call, as the paper's sampling code does.
    """

    def __init__(
        self,
        input_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = WIDTH,
        depth: int = 4,
        num_heads: int = HEADS,
        num_classes: int = 10,
        layers: SimpleNamespace = LOCAL_LAYERS,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.patch_size = in_channels, 2 * in_channels, patch_size
        self.x_embedder = layers.PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.pos_embed = nn.Parameter(
            0.02 * torch.randn(1, self.x_embedder.num_patches, hidden_size), requires_grad=False
        )
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, layers) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, c = self.patch_size, self.out_channels
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float) -> torch.Tensor:
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half]), t, y)
        eps, rest = out[:, : self.in_channels], out[:, self.in_channels :]
        cond, uncond = eps.chunk(2)
        guided = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([guided, guided]), rest], dim=1)


def timm_dit(depth: int = 4, layers: SimpleNamespace = LOCAL_LAYERS, seed: int = 0) -> DiT:
    """A tiny seeded DiT in eval mode; ``layers`` gives ``PatchEmbed``, ``Attention`` and ``Mlp``."""
    torch.manual_seed(seed)
    return DiT(depth=depth, layers=layers).eval()


# --- pipelines (text encoders bypassed with prompt embeddings) ---------------------------------


def tiny_vae() -> nn.Module:
    """A two-level ``AutoencoderKL`` (latents at half the image size, 4 channels)."""
    return diffusers_model(
        "AutoencoderKL", block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )  # fmt: skip


def tiny_dc_vae(levels: int = 3) -> nn.Module:
    """A three-level ``AutoencoderDC`` (Sana's; latents at a quarter of the image size)."""
    return diffusers_model(
        "AutoencoderDC", in_channels=3, latent_channels=4, encoder_block_out_channels=(8,) * levels,
        decoder_block_out_channels=(8,) * levels, encoder_layers_per_block=(1,) * levels,
        decoder_layers_per_block=(1,) * levels, encoder_block_types="ResBlock", decoder_block_types="ResBlock",
        encoder_qkv_multiscales=((),) * levels, decoder_qkv_multiscales=((),) * levels,
        decoder_norm_types="rms_norm", decoder_act_fns="silu",
    )  # fmt: skip


def _text(seed: int, tokens: int, width: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"embeds": torch.randn(1, tokens, width, generator=generator), "mask": torch.ones(1, tokens)}


def _masked_prompts(transformer: nn.Module, tokens: int) -> dict[str, Any]:
    """PixArt's and Sana's prompt inputs: embeddings and masks, a zero negative prompt."""
    width = transformer.config.caption_channels
    positive, negative = _text(1, tokens, width), _text(2, tokens, width)
    return {
        "negative_prompt": None,
        "prompt_embeds": positive["embeds"],
        "prompt_attention_mask": positive["mask"],
        "negative_prompt_embeds": torch.zeros_like(negative["embeds"]),
        "negative_prompt_attention_mask": negative["mask"],
        "use_resolution_binning": False,
    }


def _pooled_prompts(transformer: nn.Module, tokens: int, negative: bool) -> dict[str, Any]:
    """SD3's and Flux's prompt inputs: token and pooled embeddings (and a negative pair)."""
    generator = torch.Generator().manual_seed(1)
    width, pooled = transformer.config.joint_attention_dim, transformer.config.pooled_projection_dim
    kwargs = {
        "prompt_embeds": torch.randn(1, tokens, width, generator=generator),
        "pooled_prompt_embeds": torch.randn(1, pooled, generator=generator),
    }
    if negative:
        kwargs["negative_prompt_embeds"] = torch.randn(1, tokens, width, generator=generator)
        kwargs["negative_pooled_prompt_embeds"] = torch.randn(1, pooled, generator=generator)
    return kwargs


def _no_text_encoders(*suffixes: str) -> dict[str, None]:
    return {f"{kind}{suffix}": None for kind in ("text_encoder", "tokenizer") for suffix in suffixes}


Case = tuple[Any, dict[str, Any]]
"""A pipeline and the keyword arguments of one call (latents out, prompt embeddings in)."""


def dit_pipeline() -> Case:
    """DiT with batched CFG over class labels."""
    from diffusers import DiTPipeline, DPMSolverMultistepScheduler

    pipe = DiTPipeline(transformer=tiny_dit(), vae=tiny_vae(), scheduler=DPMSolverMultistepScheduler())
    return pipe, {"class_labels": [3], "guidance_scale": 4.0, "output_type": "np"}


def pixart_pipeline(transformer: nn.Module | None = None, pixels: int = 16, tokens: int = 8) -> Case:
    """PixArt-α with batched CFG, ``pixels`` wide."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline

    transformer = transformer or tiny_pixart()
    pipe = PixArtAlphaPipeline(
        **_no_text_encoders(""), vae=tiny_vae(), transformer=transformer, scheduler=DPMSolverMultistepScheduler()
    )
    prompts = _masked_prompts(transformer, tokens)
    return pipe, {**prompts, "guidance_scale": 4.5, "height": pixels, "width": pixels, "output_type": "latent"}


def sd3_pipeline() -> Case:
    """Stable Diffusion 3 with batched CFG."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    transformer = tiny_sd3()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny_vae(),
        **_no_text_encoders("", "_2", "_3"),
    )  # fmt: skip
    prompts = _pooled_prompts(transformer, tokens=8, negative=True)
    return pipe, {**prompts, "guidance_scale": 5.0, "height": 16, "width": 16, "output_type": "latent"}


def flux_pipeline(
    true_cfg: bool = False, transformer: nn.Module | None = None, pixels: int = 16, tokens: int = 8
) -> Case:
    """Flux with embedded guidance (one call per step), or with true CFG (two calls per step)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    transformer = transformer or tiny_flux(guidance_embeds=True)
    pipe = FluxPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny_vae(),
        **_no_text_encoders("", "_2"),
    )  # fmt: skip
    prompts = _pooled_prompts(transformer, tokens, negative=true_cfg)
    kwargs = {**prompts, "guidance_scale": 3.5, "height": pixels, "width": pixels, "output_type": "latent"}
    if true_cfg:
        kwargs["true_cfg_scale"] = 4.0
    return pipe, kwargs


def sana_pipeline() -> Case:
    """Sana with batched CFG."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline

    transformer = tiny_sana()
    pipe = SanaPipeline(
        **_no_text_encoders(""), vae=tiny_dc_vae(), transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler()
    )
    prompts = _masked_prompts(transformer, tokens=8)
    return pipe, {**prompts, "guidance_scale": 4.5, "height": 32, "width": 32, "output_type": "latent"}


PIPELINES: dict[str, Callable[[], Case]] = {
    "dit": dit_pipeline,
    "pixart": pixart_pipeline,
    "sd3": sd3_pipeline,
    "flux": flux_pipeline,
    "flux-true-cfg": lambda: flux_pipeline(true_cfg=True),
    "sana": sana_pipeline,
}
"""Each pipeline case: a builder returning the pipeline and the keyword arguments of a call."""


def run_pipeline(pipe: Any, kwargs: dict[str, Any], steps: int, seed: int = 0) -> torch.Tensor:
    """One seeded generation of ``steps`` steps; its final latents.

    A pipeline that always decodes (DiT) has its latents read at the VAE decoder's entry.
    """
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed)
    if kwargs.get("output_type") == "latent":
        return pipe(**kwargs, num_inference_steps=steps, generator=generator).images
    decoded: list[torch.Tensor] = []
    hook = pipe.vae.post_quant_conv.register_forward_pre_hook(lambda module, args: decoded.append(args[0]))
    try:
        pipe(**kwargs, num_inference_steps=steps, generator=generator)
    finally:
        hook.remove()
    return decoded[-1]


def smooth_time(model: nn.Module, keep: float = 1 / 3) -> nn.Module:
    """Make adjacent denoising steps differ as little as in a trained model: drop the fast
    frequencies of every sinusoidal timestep embedding.

    Random weights mix every frequency of the embedding, and the fast ones decorrelate two
    steps 100 timesteps apart completely, which a trained model does not do. The first
    linear layer of each ``TimestepEmbedding`` / ``TimestepEmbedder`` keeps the columns of
    the slowest ``keep`` share of frequencies and zeroes the rest (both halves, sine and cosine).
    """
    for module in model.modules():
        if type(module).__name__ not in ("TimestepEmbedding", "TimestepEmbedder"):
            continue
        linear = next(child for child in module.modules() if isinstance(child, nn.Linear))
        half = linear.in_features // 2
        fast = round(half * (1 - keep))
        with torch.no_grad():
            linear.weight[:, :fast] = 0
            linear.weight[:, half : half + fast] = 0
    return model


def smooth_flux() -> tuple[nn.Module, dict[str, Any]]:
    """A tiny Flux whose time conditioning is smoothed (adjacent steps drift 0.13 to 0.21), and
    the keyword arguments of one call, from the DiT plugin's example inputs."""
    from cachekit_dit.inputs import EXAMPLES

    model = smooth_time(tiny_flux())
    kwargs = EXAMPLES.kwargs(model)
    assert kwargs is not None
    return model, kwargs


@torch.no_grad()
def denoise(
    model: nn.Module,
    kwargs: dict[str, Any],
    steps: int = 6,
    sample_key: str = "hidden_states",
    timestep_key: str = "timestep",
) -> torch.Tensor:
    """A bare denoising loop: timesteps 1000 down to 0 (one per sample), sample updated from the output."""
    sample = kwargs[sample_key]
    for timestep in torch.linspace(1000, 0, steps):
        output = model(**{**kwargs, sample_key: sample, timestep_key: timestep.expand(sample.shape[0])})
        output = output if isinstance(output, torch.Tensor) else output[0]
        sample = sample - 0.1 * output[:, : sample.shape[1]]
    return sample
