"""The denoising clock: which step of which generation, which call, which context.

Every policy decision receives a :class:`StepInfo`. When the denoiser belongs to a pipeline
with a scheduler, steps are counted from the scheduler's own calls (``set_timesteps`` starts
a generation, each ``step`` that completes a solver step advances the clock); schedulers
that repeat timesteps (PNDM, Heun, KDPM2) are therefore counted right, without ever looking
a timestep up in the schedule. A bare model has no scheduler: each call is a step, and a
second call with the same timestep is another *context* (CFG run as two calls).

A new generation starts, and every cache is dropped, when the pipeline sets its timesteps,
when the timestep goes up instead of down, or when the input's shape, dtype or device
changes.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cachekit.errors import CachekitWarning, ConcurrentUseError

_SAMPLE_NAMES = ("sample", "hidden_states", "x", "latents", "latent_model_input")
_TIMESTEP_NAMES = ("timestep", "timesteps", "t")


@dataclass(frozen=True)
class StepInfo:
    """Where one denoiser call stands in its generation.

    Attributes:
        index: the solver step, from 0.
        num_steps: steps this generation runs (``None`` when unknown: a bare model with no
            ``num_steps`` configured).
        timestep: the timestep passed to the denoiser, as a float, if any.
        call: the call within the step: 0, or 1 for a second-order solver's second call.
        context: the denoiser call since the scheduler last stepped: 0, or 1 and up when
            CFG branches run as separate calls. A batched CFG pass is one context.
        generation: counts generations since caching was enabled, from 0.
    """

    index: int
    num_steps: int | None
    timestep: float | None
    call: int = 0
    context: int = 0
    generation: int = 0

    @property
    def progress(self) -> float | None:
        """Normalised time in [0, 1]: 0 at the first step, 1 at the last; ``None`` if unknown."""
        if self.num_steps is None:
            return None
        return self.index / (self.num_steps - 1) if self.num_steps > 1 else 0.0


def find_sample(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The denoiser's main input: a known keyword, else the first positional tensor."""
    for name in _SAMPLE_NAMES:
        value = kwargs.get(name)
        if isinstance(value, torch.Tensor):
            return value
    return next((arg for arg in args if isinstance(arg, torch.Tensor)), None)


