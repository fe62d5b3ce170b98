"""The ranks of a sharded denoiser, and how they come to one decision.

A denoiser sharded over several processes (diffusers' ``enable_parallelism``, or a user's
own sequence or tensor sharding under ``torch.distributed``) shows each rank's regions only
that rank's shard, so a drift measured locally differs from rank to rank. Ranks that took
different refresh or reuse paths would wait forever in the next collective of the forward,
or join outputs computed under different decisions. The ranks of a :class:`RankGroup` sum
each row's drift terms (``sum|p - q|`` and ``sum|q|``, see
:func:`~cachekit.engine.probes.row_drift_terms`) before dividing, so each rank takes the
decision one process would take on the whole tensor; and once per generation they check
that they agree on the number of steps and the batch size, which a fixed schedule needs and
the sum needs too.

The config's ``process_group`` chooses the ranks (:func:`rank_group`), looked up again at the
first call of every generation, so parallelism enabled on the model after cachekit counts:

- ``"auto"`` (the default): the ranks the model is known to be sharded over: the context
  parallel mesh (else the tensor parallel mesh) diffusers' ``enable_parallelism`` records on
  the model as ``_parallel_config``; else the mesh of the model's ``DTensor`` parameters
  (torch's ``parallelize_module``, ``fully_shard``). A model with neither runs alone on each
  rank, as in data parallel sampling, and no collective is made.
- ``"world"``: every rank (the default process group), for sharding cachekit cannot see.
- ``"none"``: each rank decides alone.
- a ``torch.distributed.ProcessGroup`` (from Python): exactly those ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cachekit.errors import ConfigError, RankMismatchError, did_you_mean

GROUP_CHOICES = ("auto", "world", "none")
"""The names ``process_group`` takes besides a ``ProcessGroup`` object."""


@dataclass(frozen=True)
class RankGroup:
    """The ranks that share one denoiser's samples and must take the same decisions.

    Attributes:
        group: the process group, or ``None`` for the default group (every rank).
        origin: where it came from, for messages (``"world"``, ``"diffusers context parallel mesh"``).
    """

    group: Any
    origin: str

    @property
    def size(self) -> int:
        """The number of ranks."""
        return dist.get_world_size(self.group)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (one all-reduce); every rank gets the same values."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor

    def check_agreement(self, denoiser: str, num_steps: int | None, batch: int | None, device: torch.device) -> None:
        """At a generation's first call: raise unless every rank runs as many steps and batch rows.

        Raises:
            RankMismatchError: the ranks disagree; the message lists what each rank has.
        """
        mine = torch.tensor([-1 if num_steps is None else num_steps, -1 if batch is None else batch], device=device)
        every = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(every, mine, group=self.group)
        seen = [tuple(int(value) for value in values) for values in every]
        if len(set(seen)) == 1:
            return
        shown = ", ".join(
            f"rank {rank}: {_count(steps, 'steps')}, {_count(rows, 'batch rows')}"
            for rank, (steps, rows) in enumerate(seen)
        )
        raise RankMismatchError(
            f"the ranks of {denoiser!r} (process group: {self.origin}) disagree on the generation they run ({shown}); "
            "ranks that share a sample must call it with the same schedule and batch, or they take different "
            "refresh/reuse paths. Give every rank the same num_inference_steps and batch, or set process_group to "
            "the ranks that share samples ('none' when each rank generates its own)"
        )


def _count(value: int, noun: str) -> str:
    return f"unknown {noun}" if value < 0 else f"{value} {noun}"


def check_process_group(value: Any) -> Any:
    """``value`` if it is one of :data:`GROUP_CHOICES` or a ``ProcessGroup``; else a ``ValueError``."""
    if isinstance(value, str) and value in GROUP_CHOICES:
        return value
    if dist.is_available() and isinstance(value, dist.ProcessGroup):
        return value
    close = did_you_mean(value, GROUP_CHOICES) if isinstance(value, str) else ""
    raise ValueError(f"must be 'auto', 'world', 'none' or a torch.distributed.ProcessGroup{close}")


def rank_group(setting: Any, model: nn.Module) -> RankGroup | None:
    """The ranks ``model``'s decisions are agreed over for a ``process_group`` setting, or ``None``
    when each rank decides alone (``"none"``, a single process, or ``"auto"`` on an unsharded model).

    Raises:
        ConfigError: ``"world"`` or a group without ``torch.distributed`` initialised, or ``"auto"``
            on ``DTensor`` parameters whose mesh is neither one-dimensional nor the world.
    """
    if setting == "none":
        return None
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised:
        if setting == "auto":
            return None
        raise ConfigError(
            f"process_group {'world' if setting == 'world' else 'given as a ProcessGroup'} needs torch.distributed "
            "initialised first (torch.distributed.init_process_group, or launch with torchrun); "
            "use 'auto' or 'none' for a single process"
        )
    if setting == "world":
        return RankGroup(None, "world")
    if setting != "auto":
        return RankGroup(setting, "the given ProcessGroup")
    found = _parallel_config_group(model) or _dtensor_group(model)
    return None if found is None or dist.get_world_size(found.group) == 1 else found


def _parallel_config_group(model: nn.Module) -> RankGroup | None:
    """The mesh diffusers' ``enable_parallelism`` recorded on ``model``: context parallel, else tensor parallel."""
    config = getattr(model, "_parallel_config", None)
    context = getattr(config, "context_parallel_config", None)
    if context is not None and getattr(context, "_flattened_mesh", None) is not None:
        return RankGroup(context._flattened_mesh.get_group(), "diffusers context parallel mesh")
    tensor = getattr(config, "tensor_parallel_config", None)
    if tensor is not None and getattr(tensor, "_mesh", None) is not None:
        return RankGroup(tensor._mesh.get_group(), "diffusers tensor parallel mesh")
    return None


def _dtensor_group(model: nn.Module) -> RankGroup | None:
    """The device mesh of ``model``'s first ``DTensor`` parameter, as a group."""
    from torch.distributed.tensor import DTensor

    mesh = next((p.device_mesh for p in model.parameters() if isinstance(p, DTensor)), None)
    if mesh is None:
        return None
    if mesh.ndim == 1:
        return RankGroup(mesh.get_group(), "the mesh of its DTensor parameters")
    if mesh.size() == dist.get_world_size():
        return RankGroup(None, "world (the mesh of its DTensor parameters)")
    raise ConfigError(
        f"{type(model).__name__} has DTensor parameters on a {mesh.ndim}-dimensional mesh of {mesh.size()} of "
        f"{dist.get_world_size()} ranks; cachekit cannot tell which of them share samples. Set process_group to "
        "the ProcessGroup of the ranks that run each sample together"
    )
