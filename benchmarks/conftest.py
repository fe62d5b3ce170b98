"""The benchmarks' options: ``--device`` and ``--dtype`` (:mod:`benchmarks.device`), ``--tables``
(:mod:`benchmarks.tables`)."""

from __future__ import annotations

import os

import pytest

from benchmarks import device, tables


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cachekit benchmarks")
    group.addoption(
        "--device",
        default=os.environ.get(device.DEVICE_ENV, "cpu"),
        help=f"torch device of the models: cpu (default, or ${device.DEVICE_ENV}) or cuda[:N]",
    )
    group.addoption(
        "--dtype",
        default=os.environ.get(device.DTYPE_ENV, "float32"),
        choices=list(device.DTYPES),
        help=f"dtype of the models' weights (default float32, or ${device.DTYPE_ENV})",
    )
    group.addoption(
        "--tables",
        default=os.environ.get(tables.TABLES_ENV),
        help=f"a folder the benchmarks write their tables to, as Markdown (or ${tables.TABLES_ENV})",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        device.select(device.parse(config.getoption("--device"), config.getoption("--dtype")))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    tables.select(config.getoption("--tables"))