def find_timestep(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | None:
    """The timestep of a denoiser call, by keyword or as the second positional argument."""
    value = next((kwargs[name] for name in _TIMESTEP_NAMES if name in kwargs), None)
    if value is None and len(args) > 1:
        value = args[1]
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() else None
    return float(value) if isinstance(value, (int, float)) else None


def default_step_completed(scheduler: Any) -> bool:
    """After ``scheduler.step``: has a whole solver step finished? (second-order aware)."""
    return bool(getattr(scheduler, "state_in_first_order", True))


class DenoisingClock:
    """Counts the steps of one denoiser and tells the engine when a generation starts.

    Args:
        num_steps: steps per generation when no scheduler tells (bare models).
        on_new_generation: called whenever a generation starts; the engine drops caches.
        on_generation_end: called when the scheduler completes the last step; the engine frees caches.
    """

    def __init__(
        self,
        num_steps: int | None = None,
        on_new_generation: Callable[[], None] | None = None,
        on_generation_end: Callable[[], None] | None = None,
    ):
        self.configured_num_steps = num_steps
        self.on_new_generation = on_new_generation
        self.on_generation_end = on_generation_end
        self.scheduler: Any = None
        self.generation = -1
        self._reset_counters()
        self._signature: tuple[Any, ...] | None = None
        self.in_call = False
        """True while a denoiser call is running (set by the engine around each call)."""
        self._thread: int | None = None

    def _reset_counters(self) -> None:
        self.step = 0
        self.call = 0
        self.calls_since_scheduler_step = 0
        self.num_steps = self.configured_num_steps
        self.last_timestep: float | None = None
        self.fresh = True

    def running(self) -> bool:
        """Is a generation under way: a call running, or a scheduler's schedule not finished?"""
        if self.in_call:
            return True
        scheduled = self.scheduler is not None and self.num_steps is not None
        return scheduled and self.generation >= 0 and not self.fresh and self.step < self.num_steps

    def claim(self) -> None:
        """Note the calling thread; a second thread while a generation runs is a clear error.

        One clock per enabled denoiser cannot follow two generations at once: rather than
        mix their steps (a wrong image), the second thread is refused. A thread that takes
        over once the first one's generation is done starts a new generation.
        """
        ident = threading.get_ident()
        if self._thread is not None and self._thread != ident:
            if self.running():
                raise ConcurrentUseError(
                    "this cached denoiser is in use by another thread, whose generation is not finished; "
                    "cachekit follows one generation per enabled denoiser: give each thread its own pipeline "
                    "(or model) and enable cachekit on each"
                )
            if self.scheduler is None:
                self._signature = None  # a bare model's generation starts over in the new thread
        self._thread = ident

    def start_generation(self, check_length: bool = True) -> None:
        """Begin a new generation: counters to zero, caches dropped.

        ``check_length`` warns when the generation that ends ran another number of steps
        than configured (off for an explicit reset, which may cut a generation short).
        """
        if check_length:
            self._check_steps_ran()
        self.generation += 1
        self._reset_counters()
        if self.on_new_generation is not None:
            self.on_new_generation()

    def _check_steps_ran(self) -> None:
        """Warn when a bare model's loop ran another number of steps than the config's ``num_steps``."""
        configured = self.configured_num_steps
        ran = self.step + 1
        if self.scheduler is None and configured not in (None, ran) and self.generation >= 0 and not self.fresh:
            warnings.warn(
                f"the last generation ran {ran} steps but the config says num_steps={configured}: "
                "schedules were computed for the wrong length; set num_steps to the steps your loop runs",
                CachekitWarning,
                stacklevel=2,
            )

    def scheduler_stepped(self, completed: bool) -> None:
        """Record one ``scheduler.step`` call; ``completed`` says whether a solver step ended."""
        if completed:
            self.step += 1
            self.call = 0
        else:
            self.call += 1
        self.calls_since_scheduler_step = 0
        if completed and self.num_steps is not None and self.step == self.num_steps and self.on_generation_end:
            self.on_generation_end()

    def tick(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepInfo:
        """Account for one denoiser call and say where it stands."""
        self.claim()
        sample = find_sample(args, kwargs)
        timestep = find_timestep(args, kwargs)
        signature = None if sample is None else (tuple(sample.shape), sample.dtype, sample.device)
        went_back = timestep is not None and self.last_timestep is not None and timestep > self.last_timestep
        if self.generation < 0 or (not self.fresh and (signature != self._signature or went_back)):
            self.start_generation()
        self._signature = signature
        if self.fresh:
            left = self._steps_from_scheduler(timestep)
            # a later expert of a multi-denoiser pipeline first runs after `self.step` steps
            self.num_steps = self.step + left if left else self.configured_num_steps
            if left and self.configured_num_steps not in (None, self.num_steps):
                warnings.warn(
                    f"the config says num_steps={self.configured_num_steps} but the scheduler runs "
                    f"{self.num_steps} steps; the scheduler's count is used (num_steps is for bare models)",
                    CachekitWarning,
                    stacklevel=2,
                )
        elif self.scheduler is None:
            self._advance_without_scheduler(timestep)
        info = StepInfo(
            index=self.step,
            num_steps=self.num_steps,
            timestep=timestep,
            call=self.call,
            context=self.calls_since_scheduler_step,
            generation=self.generation,
        )
        self.calls_since_scheduler_step += 1
        self.last_timestep = timestep
        self.fresh = False
        return info

    def _advance_without_scheduler(self, timestep: float | None) -> None:
        if timestep is not None and timestep == self.last_timestep:
            return  # another context of the same step
        self.step += 1
        self.calls_since_scheduler_step = 0

    def _steps_from_scheduler(self, timestep: float | None) -> int | None:
        """Steps left in the scheduler's schedule from the first call's timestep on.

        Handles partial schedules (img2img starts part-way): the first call's timestep is
        looked up once per generation, never per call.
        """
        total = getattr(self.scheduler, "num_inference_steps", None)
        timesteps = getattr(self.scheduler, "timesteps", None)
        if not isinstance(total, int) or timesteps is None or timestep is None:
            return None
        order = max(int(getattr(self.scheduler, "order", 1)), 1)
        matches = (torch.as_tensor(timesteps).float().cpu() == timestep).nonzero()
        start = int(matches[0]) if len(matches) else 0
        return max(total - start // order, 1)
