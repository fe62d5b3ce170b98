"""Where an experiment's settings sample: in this process, or on a Ray cluster.

An :class:`Executor` takes the settings to run and yields each one's
:class:`~cachekit.experiments.measurement.Measurement` when it is done; the runner makes the
rows, files and plots from them, the same way whichever executor measured. Importing this
package does not import Ray: :class:`RayExecutor` imports it when it runs.
"""

from cachekit.experiments.executors.executor import Executor, ProgressBar
from cachekit.experiments.executors.local import LocalExecutor
from cachekit.experiments.executors.ray_executor import RAY_EXTRA, RayExecutor

__all__ = ["RAY_EXTRA", "Executor", "LocalExecutor", "ProgressBar", "RayExecutor"]
