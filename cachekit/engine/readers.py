"""Which replayed inner outputs of a region live code reads: found by watching one refresh.

On a reuse step a region with ``inner: replay`` serves every inner module's stored output,
but most of them are read only by other modules of the region, which do not run then (a
UNet's deep down blocks feed its deep up blocks). Only outputs that code outside the region
reads reach code that runs: those alone are worth forecasting; the others are served as
stored, which costs nothing. During one refresh a :class:`LiveReaders` marks each inner
output the region returns with its module's path, follows the marks through every torch
operation (a ``torch.cat`` in a UNet's up block joins a skip tensor to the hidden state),
and a forward hook on every *live* module notes the marks on its inputs: a live module is one
of the denoiser's modules that is neither in the region, nor inside one of its modules, nor a
container of one (containers only hand tensors on to the region). The hooks are the modules'
own, not one process-wide hook: torch leaves a global hook's ``with_kwargs`` entry behind when
it is removed, and ``torch.compile(module)`` then warns of global hooks for good.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack, _pop_mode, _push_mode
from torch.utils.hooks import RemovableHandle

from cachekit.reuse.tree import tensors


def live_modules(model: nn.Module, region: list[nn.Module]) -> list[nn.Module]:
    """``model``'s modules that are not ``region``'s modules, inside one, or containers of one."""
    names = {id(module): name for name, module in model.named_modules()}
    inside = [names[id(module)] for module in region if id(module) in names]
    return [
        module
        for path, module in model.named_modules()
        if path
        and not any(path == other or path.startswith(other + ".") or other.startswith(path + ".") for other in inside)
    ]


class Marks(TorchFunctionMode):
    """Follows marks (sets of inner module paths) from tensors to every tensor an operation makes of them.

    Tensors are held weakly: following a whole forward keeps none of its activations alive.
    """

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[int, tuple[weakref.ref[torch.Tensor], frozenset[str]]] = {}

    def of(self, tree: Any) -> frozenset[str]:
        """The marks of every tensor in ``tree``, together."""
        found: set[str] = set()
        for tensor in tensors(tree):
            entry = self.marks.get(id(tensor))
            if entry is not None and entry[0]() is tensor:
                found |= entry[1]
        return frozenset(found)

    def mark(self, tree: Any, marks: frozenset[str]) -> None:
        """Give every tensor in ``tree`` the marks ``marks`` (replacing what it had)."""
        for tensor in tensors(tree):
            self.marks[id(tensor)] = (weakref.ref(tensor), marks)

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.marks:
            given = self.of((args, kwargs))
            if given:
                self.mark(out, given | self.of(out))  # an in-place result keeps its own marks too
        return out


class LiveReaders:
    """The inner paths of one region whose outputs live modules read (``None`` until watched once)."""

    def __init__(self, model: nn.Module, region: list[nn.Module]):
        self.model = model
        self.region = region
        self.paths: frozenset[str] | None = None
        self._found: set[str] = set()
        self._marks: Marks | None = None
        self._hooks: list[RemovableHandle] = []

    @property
    def watching(self) -> bool:
        """Whether a refresh is being watched now."""
        return self._marks is not None

    def forecasts(self, path: str) -> bool:
        """Whether inner module ``path``'s output is worth forecasting (every one until watched)."""
        return self.paths is None or path in self.paths

    def start(self) -> None:
        """Watch the refresh that starts now (nothing when already found or watching)."""
        if self.paths is not None or self.watching or _compiled(self.model):
            return
        self._marks = Marks()
        self._marks.__enter__()
        self._hooks = [
            module.register_forward_hook(self._read, with_kwargs=True)
            for module in live_modules(self.model, self.region)
        ]

    def returned(self, path: str, output: Any) -> None:
        """Inner module ``path`` returned ``output`` during the watched refresh."""
        if self._marks is not None:
            self._marks.mark(output, frozenset((path,)))

    def finish(self) -> None:
        """End the watch: the inner outputs read so far are the live ones from now on."""
        if self._marks is None:
            return
        self._marks.marks.clear()
        _leave(self._marks)
        for hook in self._hooks:
            hook.remove()
        self._marks, self._hooks = None, []
        self.paths = frozenset(self._found)

    def _read(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if self._marks is not None:
            self._found |= self._marks.of((args, kwargs))


def _leave(mode: TorchFunctionMode) -> None:
    """Take ``mode`` off torch's function-mode stack wherever it is; the modes entered above it
    since (another region's watch, another tool's mode) stay, in their order. Leaving it inert
    on the stack instead would make every later torch operation pass through it, for good."""
    stack = _get_current_function_mode_stack()
    place = next((index for index, entered in enumerate(stack) if entered is mode), None)
    if place is None:
        return
    above = stack[place + 1 :]
    for _ in range(len(above) + 1):
        _pop_mode()
    for entered in above:
        _push_mode(entered)


def _compiled(model: nn.Module) -> bool:
    """Whether ``model`` runs compiled (dynamo tracing now, or compiled in place by ``model.compile()``).

    A compiled model is never watched: the watch's forward hooks and torch function mode
    would be traced into its graphs. Every replayed output is then forecast, as before the watch.
    """
    return torch.compiler.is_compiling() or getattr(model, "_compiled_call_impl", None) is not None
