"""The 8-lane vectors of the numba kernels (usm.ssm._simd) against numpy, lane by lane."""

import numba
import numpy as np
import pytest

from usm.ssm import _simd as v


@numba.njit(fastmath=True)
def _exp_lanes(x, out):
    for i in range(0, x.shape[0], v.LANES):
        v.store(out, i, v.exp(v.load(x, i)))


def test_exp_matches_numpy_to_float32_precision_over_the_whole_range():
    x = np.concatenate([np.linspace(-87.0, 88.0, 40_000), np.linspace(-1.0, 1.0, 8_000)]).astype(np.float32)
    out = np.empty_like(x)
    _exp_lanes(x, out)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out / exact - 1.0)) < 5e-7


def test_exp_clamps_instead_of_overflowing():
    x = np.array([-1e4, -200.0, -88.0, 0.0, 88.5, 200.0, 1e4, 1.0], np.float32)
    out = np.empty_like(x)
    _exp_lanes(x, out)
    assert np.all(np.isfinite(out)) and np.all(out > 0)
    np.testing.assert_allclose(out[[0, 1]], np.exp(np.float32(-87.0)), rtol=1e-6)
    np.testing.assert_allclose(out[[5, 6]], np.exp(np.float64(88.0)), rtol=1e-6)


@numba.njit(fastmath=True)
def _arithmetic(a, b, out):
    x, y = v.load(a, (1, 0)), v.load(b, 0)  # a tuple index on a 2-D array, an int on a 1-D one
    v.store(out, (0, 0), x + y)
    v.store(out, (1, 0), x - y)
    v.store(out, (2, 0), x * y)
    v.store(out, (3, 0), v.fma(x, y, np.float32(0.5)))
    v.store(out, (4, 0), np.float32(2.0) - x * np.float32(3.0))
    v.store(out, (5, 0), v.vmax(x, y) + v.vmin(x, y) * v.splat(np.float32(10.0)))
    return v.hsum(x), v.hsum(v.load(a, (0, 3)))


def test_lane_arithmetic_loads_stores_and_sums_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 11)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    out = np.zeros((6, 8), np.float32)
    total, shifted = _arithmetic(a, b, out)
    x = a[1, :8]
    expected = [x + b, x - b, x * b, x * b + 0.5, 2.0 - 3.0 * x, np.maximum(x, b) + 10.0 * np.minimum(x, b)]
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-6, atol=1e-6)
    assert total == pytest.approx(float(x.sum()), rel=1e-6, abs=1e-6)
    assert shifted == pytest.approx(float(a[0, 3:11].sum()), rel=1e-6, abs=1e-6)  # lanes start at any index


def test_arrays_whose_lanes_are_not_adjacent_are_refused_when_compiling():
    @numba.njit
    def first_lanes(x):
        return v.hsum(v.load(x, 0))

    assert first_lanes(np.ones(8, np.float32)) == 8.0
    with pytest.raises(numba.core.errors.TypingError):
        first_lanes(np.ones(16, np.float32)[::2])  # a strided view: its 8 lanes are not adjacent
    with pytest.raises(numba.core.errors.TypingError):
        first_lanes(np.ones(8, np.float64))
