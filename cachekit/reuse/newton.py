"""Interpolation weights from Newton divided differences, over refresh steps with unequal gaps.

Every forecaster here serves a weighted sum of the results of the last refreshes: the
weights depend on the refresh steps alone, never on the tensors. They are computed in
float64 for every batch row at once (rows refreshed at different steps have different
weights), as the coefficients each stored result takes in the interpolating polynomial.

Steps are given as ``nodes``, one row of refresh steps per batch row, latest first, NaN
where a row has not refreshed that often yet: a row with ``m`` refreshes gets the polynomial
of degree ``m - 1`` through them (the highest order it has).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Basis = Callable[[torch.Tensor, int], torch.Tensor]
"""``basis(delta, count)``: ``count`` basis functions at ``delta`` (steps past the latest refresh,
one per row), shaped ``(rows, count)``; function ``p`` stands in for ``delta ** p``."""


def powers(delta: torch.Tensor, count: int) -> torch.Tensor:
    """The monomials ``delta ** p`` for ``p < count``: the interpolating polynomial itself (Taylor)."""
    return torch.stack([delta**p for p in range(count)], dim=-1)


def monomial_coefficients(nodes: torch.Tensor) -> torch.Tensor:
    """The interpolating polynomial through ``nodes`` around the latest one, as weights of the stored results.

    Returns ``c`` shaped ``(rows, n, n)``: ``p(x0 + delta) = sum_k delta**k * sum_i c[r, k, i] * f_i``.
    The Newton form ``f[x0] + f[x0,x1] (s - x0) + f[x0,x1,x2] (s - x0)(s - x1) + ...`` is built from
    divided differences of the unit vectors (so each ``f[...]`` is a weight vector over the results),
    and each Newton product is expanded into powers of ``delta``. Terms that need a node a row lacks
    are left out for that row.
    """
    rows, n = nodes.shape
    known = ~nodes.isnan()
    offsets = (nodes - nodes[:, :1]).nan_to_num(0.0)  # x_j - x0
    table = torch.eye(n, dtype=torch.float64).expand(rows, n, n)  # table[:, j] = f[x_j] as weights
    product = torch.zeros(rows, n, dtype=torch.float64)  # prod_{j<k} (delta - offset_j), by power of delta
    product[:, 0] = 1.0
    coefficients = product[:, :, None] * table[:, :1, :]
    for k in range(1, n):
        gaps = (nodes[:, : n - k] - nodes[:, k:]).nan_to_num(1.0)  # x_j - x_{j+k}
        table = (table[:, :-1] - table[:, 1:]) / gaps[:, :, None]  # f[x_j .. x_{j+k}]
        shifted = torch.zeros_like(product)
        shifted[:, 1:] = product[:, :-1]
        product = shifted - offsets[:, k - 1 : k] * product  # times (delta - offset_{k-1})
        term = product[:, :, None] * table[:, :1, :]
        coefficients = coefficients + torch.where(known[:, k, None, None], term, 0.0)
    return coefficients


def weights(nodes: torch.Tensor, step: float, basis: Basis = powers) -> torch.Tensor:
    """The weight of each stored result (``(rows, n)``) in what step ``step`` is served.

    With :func:`powers` this is the interpolating polynomial evaluated at ``step`` (exact for
    results that are polynomials of degree below the number of nodes); another ``basis``
    replaces each power of ``delta`` by its own function (:mod:`cachekit.reuse.hermite`).
    """
    delta = (step - nodes[:, 0]).nan_to_num(0.0)  # a row with no refresh yet is served its placeholder
    return torch.einsum("rk,rki->ri", basis(delta, nodes.shape[1]), monomial_coefficients(nodes))
