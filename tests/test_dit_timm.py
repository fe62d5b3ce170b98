"""The timm-style DiT built on timm's own ``PatchEmbed``, ``Attention`` and ``Mlp``.

Skipped where timm cannot be imported: every timm release imports torchvision, which has no
build beside this project's CPU torch. ``tests/dit_models.py`` carries layers shaped like
timm's (same attribute names), which the other DiT tests use.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("timm")

from timm.models.vision_transformer import Attention, Mlp, PatchEmbed  # noqa: E402

from tests import dit_models  # noqa: E402
from tests.test_dit_conformance import DiTConformance  # noqa: E402

TIMM_LAYERS = SimpleNamespace(PatchEmbed=PatchEmbed, Attention=Attention, Mlp=Mlp)


class TestDiTOnTimmLayers(DiTConformance):
    build = staticmethod(lambda: dit_models.timm_dit(layers=TIMM_LAYERS))
    sample_key = "x"
    timestep_key = "t"
