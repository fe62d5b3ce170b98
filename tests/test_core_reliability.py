"""Reliability: copies, pickling, gradients, threads, memory and bad input (each failed before)."""

from __future__ import annotations

import copy
import gc
import io
import threading
import weakref

import pytest
import torch

import cachekit
from tests.models import MIDDLE, tiny_transformer

T = (900.0, 800.0, 700.0, 600.0)
CONFIG = {**MIDDLE, "policy": {"kind": "uniform", "interval": 2}}


@torch.no_grad()
def generate(model, sample: torch.Tensor) -> torch.Tensor:
    for t in T:
        sample = sample - 0.1 * model(sample, torch.tensor(t))
    return sample


def hooked(model) -> list[str]:
    return [name for name, module in model.named_modules() if "forward" in vars(module)]


def test_a_deep_copy_is_a_plain_model_that_never_reaches_the_original() -> None:
    model, sample = tiny_transformer(), torch.randn(1, 8, 4)
    reference = generate(model, sample)
    with cachekit.cached(model, CONFIG):
        clone = copy.deepcopy(model)
        assert torch.equal(generate(clone, sample), reference)  # unhooked: no reuse
        with torch.no_grad():
            for parameter in clone.parameters():
                parameter.zero_()
        assert not torch.equal(generate(clone, sample), reference)  # its own weights, not the original's
    assert hooked(clone) == [] and hooked(model) == []
    with cachekit.cached(clone, CONFIG) as handle:  # and it can be cached on its own
        generate(clone, sample)
    assert handle.stats.reuses > 0


def test_pickling_an_enabled_model_gives_an_unhooked_model() -> None:
    model, sample = tiny_transformer(), torch.randn(1, 8, 4)
    reference = generate(model, sample)
    with cachekit.cached(model, CONFIG):
        buffer = io.BytesIO()
        torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(generate(loaded, sample), reference)
    assert hooked(loaded) == []


def test_a_backward_per_step_works_through_reuse_steps() -> None:
    model = tiny_transformer()
    sample = torch.randn(1, 8, 4)
    with cachekit.cached(model, CONFIG) as handle:
        for t in T:  # classifier-guidance style: a gradient of the output at every step
            x = sample.detach().requires_grad_(True)
            out = model(x, torch.tensor(t))
            (grad,) = torch.autograd.grad(out.square().sum(), x)
            sample = (x - 0.1 * out - 0.01 * grad).detach()
    assert handle.stats.reuses > 0 and torch.isfinite(sample).all()


def test_disable_frees_every_cached_tensor_at_once() -> None:
    model = tiny_transformer()
    handle = cachekit.enable(model, CONFIG)
    with torch.no_grad():
        model(torch.randn(1, 8, 4), torch.tensor(900.0))
    assert handle.cache_bytes > 0
    stored = handle.runtimes[0].runners[0].state.contexts[0].strategy.stored["exit"].value[0]
    alive = weakref.ref(stored)
    del stored
    handle.disable()
    gc.collect()
    assert handle.cache_bytes == 0 and alive() is None


def test_nothing_global_keeps_a_model_and_handle_alive() -> None:
    model = tiny_transformer()
    handle = cachekit.enable(model, CONFIG)
    generate(model, torch.randn(1, 8, 4))
    model_alive, handle_alive = weakref.ref(model), weakref.ref(handle)
    del model, handle
    gc.collect()
    assert model_alive() is None and handle_alive() is None


