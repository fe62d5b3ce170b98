"""Checking a calibration file against the model it is used on."""

from __future__ import annotations

from cachekit.calibration.file import CalibrationFile
from cachekit.calibration.identity import ModelIdentity
from cachekit.calibration.probe_fit import ProbeFit
from cachekit.denoiser import Denoiser
from cachekit.errors import ConfigError, listing


def check_model(calibration: CalibrationFile, denoiser: Denoiser, path: str) -> None:
    """Raise :class:`ConfigError` unless ``calibration`` measured this denoiser (name, class, config hash)."""
    info = calibration.models.get(denoiser.name)
    if info is None:
        raise ConfigError(
            f"calibration {path!r} has no denoiser {denoiser.name!r}; it calibrated {listing(calibration.models)}"
        )
    identity = ModelIdentity.of(denoiser.module)
    if (info.class_name, info.config_hash) != (identity.class_name, identity.config_hash):
        raise ConfigError(
            f"calibration {path!r} is for a {info.class_name} (config {info.config_hash}), and this "
            f"{denoiser.name!r} is a {identity}; calibrate this model"
        )


def denoiser_regions(calibration: CalibrationFile, denoiser: str) -> dict[str, str]:
    """The file's region keys of ``denoiser``, mapped to the regions' own names."""
    return {key: key.rpartition("/")[2] for key, region in calibration.regions.items() if region.denoiser == denoiser}


def region_key(calibration: CalibrationFile, denoiser: str, region: str, path: str) -> str:
    """The file's key of ``region`` of ``denoiser``; :class:`ConfigError` when it has none."""
    keys = denoiser_regions(calibration, denoiser)
    found = next((key for key, name in keys.items() if name == region), None)
    if found is None:
        raise ConfigError(
            f"calibration {path!r} has no region {region!r} of {denoiser!r}; it calibrated {listing(keys.values())}"
        )
    return found


def probe_threshold(path: str, denoiser: Denoiser, region: str, probe: str, error: float) -> float:
    """The similarity threshold at which ``region``'s fitted probe predicts ``error`` (see
    :mod:`cachekit.calibration.probe_fit`), from the calibration file at ``path``."""
    calibration = CalibrationFile.load(path)
    check_model(calibration, denoiser, path)
    fit: ProbeFit | None = calibration.regions[region_key(calibration, denoiser.name, region, path)].probe_fit
    if fit is None or fit.probe != probe:
        raise ConfigError(
            f"calibration {path!r} fitted {'no probe' if fit is None else f'probe {fit.probe!r}'} for region "
            f"{region!r}, and this similarity policy reads probe {probe!r}; calibrate with probe: {probe}"
        )
    return fit.threshold(error)
