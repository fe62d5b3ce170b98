"""Error messages list choices in natural order: ``branch2`` before ``branch10``."""

from __future__ import annotations

import pytest

import cachekit
from cachekit.errors import RegionNotFoundError, listing
from tests.unet_models import tiny_sd_unet


def test_listing_orders_numbers_by_value_and_shortens() -> None:
    names = ["branch10", "blocks[10:12]", "branch2", "blocks[2:12]", "branch", "branch1"]
    assert listing(names) == "'blocks[2:12]', 'blocks[10:12]', 'branch', 'branch1', 'branch2', 'branch10'"
    assert listing([f"b{k}" for k in range(12)], limit=3) == "'b0', 'b1', 'b2', ... (9 more)"


def test_an_unknown_region_lists_the_unet_branches_in_order() -> None:
    with pytest.raises(RegionNotFoundError) as error:
        cachekit.enable(tiny_sd_unet(), {"regions": ["branch99"]})
    branches = ", ".join(f"'branch{k}'" for k in range(12))
    assert branches in str(error.value)
