"""Reading a diffusers UNet's skip connections and cutting it into DeepCache branches.

A UNet's down path produces skip tensors in order: ``conv_in``'s output is skip 0, then
each down *stage* (a resnet with the attention, temporal or motion layers that follow it,
or a block's downsamplers) appends one more. The up path consumes them last-first: each up
stage pops one skip, and up blocks' upsamplers pop none.

Branch ``k`` is everything deeper than skip ``k``: the down stages after skip ``k``, the
mid block, and the up stages that run before the stage consuming skip ``k``. On blocks of
two layers plus a downsampler (SD 1.x/2.x, SDXL, SVD, AnimateDiff) skip ``k`` is DeepCache's
``cache_branch_id = k``: block ``k // 3``, layer ``k % 3``.

Classes are recognised by name; diffusers is never imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cachekit import Region, TensorIO, isinstance_str

UNET_CLASSES = (
    "UNet2DModel",
    "UNet2DConditionModel",
    "AudioLDM2UNet2DConditionModel",
    "UNetSpatioTemporalConditionModel",
    "UNet3DConditionModel",
    "UNetMotionModel",
)
"""The UNets this plugin maps, by class name (subclasses included)."""

FRAMES_IN_BATCH = ("UNetSpatioTemporalConditionModel", "UNet3DConditionModel", "UNetMotionModel")
"""Video UNets that fold frames into the batch: their temporal layers mix batch rows."""


def folds_frames(model: nn.Module) -> bool:
    """True for a video UNet whose batch rows are frames that its temporal layers mix."""
    return any(isinstance_str(model, name) for name in FRAMES_IN_BATCH)


DOWN_BLOCKS = (
    "DownBlock2D",
    "AttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "ResnetDownsampleBlock2D",
    "SimpleCrossAttnDownBlock2D",
    "DownBlock3D",
    "CrossAttnDownBlock3D",
    "DownBlockSpatioTemporal",
    "CrossAttnDownBlockSpatioTemporal",
    "DownBlockMotion",
    "CrossAttnDownBlockMotion",
)
"""Down blocks whose forward runs its layers in turn, appending one skip after each layer
and one after its downsamplers (checked against diffusers' sources)."""

UP_BLOCKS = tuple(name.replace("Down", "Up") for name in DOWN_BLOCKS)
"""The matching up blocks: each layer pops one skip, then the upsamplers run."""

LAYER_LISTS = ("resnets", "temp_convs", "attentions", "temp_attentions", "motion_modules")
"""Per-layer module lists in the order a layer runs them. A list may hold several modules
per layer (AudioLDM2 runs two or more attentions after each resnet)."""

SAMPLER_LISTS = {"down": "downsamplers", "up": "upsamplers"}


@dataclass(frozen=True)
class Stage:
    """Modules of one block that run together: a layer, or the block's samplers.

    Every down stage produces one skip tensor; an up stage consumes one (``skip``) unless
    it is a block's upsamplers.
    """

    block: str
    modules: tuple[str, ...]
    skip: bool = True


@dataclass(frozen=True)
class UNetLayout:
    """The stages of a UNet in execution order, around its mid block."""

    down: tuple[Stage, ...]
    mid: str | None
    up: tuple[Stage, ...]

    @property
    def num_skips(self) -> int:
        """Skip tensors the down path produces, ``conv_in``'s output included."""
        return 1 + len(self.down)

    def branch_modules(self, k: int) -> tuple[str, ...]:
        """Paths of the modules deeper than skip ``k``, in execution order, whole blocks merged."""
        down = list(self.down[k:])
        up: list[Stage] = []
        pending = self.num_skips - 1
        for stage in self.up:
            if stage.skip:
                if pending == k:
                    break
                pending -= 1
            up.append(stage)
        middle = (self.mid,) if self.mid else ()
        return _merge(down, self.down) + middle + _merge(up, self.up)


def _merge(chosen: list[Stage], stages: tuple[Stage, ...]) -> tuple[str, ...]:
    """Module paths of ``chosen``; a block all of whose stages are chosen is named whole."""
    paths: list[str] = []
    for stage in chosen:
        whole = all(other in chosen for other in stages if other.block == stage.block)
        if not whole:
            paths += stage.modules
        elif stage.block not in paths:
            paths.append(stage.block)
    return tuple(paths)


def is_unet(model: nn.Module) -> bool:
    """True for the diffusers UNet classes this plugin maps."""
    return any(isinstance_str(model, name) for name in UNET_CLASSES)


def block_stages(block: nn.Module, path: str, side: str) -> tuple[Stage, ...] | None:
    """The stages of one down or up block, or ``None`` for a block this plugin does not know."""
    known = DOWN_BLOCKS if side == "down" else UP_BLOCKS
    if not any(isinstance_str(block, name) for name in known):
        return None
    resnets = block.resnets
    lists = [name for name in LAYER_LISTS if isinstance(getattr(block, name, None), nn.ModuleList)]
    stages = []
    for layer in range(len(resnets)):
        modules = []
        for name in lists:
            per_layer = len(getattr(block, name)) // len(resnets)
            modules += [f"{path}.{name}.{index}" for index in range(layer * per_layer, (layer + 1) * per_layer)]
        stages.append(Stage(path, tuple(modules)))
    samplers = getattr(block, SAMPLER_LISTS[side], None)
    if samplers:
        name = SAMPLER_LISTS[side]
        stages.append(
            Stage(path, tuple(f"{path}.{name}.{index}" for index in range(len(samplers))), skip=side == "down")
        )
    return tuple(stages)


def read_layout(model: nn.Module) -> UNetLayout | None:
    """The stages of ``model``, or ``None`` when it is not a UNet whose every block is known."""
    if not is_unet(model):
        return None
    sides: dict[str, list[Stage]] = {"down": [], "up": []}
    for side in sides:
        for index, block in enumerate(getattr(model, f"{side}_blocks")):
            stages = block_stages(block, f"{side}_blocks.{index}", side)
            if stages is None:
                return None
            sides[side] += stages
    layout = UNetLayout(tuple(sides["down"]), "mid_block" if model.mid_block is not None else None, tuple(sides["up"]))
    if sum(stage.skip for stage in layout.up) != layout.num_skips:
        return None
    return layout


BRANCH_IO = TensorIO(names=("hidden_states", "input_tensor", "sample"))
"""How a branch's entry input is read (motion resnets take ``input_tensor=``)."""


def branch_regions(layout: UNetLayout, rows_independent: bool = True) -> list[Region]:
    """One ``output``/``replay`` region per skip connection, shallowest (``branch0``) first.

    A skip with nothing deeper (the deepest one when there is no mid block) gives no region.
    ``rows_independent`` is ``False`` for video UNets (:func:`folds_frames`).
    """
    regions = []
    for k in range(layout.num_skips):
        modules = layout.branch_modules(k)
        if not modules:
            continue
        source = f"output of {layout.down[k - 1].modules[-1]}" if k else "the stem's output"
        regions.append(
            Region(
                name=f"branch{k}",
                modules=modules,
                mode="output",
                inner="replay",
                io=BRANCH_IO,
                description=f"everything deeper than skip {k} ({source})",
                rows_independent=rows_independent,
            )
        )
    return regions
