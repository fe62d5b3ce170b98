"""The hook engine: the handle (:mod:`cachekit.engine.handle`), region runners, per-context state,
statistics, patching, probes and the selection of denoisers and regions.

Import from the submodules; the user-facing names are re-exported by :mod:`cachekit`.
"""
