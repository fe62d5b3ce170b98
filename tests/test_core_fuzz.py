"""Hypothesis fuzz: any config and any sequence of enable/call/reset/disable leaves no hook behind."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cachekit
from cachekit import CachekitError, CachekitWarning, load_config
from tests.models import tiny_transformer

MODEL = tiny_transformer()
REFERENCE_INPUT = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    REFERENCE = MODEL(REFERENCE_INPUT, torch.tensor(500.0))

policies = st.one_of(
    st.builds(
        lambda i, w: {"kind": "uniform", "interval": i, "warmup_steps": w}, st.integers(-1, 6), st.integers(-1, 3)
    ),
    st.builds(lambda i, c: {"kind": "nonuniform", "interval": i, "center": c}, st.integers(0, 6), st.integers(-1, 12)),
    st.builds(
        lambda t, m, r: {"kind": "similarity", "threshold": t, "max_consecutive_reuse": m, "refresh_last_steps": r},
        st.floats(-0.1, 1.0, allow_nan=False),
        st.one_of(st.none(), st.integers(0, 4)),
        st.integers(0, 3),
    ),
    st.sampled_from(["uniform", "similarity", "bogus", 7]),
    # non-string kinds, wrong scalar types
    st.builds(
        lambda k: {"kind": k},
        st.one_of(
            st.lists(st.text(max_size=3), max_size=2),
            st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
            st.none(),
            st.booleans(),
        ),
    ),
    st.builds(
        lambda v: {"kind": "uniform", "interval": v},
        st.one_of(st.booleans(), st.text(max_size=3), st.floats(allow_nan=True), st.lists(st.integers(), max_size=2)),
    ),
)


@st.composite
def regions(draw):
    first = draw(st.integers(0, 6))
    last = draw(st.integers(0, 6))
    return {
        "name": "r",
        "entry": f"blocks.{first}",
        "exit": f"blocks.{last}",
        "mode": draw(st.sampled_from(["output", "residual"])),
        "inner": draw(st.sampled_from(["passthrough", "replay"])),
    }


operations = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from([900.0, 500.0, 100.0]), st.sampled_from([1, 2])),
        st.tuples(st.just("reset")),
        st.tuples(st.just("disable")),
        st.tuples(st.just("enable")),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies, region=regions(), num_steps=st.one_of(st.none(), st.integers(1, 6)), ops=operations)
def test_any_config_and_sequence_leaves_no_hook_behind(policy, region, num_steps, ops):
    config = {"policy": policy, "declare": [region], "num_steps": num_steps}
    handles = []
    warnings.simplefilter("ignore", CachekitWarning)  # random loops contradict num_steps: a warning, on purpose
    try:
        for op in ops:
            if op[0] == "enable":
                # invalid configs and double enables must fail cleanly, with our error
                with contextlib.suppress(CachekitError):
                    handles.append(cachekit.enable(MODEL, config))
            elif op[0] == "call":
                # e.g. nonuniform with a budget it cannot place: a clear error
                with torch.no_grad(), contextlib.suppress(CachekitError):
                    MODEL(torch.randn(op[2], 8, 4), torch.tensor(op[1]))
            elif op[0] == "reset" and handles:
                handles[-1].reset()
            elif op[0] == "disable" and handles:
                handles.pop().disable()
    finally:
        for handle in handles:
            handle.disable()
    assert not any(name in vars(module) for module in MODEL.modules() for name in ("forward",))
    with torch.no_grad():
        assert torch.equal(MODEL(REFERENCE_INPUT, torch.tensor(500.0)), REFERENCE)


@settings(max_examples=80, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["policy", "regions", "declare", "num_steps", "polcy", "denoisers", "region_policies"]),
        st.one_of(st.integers(-2, 3), st.text(max_size=4), policies, st.lists(st.text(max_size=3), max_size=2)),
        max_size=4,
    )
)
def test_any_mapping_gives_a_config_or_a_config_error(data):
    try:
        load_config(data)
    except CachekitError as error:
        assert isinstance(error, ValueError) and str(error)


@settings(max_examples=60, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=40),
        st.builds(lambda depth: "[" * depth, st.integers(1, 6000)),
        st.builds(lambda depth: "a:\n" + "".join(" " * i + "b:\n" for i in range(depth)), st.integers(1, 300)),
    ),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-32", "cp1252"]),
    suffix=st.sampled_from([".yaml", ".json", ".toml"]),
)
def test_any_file_gives_a_config_or_a_config_error(text, encoding, suffix):
    with TemporaryDirectory() as folder:
        path = Path(folder) / f"config{suffix}"
        try:
            path.write_bytes(text.encode(encoding))
        except UnicodeEncodeError:
            return
        try:
            load_config(path)
        except CachekitError as error:
            assert isinstance(error, ValueError) and str(path) in str(error)
