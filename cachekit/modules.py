"""Small helpers for addressing submodules by path, without importing any model library."""

from __future__ import annotations

from torch import nn

from cachekit.errors import RegionNotFoundError, did_you_mean, listing


def isinstance_str(obj: object, class_name: str) -> bool:
    """True when ``class_name`` is the name of a class in ``type(obj)``'s MRO.

    Lets the core and plugins recognise classes of libraries they must not import.
    """
    return any(cls.__name__ == class_name for cls in type(obj).__mro__)


def uncompiled(module: nn.Module) -> nn.Module:
    """The module that ``torch.compile(module)`` wrapped (its ``OptimizedModule``'s ``_orig_mod``), else ``module``.

    Plugins recognise models by class; a compiled wrapper reaches the same submodules by path.
    """
    return module._orig_mod if isinstance_str(module, "OptimizedModule") else module


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """Return the submodule at dotted ``path`` (``""`` is the root) or raise a clear error."""
    if path == "":
        return root
    try:
        return root.get_submodule(path)
    except AttributeError:
        parts = path.split(".")
        parent = ""
        for depth in range(len(parts) - 1, 0, -1):
            candidate = ".".join(parts[:depth])
            try:
                root.get_submodule(candidate)
            except AttributeError:
                continue
            parent = candidate
            break
        children = [f"{parent}.{name}" if parent else name for name in get_submodule(root, parent)._modules]
        raise RegionNotFoundError(
            f"module path {path!r} names nothing in {type(root).__name__}{did_you_mean(path, children)}; "
            f"{repr(parent) if parent else 'the model'} has: {listing(children, 20) or 'no submodules'}"
        ) from None


def sibling_span(root: nn.Module, entry: str, exit: str) -> tuple[str, ...]:
    """Paths of the modules from ``entry`` to ``exit`` inclusive, siblings in one parent.

    ``blocks.2`` to ``blocks.5`` gives ``blocks.2, blocks.3, blocks.4, blocks.5``. The
    two must share a parent and ``exit`` must not come before ``entry``.
    """
    get_submodule(root, entry)
    get_submodule(root, exit)
    if entry == exit:
        return (entry,)
    entry_parent, _, entry_name = entry.rpartition(".")
    exit_parent, _, exit_name = exit.rpartition(".")
    if entry_parent != exit_parent:
        raise RegionNotFoundError(
            f"entry {entry!r} and exit {exit!r} must be children of the same module "
            f"(got parents {entry_parent!r} and {exit_parent!r})"
        )
    children = list(get_submodule(root, entry_parent)._modules)
    first, last = children.index(entry_name), children.index(exit_name)
    if last < first:
        raise RegionNotFoundError(f"exit {exit!r} comes before entry {entry!r} in {entry_parent!r}")
    prefix = f"{entry_parent}." if entry_parent else ""
    return tuple(prefix + name for name in children[first : last + 1])
