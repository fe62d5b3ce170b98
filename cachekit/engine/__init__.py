"""The hook engine: the handle (:mod:`cachekit.engine.handle`), region runners (policy-driven, and
keyed on exact inputs: :mod:`cachekit.engine.keyed`), per-context state,
statistics, patching, probes, the selection of denoisers and regions, and the check of
other tools' offloading hooks (:mod:`cachekit.engine.offloading`).

Import from the submodules; the user-facing names are re-exported by :mod:`cachekit`.
"""
