"""Regions: the spans of a backbone whose result can be reused, and how it is rebuilt.

A :class:`Region` lists the modules of a span in execution order: the first is the
*entry*, the last the *exit*. On a refresh step they all run and the region's result is
stored; on a reuse step none of them runs.

* ``mode="output"``: the exit returns the output stored at the last refresh.
* ``mode="residual"``: the exit returns this step's entry input plus the stored
  ``exit_output - entry_input``.

Modules between entry and exit still have to return *something* on a reuse step, because
the code around them (a ``for block in blocks`` loop, a UNet collecting skip tensors) reads
their outputs. ``inner="passthrough"`` hands each one's input straight on (a homogeneous
chain of blocks); ``inner="replay"`` returns each one's output from the last refresh (spans
such as a UNet's deep half, whose modules change shapes).

* ``mode="keyed"``: no policy decides. Each module is keyed on its exact input: a call whose
  input equals, value for value, the input of the stored call returns the stored output
  without running; any other call runs and is stored (see :mod:`cachekit.engine.keyed`).
  The modules are a set, not a span, and may sit inside another region's modules: the
  result is exact, so it composes with any region and any policy. Cross-attention keys
  and values (:mod:`cachekit.text_kv`) are the use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch

ReuseMode = Literal["output", "residual", "keyed"]
InnerMode = Literal["passthrough", "replay"]


@runtime_checkable
class RegionIO(Protocol):
    """Reads a region's tensors from module calls and builds module outputs from tensors."""

    def read_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """The tensors a module receives, the ones a residual is measured against."""

    def read_outputs(self, output: Any) -> tuple[torch.Tensor, ...]:
        """The same tensors, in the same order, taken from a module's output."""

    def build_output(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        """A module output, shaped as the module returns it, holding ``tensors``."""


@dataclass(frozen=True)
class TensorIO:
    """One tensor in, one tensor out: the commonest block signature.

    The input is the first keyword among ``names`` that the call passes, else the
    positional argument at ``position``.
    """

    names: tuple[str, ...] = ("hidden_states", "x", "sample")
    position: int = 0

    def read_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        for name in self.names:
            if name in kwargs:
                return (kwargs[name],)
        return (args[self.position],)

    def read_outputs(self, output: Any) -> tuple[torch.Tensor, ...]:
        return (output,)

    def build_output(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        return tensors[0]


@dataclass(frozen=True)
class TupleIO:
    """Several tensors in, the same tensors out as a tuple (dual-stream DiT blocks).

    ``inputs`` gives each tensor's keyword name and positional index; ``output_order``
    gives, for each slot of the returned tuple, the index into ``inputs`` it holds.
    Flux's double block takes ``hidden_states, encoder_hidden_states`` and returns
    ``(encoder_hidden_states, hidden_states)``: ``output_order=(1, 0)``.
    """

    inputs: tuple[tuple[str, int], ...]
    output_order: tuple[int, ...]

    def read_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        return tuple(kwargs[name] if name in kwargs else args[index] for name, index in self.inputs)

    def read_outputs(self, output: Any) -> tuple[torch.Tensor, ...]:
        by_input = {slot: output[position] for position, slot in enumerate(self.output_order)}
        return tuple(by_input[slot] for slot in range(len(self.inputs)))

    def build_output(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        return tuple(tensors[slot] for slot in self.output_order)


@dataclass(frozen=True)
class Region:
    """A cacheable span of a backbone.

    Args:
        name: unique within a model, used in configs and stats (``"branch0"``, ``"blocks.2-9"``).
        modules: dotted paths of the span's modules in execution order, entry first, exit last.
        mode: how the stored result is reused: ``"output"``, ``"residual"``, or ``"keyed"``
            (each module's output reused while its input is exactly the stored one).
        io: reads and builds the tensors of module calls (needed for ``residual`` mode and
            for ``passthrough`` inner modules).
        inner: what modules other than the exit return on a reuse step.
        probe_base: a module whose input, subtracted from the entry input, gives the
            ``entry_residual`` similarity probe (the first blocks' residual).
        description: one line for ``cachekit inspect``.
        rows_independent: each batch row's result depends on that row alone, so when only
            some rows refresh the span runs on those rows only. ``False`` for spans that mix
            rows (video UNets fold frames into the batch): a partial refresh then runs every
            row and keeps the refreshed rows' results, exact either way.
    """

    name: str
    modules: tuple[str, ...]
    mode: ReuseMode = "output"
    io: RegionIO = field(default_factory=TensorIO)
    inner: InnerMode = "passthrough"
    probe_base: str | None = None
    description: str = ""
    rows_independent: bool = True

    def __post_init__(self) -> None:
        if not self.modules:
            raise ValueError(f"region {self.name!r} lists no modules")
        if len(set(self.modules)) != len(self.modules):
            raise ValueError(f"region {self.name!r} lists a module twice: {self.modules}")
        if self.mode not in ("output", "residual", "keyed"):
            raise ValueError(f"region {self.name!r}: mode {self.mode!r} is not 'output', 'residual' or 'keyed'")
        if self.inner not in ("passthrough", "replay"):
            raise ValueError(f"region {self.name!r}: inner {self.inner!r} is not 'passthrough' or 'replay'")

    @property
    def entry(self) -> str:
        """Path of the first module of the span."""
        return self.modules[0]

    @property
    def exit(self) -> str:
        """Path of the last module of the span, whose output leaves the region."""
        return self.modules[-1]
