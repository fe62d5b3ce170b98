"""The adapter conformance suite on every UNet family the plugin maps, at branch 0 and deeper."""

from __future__ import annotations

from typing import Any

from cachekit_unet.inputs import example_inputs
from torch import nn

from cachekit.testing import AdapterConformance
from tests import unet_models
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)


class TestUNet2DModel(AdapterConformance):
    """DDPM/DDIM's ``UNet2DModel``; every other UNet family reuses these inputs."""

    build = staticmethod(unet_models.tiny_unet2d)

    def make_model(self) -> nn.Module:
        return self.build()

    def make_inputs(self, model: nn.Module, batch_size: int, seed: int) -> dict[str, Any]:
        found = example_inputs(model, batch_size, seed)
        assert found is not None
        return found[1]


class TestStableDiffusionUNet(TestUNet2DModel):
    build = staticmethod(unet_models.tiny_sd_unet)


class TestStableDiffusionUNetDeepBranch(TestUNet2DModel):
    """A branch that starts inside a block (layer granularity) and ends inside its mirror."""

    build = staticmethod(unet_models.tiny_sd_unet)
    config = {"regions": ["branch4"]}


class TestSDXLUNet(TestUNet2DModel):
    build = staticmethod(unet_models.tiny_sdxl_unet)


class TestAudioLDMUNet(TestUNet2DModel):
    build = staticmethod(unet_models.tiny_audioldm_unet)


class TestAudioLDM2UNet(TestUNet2DModel):
    build = staticmethod(unet_models.tiny_audioldm2_unet)


class TestSpatioTemporalUNet(TestUNet2DModel):
    build = staticmethod(lambda: unet_models.tiny_svd_unet(in_channels=4))


class TestUNet3D(TestUNet2DModel):
    build = staticmethod(unet_models.tiny_unet3d)


class TestMotionUNet(TestUNet2DModel):
    build = staticmethod(unet_models.tiny_motion_unet)
