"""The hook specifications of the experiments layer (project name ``cachekit``).

They join the process-wide plugin manager the first time experiments are used
(:func:`cachekit.experiments.hooks.experiment_hooks`); a plugin implements them like any
other cachekit hook, with :data:`cachekit.hookimpl`. The core never calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cachekit.hookspecs import hookspec

if TYPE_CHECKING:
    from cachekit.experiments.caller import PipelineCaller
    from cachekit.experiments.entry_key import EntryKey
    from cachekit.experiments.model_spec import ModelSpec
    from cachekit.experiments.scorer import SampleScorer


@hookspec(firstresult=True)
def cachekit_load_experiment_model(spec: ModelSpec) -> Any | None:
    """Load the pipeline an experiment samples from, on ``spec.device`` in ``spec.dtype``.

    ``spec`` is the ``model`` section of an experiment config: a ``source`` (a shipped
    model name, a local folder or a hub id) or a ``builder`` name, with the pipeline and
    scheduler classes to use. Return the pipeline, or ``None`` when this plugin does not
    load that source or builder. Raise :class:`~cachekit.errors.ConfigError` when the
    source is this plugin's but the options are wrong.
    """


@hookspec
def cachekit_experiment_models() -> list[ModelSpec]:
    """The models this plugin loads by name (shipped models, builders), one ``ModelSpec`` each.

    Only the name matters (``ModelSpec(source="digits-unet")``, ``ModelSpec(builder="tiny-unet")``):
    errors list them, with a "did you mean", when no plugin loads a model. Called on every plugin;
    one that loads no named model need not implement it.
    """


@hookspec(firstresult=True)
def cachekit_sample_scorer(spec: ModelSpec) -> SampleScorer | None:
    """A scorer of the samples of the model ``spec`` names (a Fréchet distance, class accuracy).

    The experiment runner calls it once per setting with every sample (images in ``[0, 1]``)
    and the class labels they were asked for. Return ``None`` when this plugin has no
    scorer for that model.
    """


@hookspec(firstresult=True)
def cachekit_experiment_caller(spec: ModelSpec) -> PipelineCaller | None:
    """How to call the pipeline loaded for ``spec``: a :class:`~cachekit.experiments.caller.PipelineCaller`.

    It turns the runner's :class:`~cachekit.experiments.caller.SampleRequest` (steps, seeds,
    prompts or class labels, extra arguments) into the pipeline's call and reads the images
    out of its output. Asked when the experiment config is loaded, so that ``sampling.call``
    cannot set what the caller sets. Return ``None`` for models called some other way; the
    diffusers plugin answers for every model no other plugin claims.
    """


@hookspec
def cachekit_experiment_entry_keys() -> dict[str, EntryKey]:
    """Extra keys of an experiment's ``policies`` entries, by name: a backbone's own vocabulary.

    Each :class:`~cachekit.experiments.entry_key.EntryKey` says what values the key takes and
    which ``CacheConfig`` keys a value sets (the UNet plugin's ``branch: 0`` sets
    ``regions: [branch0]``). Called on every plugin; a key may not be one of the built-in keys
    (``kind``, ``name``, ``grid``, ``regions``, ``forecast``, ``cache``) nor another plugin's.
    """
