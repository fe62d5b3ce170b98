"""The adapter conformance suite on every audio and video denoiser the plugin maps, tiny and seeded:
the transformers at their default block range and at their attention kinds, the video and
audio UNets at their attention kinds (their DeepCache branches are the UNet plugin's suite)."""

from __future__ import annotations

from typing import Any

from cachekit_av.inputs import EXAMPLES
from torch import nn

from tests import av_models, unet_models
from tests.test_dit_conformance import DiTConformance
from tests.test_unet_conformance import TestUNet2DModel as UNetConformance
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)


class AVTransformerConformance(DiTConformance):
    """A video or audio transformer driven with the plugin's example inputs."""

    def make_inputs(self, model: nn.Module, batch_size: int, seed: int) -> dict[str, Any]:
        kwargs = EXAMPLES.kwargs(model, batch_size, seed)
        assert kwargs is not None
        return kwargs


class TestCogVideoX(AVTransformerConformance):
    build = staticmethod(av_models.tiny_cogvideox)


class TestCogVideoXAttention(TestCogVideoX):
    config = {"regions": ["spatial_attn"]}


class TestWan(AVTransformerConformance):
    build = staticmethod(av_models.tiny_wan)


class TestWanAttentionKinds(TestWan):
    config = {"regions": ["spatial_attn", "cross_attn"]}


class TestLTX(AVTransformerConformance):
    build = staticmethod(av_models.tiny_ltx)


class TestLTXAttentionKinds(TestLTX):
    config = {"regions": ["spatial_attn", "cross_attn"]}


class TestHunyuanVideo(AVTransformerConformance):
    """The default range runs from the dual-stream block through the single-stream one."""

    build = staticmethod(av_models.tiny_hunyuan_video)


class TestHunyuanVideoAttention(TestHunyuanVideo):
    config = {"regions": ["spatial_attn"]}


@av_models.MOCHI_AUTOCAST
class TestMochi(AVTransformerConformance):
    build = staticmethod(av_models.tiny_mochi)


@av_models.MOCHI_AUTOCAST
class TestMochiAttention(TestMochi):
    config = {"regions": ["spatial_attn"]}


class TestStableAudioDiT(AVTransformerConformance):
    build = staticmethod(av_models.tiny_stable_audio)


class TestStableAudioDiTAttentionKinds(TestStableAudioDiT):
    config = {"regions": ["spatial_attn", "cross_attn"]}


class TestSVDAttentionKinds(UNetConformance):
    build = staticmethod(lambda: unet_models.tiny_svd_unet(in_channels=4))
    config = {"regions": ["spatial_attn", "temporal_attn", "cross_attn"]}


class TestUNet3DAttentionKinds(UNetConformance):
    build = staticmethod(unet_models.tiny_unet3d)
    config = {"regions": ["spatial_attn", "temporal_attn", "cross_attn"]}


class TestMotionUNetAttentionKinds(UNetConformance):
    build = staticmethod(unet_models.tiny_motion_unet)
    config = {"regions": ["spatial_attn", "temporal_attn", "cross_attn"]}


class TestAudioLDMUNetAttention(UNetConformance):
    """AudioLDM's (and MusicLDM's) UNet: both attentions of a block attend to the latent."""

    build = staticmethod(unet_models.tiny_audioldm_unet)
    config = {"regions": ["spatial_attn"]}


class TestAudioLDM2UNetAttentionKinds(UNetConformance):
    build = staticmethod(unet_models.tiny_audioldm2_unet)
    config = {"regions": ["spatial_attn", "cross_attn"]}
