"""Calibration: measure what reuse costs a model, and choose its refresh steps from that.

A few uncached generations are recorded (:mod:`~cachekit.calibration.recorder`, a fixed
subsample of each region's result per step, so memory does not grow with the model), each
forecaster's error of serving step ``j`` from earlier refreshes is accumulated
(:mod:`~cachekit.calibration.error_model`), a dynamic programme picks the refresh steps for a
budget (:mod:`~cachekit.calibration.solver`), optionally refined against the generated output
itself (:mod:`~cachekit.calibration.search`), the similarity probe's drift is fitted to the
measured error (:mod:`~cachekit.calibration.probe_fit`) and, across samples, to each
segment's error under the chosen schedule (:mod:`~cachekit.calibration.drift_trust`: how far
an anchored ``adaptive`` policy lets it move refreshes), and the result is one portable
JSON file (:mod:`~cachekit.calibration.file`) that ``kind: calibrated`` policies read.
:func:`~cachekit.calibration.calibrate.calibrate_model` runs it all on a pipeline or model.

Import from the submodules; ``cachekit.calibrate`` runs it from an experiment config.
"""
