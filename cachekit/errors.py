"""The errors cachekit raises.

Every error derives from :class:`CachekitError` and from the builtin that matches its
meaning, so ``except ValueError`` keeps working for callers who do not know cachekit.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class CachekitError(Exception):
    """Base class of every error cachekit raises."""


class ConfigError(CachekitError, ValueError):
    """A configuration is malformed: unknown key, bad kind, out-of-range value."""


class RegionNotFoundError(CachekitError, LookupError):
    """A region or module path names nothing in the model."""


class DenoiserNotFoundError(CachekitError, LookupError):
    """No plugin found a denoiser in the object given to :func:`cachekit.enable`."""


class AlreadyEnabledError(CachekitError, RuntimeError):
    """cachekit is already enabled on this model; disable the first handle before enabling again."""


class ConcurrentUseError(CachekitError, RuntimeError):
    """An enabled denoiser was called from a second thread while a generation runs in the first."""


class PolicyError(CachekitError, RuntimeError):
    """A policy cannot decide with the information it has (e.g. an unknown number of steps)."""


class UnsupportedCombinationError(CachekitError, RuntimeError):
    """Another tool has set the model up in a way cachekit cannot serve; the message names the
    combination and the order or setting that works."""


class RankMismatchError(CachekitError, RuntimeError):
    """The ranks of a sharded denoiser run different generations (step count, batch size), so
    they cannot take the same refresh and reuse decisions; the message lists each rank's."""


class CachekitWarning(UserWarning):
    """Something cachekit was asked to do does not fit what the model or loop actually does."""


class FewStepsWarning(CachekitWarning):
    """A generation runs so few steps (few-step and distilled schedules) that caching saves little.

    Raised once per step count at the first call of such a generation; silence it with a
    standard filter: ``warnings.filterwarnings("ignore", category=cachekit.FewStepsWarning)``.
    """


def did_you_mean(given: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(given, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def natural_key(text: str) -> list[str | int]:
    """Sort key that orders the numbers inside names by value: ``branch2`` before ``branch10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def listing(choices: Iterable[str], limit: int = 40) -> str:
    """Format choices for an error message in natural order, shortened past ``limit`` entries."""
    items = sorted(choices, key=natural_key)
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
