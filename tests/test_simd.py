"""The 16-lane vectors of the numba kernels (usm.ssm._simd) against numpy, lane by lane."""

import numba
import numpy as np
import pytest

from usm.ssm import _simd as v

LANES = v.LANES


def lanewise(fn):
    """A compiled loop applying the vector function ``fn`` to x, LANES elements at a time."""
    @numba.njit(fastmath=True)
    def run(x, out):
        for i in range(0, x.shape[0], LANES):
            v.store(out, i, fn(v.load(x, i)))
    return run


@numba.njit(fastmath=True)
def _softplus_value(x):
    return v.softplus(x)[0]


@numba.njit(fastmath=True)
def _softplus_slope(x):
    return v.softplus(x)[1]


_exp_lanes = lanewise(v.exp)
_softplus_lanes = lanewise(_softplus_value)
_slope_lanes = lanewise(_softplus_slope)
_log1p_lanes = lanewise(v.log1p_unit)
_silu_lanes = lanewise(v.silu)


def test_lanes_fill_one_avx512_register():
    assert LANES == 16


def test_exp_matches_numpy_to_float32_precision_over_the_whole_range():
    x = np.concatenate([np.linspace(-87.0, 88.0, 40_000), np.linspace(-1.0, 1.0, 8_000)]).astype(np.float32)
    out = np.empty_like(x)
    _exp_lanes(x, out)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out / exact - 1.0)) < 5e-7


def test_exp_clamps_instead_of_overflowing():
    x = np.array([-1e4, -200.0, -88.0, 0.0, 88.5, 200.0, 1e4, 1.0] * 2, np.float32)
    out = np.empty_like(x)
    _exp_lanes(x, out)
    assert np.all(np.isfinite(out)) and np.all(out > 0)
    np.testing.assert_allclose(out[[0, 1]], np.exp(np.float32(-87.0)), rtol=1e-6)
    np.testing.assert_allclose(out[[5, 6]], np.exp(np.float64(88.0)), rtol=1e-6)


def test_log1p_softplus_and_its_slope_match_numpy():
    y = np.concatenate([np.linspace(0.0, 1.0, 4000), np.geomspace(1e-9, 2e-2, 800)]).astype(np.float32)
    out = np.empty_like(y)
    _log1p_lanes(y, out)
    np.testing.assert_allclose(out, np.log1p(y.astype(np.float64)), rtol=2e-6, atol=2e-7)  # small y: relative

    x = np.linspace(-30.0, 30.0, 4800).astype(np.float32)
    exact = np.logaddexp(0.0, x.astype(np.float64))
    out = np.empty_like(x)
    _softplus_lanes(x, out)
    np.testing.assert_allclose(out, exact, rtol=2e-6, atol=1e-7)
    _slope_lanes(x, out)
    np.testing.assert_allclose(out, 1.0 / (1.0 + np.exp(-x.astype(np.float64))), rtol=2e-6, atol=1e-7)


def test_silu_saturates_without_overflow():
    x = np.concatenate([np.linspace(-200.0, 200.0, 1600), np.linspace(-4.0, 4.0, 1600)]).astype(np.float32)
    out = np.empty_like(x)
    _silu_lanes(x, out)
    exact = x.astype(np.float64) / (1.0 + np.exp(-np.clip(x.astype(np.float64), -87, 88)))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, exact, rtol=2e-6, atol=1e-7)


@numba.njit(fastmath=True)
def _arithmetic(a, b, out):
    x, y = v.load(a, (1, 0)), v.load(b, 0)  # a tuple index on a 2-D array, an int on a 1-D one
    v.store(out, (0, 0), x + y)
    v.store(out, (1, 0), x - y)
    v.store(out, (2, 0), x * y)
    v.store(out, (3, 0), v.fma(x, y, np.float32(0.5)))
    v.store(out, (4, 0), np.float32(2.0) - x * np.float32(3.0))
    v.store(out, (5, 0), v.vmax(x, y) + v.vmin(x, y) * v.splat(np.float32(10.0)))
    v.store(out, (6, 0), x / (y * y + np.float32(1.0)))
    v.store(out, (7, 0), -x)
    v.store(out, (8, 0), v.where_greater(x, y, x, np.float32(7.0)))
    return v.hsum(x), v.hsum(v.load(a, (0, 3)))


def test_lane_arithmetic_loads_stores_and_sums_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, LANES + 3)).astype(np.float32), rng.standard_normal(LANES).astype(np.float32)
    out = np.zeros((9, LANES), np.float32)
    total, shifted = _arithmetic(a, b, out)
    x = a[1, :LANES]
    expected = [x + b, x - b, x * b, x * b + 0.5, 2.0 - 3.0 * x, np.maximum(x, b) + 10.0 * np.minimum(x, b),
                x / (b * b + 1.0), -x, np.where(x > b, x, 7.0)]
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-6, atol=1e-6)
    assert total == pytest.approx(float(x.sum()), rel=1e-6, abs=1e-5)
    assert shifted == pytest.approx(float(a[0, 3:].sum()), rel=1e-6, abs=1e-5)  # lanes start at any index


def test_arrays_whose_lanes_are_not_adjacent_are_refused_when_compiling():
    @numba.njit
    def first_lanes(x):
        return v.hsum(v.load(x, 0))

    assert first_lanes(np.ones(LANES, np.float32)) == float(LANES)
    with pytest.raises(numba.core.errors.TypingError):
        first_lanes(np.ones(2 * LANES, np.float32)[::2])  # a strided view: its lanes are not adjacent
    with pytest.raises(numba.core.errors.TypingError):
        first_lanes(np.ones(LANES, np.float64))
