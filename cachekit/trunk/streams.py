"""How the blocks of a trunk take and return their token streams: the usual block signatures.

A :class:`~cachekit.trunk.BlockList` carries one of these (or any other
:class:`~cachekit.RegionIO`); a residual block range reads its entry inputs and rebuilds its
exit output with it.
"""

from __future__ import annotations

from cachekit import TensorIO, TupleIO

SINGLE_STREAM = TensorIO(names=("hidden_states", "x"))
"""Blocks taking and returning the latent tokens alone, as ``hidden_states=`` or ``x``
(DiT, PixArt, Sana, HunyuanDiT, Wan, LTX-Video, Stable Audio, the DiT paper's blocks)."""

DUAL_STREAM = TupleIO(inputs=(("hidden_states", 0), ("encoder_hidden_states", 1)), output_order=(1, 0))
"""Blocks taking ``hidden_states, encoder_hidden_states`` and returning ``(encoder_hidden_states,
hidden_states)``: SD3's joint blocks and both kinds of Flux block."""

DUAL_STREAM_IN_ORDER = TupleIO(inputs=(("hidden_states", 0), ("encoder_hidden_states", 1)), output_order=(0, 1))
"""Blocks taking ``hidden_states, encoder_hidden_states`` and returning them in that order
(CogVideoX, Mochi and HunyuanVideo blocks, whose attention joins video and text tokens)."""