def test_a_second_thread_on_one_cached_denoiser_is_a_clear_error_and_two_models_work() -> None:
    model = tiny_transformer()
    entered, release = threading.Event(), threading.Event()
    original = model.blocks[0].forward

    def slow(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            entered.set()
            release.wait(5)
        return original(*args, **kwargs)

    model.blocks[0].forward = slow
    errors: list[BaseException] = []
    with cachekit.cached(model, CONFIG):
        worker = threading.Thread(target=lambda: generate(model, torch.randn(1, 8, 4)))
        worker.start()
        entered.wait(5)
        try:
            with pytest.raises(cachekit.ConcurrentUseError, match="its own pipeline"):
                generate(model, torch.randn(1, 8, 4))
        finally:
            release.set()
            worker.join()
    del model.blocks[0].forward

    models = [tiny_transformer(), tiny_transformer()]  # built here: the global seed is not thread-safe

    def run(index: int, results: dict[int, torch.Tensor]) -> None:
        try:
            own = models[index]
            with cachekit.cached(own, CONFIG):
                results[index] = generate(own, torch.ones(1, 8, 4))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    results: dict[int, torch.Tensor] = {}
    threads = [threading.Thread(target=run, args=(i, results)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and torch.equal(results[0], results[1])


@pytest.mark.parametrize(
    "config,match",
    [
        ({"policy": {"kind": ["uniform"]}}, "unknown policy kind"),
        ({"policy": {"kind": {"a": 1}}}, "unknown policy kind"),
        ({**MIDDLE, "region_policies": {"middle": {"kind": ["x"]}}}, "region_policies.middle.kind"),
        ({"policy": {"kind": "uniform", "interval": True}}, "policy.interval: Input should be a valid integer"),
        ({"declare": [{"name": "m", "entry": ""}]}, "declare.0.entry"),
    ],
)
def test_bad_input_is_a_config_error(config: dict, match: str) -> None:
    with pytest.raises(cachekit.ConfigError, match=match):
        cachekit.load_config(config)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_config_files_in_other_encodings(tmp_path, encoding: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("policy: {kind: uniform}  # é\n", encoding=encoding)
    if encoding == "utf-16":  # a BOM says what it is
        assert cachekit.load_config(path).policy.kind == "uniform"
    else:
        with pytest.raises(cachekit.ConfigError, match="not UTF-8 text"):
            cachekit.load_config(path)


def test_deeply_nested_yaml_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000)
    with pytest.raises(cachekit.ConfigError, match=str(path)):
        cachekit.load_config(path)


def test_a_module_list_as_region_is_an_error_naming_its_items() -> None:
    model = tiny_transformer()
    with pytest.raises(cachekit.ConfigError, match="ModuleList.*blocks.0"):
        cachekit.enable(model, {"declare": [{"name": "m", "entry": "blocks"}]})
    assert hooked(model) == []


def test_num_steps_contradicting_the_loop_warns() -> None:
    model = tiny_transformer()
    with cachekit.cached(model, {**CONFIG, "num_steps": 50}):
        generate(model, torch.randn(1, 8, 4))
        with pytest.warns(cachekit.CachekitWarning, match="ran 4 steps but the config says num_steps=50"):
            generate(model, torch.randn(1, 8, 4))


def test_refresh_last_steps_without_a_step_count_is_an_error() -> None:
    model = tiny_transformer()
    config = {**MIDDLE, "policy": {"kind": "similarity", "refresh_last_steps": 2}}
    with cachekit.cached(model, config), pytest.raises(cachekit.PolicyError, match="refresh_last_steps"):
        generate(model, torch.randn(1, 8, 4))


def test_a_deep_copied_pipeline_runs_its_own_steps_unhooked() -> None:
    from cachekit_digits.loading import BUILDERS

    pipe = BUILDERS["tiny-unet"]()
    pipe.set_progress_bar_config(disable=True)
    with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": 2}}) as handle:
        clone = copy.deepcopy(pipe)
        calls = []
        clone.unet.register_forward_pre_hook(lambda *_: calls.append(1))
        generator = torch.Generator().manual_seed(0)
        clone(num_inference_steps=6, generator=generator, output_type="pt")
        assert len(calls) == 6 and handle.stats.refreshes + handle.stats.reuses == 0
        assert "step" not in vars(clone.scheduler) and "set_timesteps" not in vars(clone.scheduler)
        assert hooked(clone.unet) == []
