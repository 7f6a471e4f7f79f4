"""Sixteen-lane float32 vectors for the numba kernels (``_numba_kernels``): explicit SIMD in numba.

    >>> import numba, numpy as np
    >>> from usm.ssm import _simd as v
    >>> @numba.njit
    ... def scaled_sum(x):
    ...     return v.hsum(v.load(x, 0) * np.float32(2.0))
    >>> float(scaled_sum(np.arange(16, dtype=np.float32)))
    240.0

Why: the kernels hold one value for each of 16 adjacent channels in a vector -- a channel's step
size, input, output, or its state n -- and walk the sequence with it. Written as numba loops over
the channels, every 16-element row costs LLVM's loop set-up and run-time overlap checks between
the arrays it reads and writes (numba cannot declare them disjoint), and loops that update several
arrays at once are left scalar. A value of type ``float32x16`` is one LLVM ``<16 x float>``: one
AVX-512 register, two AVX2 ones (LLVM splits it on CPUs with narrower vectors; the results are the
same), loaded and stored explicitly, so nothing is checked at run time and nothing has to be proven
to vectorise.

What there is: ``load(array, index)`` / ``store(array, index, value)`` of the 16 lanes that start at
``array[index]`` (a C-contiguous float32 array; an int for a 1-D array, a tuple for more axes; the
lanes run along the last axis, which must hold 16 more elements there: nothing is bounds-checked),
``splat``, ``+ - * /`` between vectors and float32 scalars, ``fma``, ``vmax``/``vmin``, ``hsum``
(the sum of the lanes), ``exp`` and ``silu``. The kernels' callers pad the channels to a multiple
of ``LANES``.

numba's on-disk cache keys a kernel on its own file only: after editing this module, delete the
``__pycache__`` entries of ``_numba_kernels`` (or its cached kernels keep the old code).
"""

import operator

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, overload, register_model

LANES = 16
_FLOATS = ir.VectorType(ir.FloatType(), LANES)
_INTS = ir.VectorType(ir.IntType(32), LANES)


class Float32x16(types.Type):
    def __init__(self):
        super().__init__(name="float32x16")


float32x16 = Float32x16()


@register_model(Float32x16)
class _Float32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _FLOATS)


def _is_vector(ty) -> bool:
    return isinstance(ty, Float32x16)


def _vector_operands(*tys) -> bool:
    """At least one vector, the rest vectors or real scalars (which are broadcast)."""
    return any(map(_is_vector, tys)) and all(_is_vector(t) or isinstance(t, (types.Float, types.Integer)) for t in tys)


def _broadcast(context, builder, ty, value):
    if _is_vector(ty):
        return value
    scalar = context.cast(builder, value, ty, types.float32)
    undef = ir.Constant(_FLOATS, ir.Undefined)
    first = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, undef, ir.Constant(_INTS, [0] * LANES))


def _operands(context, builder, sig, args):
    return [_broadcast(context, builder, ty, value) for ty, value in zip(sig.args, args)]


def _call_llvm(builder, name, args):
    """The LLVM intrinsic ``name`` (``llvm.fmuladd``, ...) on float vectors of ``LANES`` lanes."""
    fnty = ir.FunctionType(_FLOATS, [_FLOATS] * len(args))
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, f"{name}.v{LANES}f32"), args)


def _addressable(ary, index) -> bool:
    """float32, C-contiguous (so that the lanes along the last axis are adjacent), indexed on every axis."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.float32 and ary.layout == "C"):
        return False
    if isinstance(index, types.Integer):
        return ary.ndim == 1
    return (isinstance(index, types.BaseTuple) and len(index) == ary.ndim
            and all(isinstance(i, types.Integer) for i in index))


def _lanes_pointer(context, builder, aryty, ary, indexty, index):
    if isinstance(indexty, types.Integer):
        indices, itemtys = [index], [indexty]
    else:
        indices, itemtys = cgutils.unpack_tuple(builder, index, len(indexty)), list(indexty)
    indices = [context.cast(builder, i, ty, types.intp) for i, ty in zip(indices, itemtys)]
    array = context.make_array(aryty)(context, builder, ary)
    return builder.bitcast(cgutils.get_item_pointer(context, builder, aryty, array, indices), _FLOATS.as_pointer())


@intrinsic
def load(typingctx, ary, index):
    """The lanes that start at ``ary[index]`` (float32, along the last axis)."""
    if not _addressable(ary, index):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_lanes_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1]), align=4)
    return float32x16(ary, index), codegen


@intrinsic
def store(typingctx, ary, index, value):
    """Writes ``value`` to the lanes that start at ``ary[index]``."""
    if not (_addressable(ary, index) and _is_vector(value)):
        return None

    def codegen(context, builder, sig, args):
        pointer = _lanes_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        builder.store(args[2], pointer, align=4)
        return context.get_dummy_value()
    return types.none(ary, index, value), codegen


@intrinsic
def splat(typingctx, x):
    """x in every lane."""
    if not isinstance(x, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _broadcast(context, builder, sig.args[0], args[0])
    return float32x16(x), codegen


def _lanewise(name, arity, emit):
    """The intrinsic ``name`` applying ``emit(builder, *vectors)`` lane by lane, scalars broadcast."""
    def signature(*operands):
        if not _vector_operands(*operands):
            return None

        def codegen(context, builder, sig, args):
            return emit(builder, *_operands(context, builder, sig, args))
        return float32x16(*operands), codegen

    # numba's intrinsics take a fixed number of arguments, so one typer per arity
    typer = {1: lambda typingctx, a: signature(a),
             2: lambda typingctx, a, b: signature(a, b),
             3: lambda typingctx, a, b, c: signature(a, b, c),
             4: lambda typingctx, a, b, c, d: signature(a, b, c, d)}[arity]
    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


_FAST = ("fast",)
_add = _lanewise("_add", 2, lambda builder, a, b: builder.fadd(a, b, flags=_FAST))
_sub = _lanewise("_sub", 2, lambda builder, a, b: builder.fsub(a, b, flags=_FAST))
_mul = _lanewise("_mul", 2, lambda builder, a, b: builder.fmul(a, b, flags=_FAST))
_div = _lanewise("_div", 2, lambda builder, a, b: builder.fdiv(a, b, flags=_FAST))
# llvm.fmuladd: one fused instruction where the CPU has FMA, a multiply and an add where it has not
# (llvm.fma would become a libm call per lane there)
fma = _lanewise("fma", 3, lambda builder, a, b, c: _call_llvm(builder, "llvm.fmuladd", [a, b, c]))
fma.__doc__ = "a * b + c lane by lane, fused where the CPU can."
vmax = _lanewise("vmax", 2, lambda builder, a, b: _call_llvm(builder, "llvm.maxnum", [a, b]))
vmin = _lanewise("vmin", 2, lambda builder, a, b: _call_llvm(builder, "llvm.minnum", [a, b]))
where_greater = _lanewise("where_greater", 4, lambda builder, a, b, x, y: builder.select(
    builder.fcmp_ordered(">", a, b, flags=_FAST), x, y))
where_greater.__doc__ = "x where a > b, else y, lane by lane."


@intrinsic
def _exponent_bits(typingctx, t):
    """The float whose bits are t's shifted left by 23: for t = 1.5 * 2 ** 23 + 127 + k (k integral,
    |k| < 2 ** 22) the low mantissa bits of t hold 127 + k, so the result is 2 ** k."""
    if not _is_vector(t):
        return None

    def codegen(context, builder, sig, args):
        bits = builder.bitcast(args[0], _INTS)
        return builder.bitcast(builder.shl(bits, ir.Constant(_INTS, [23] * LANES)), _FLOATS)
    return float32x16(t), codegen


@intrinsic
def hsum(typingctx, a):
    """The sum of the lanes (pairwise: lanes i and i + LANES / 2, then i + LANES / 4, ...)."""
    if not _is_vector(a):
        return None

    def codegen(context, builder, sig, args):
        value, undef = args[0], ir.Constant(_FLOATS, ir.Undefined)
        half = LANES // 2
        while half:
            upper = ir.Constant(_INTS, list(range(half, 2 * half)) + [0] * (LANES - half))
            value = builder.fadd(value, builder.shuffle_vector(value, undef, upper), flags=_FAST)
            half //= 2
        return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))
    return types.float32(a), codegen


_neg = _lanewise("_neg", 1, lambda builder, a: builder.fsub(ir.Constant(_FLOATS, [0.0] * LANES), a, flags=_FAST))


@overload(operator.neg)
def _negated(a):
    if _is_vector(a):
        return lambda a: _neg(a)


def _segment_masks(half: int) -> tuple[list[int], list[int]]:
    """Shuffle masks of one step of ``lane_sums``: the vectors hold rows in segments of 2 * half
    lanes; ``low`` takes the first half of every segment of the first vector, then of the second
    (lanes LANES and up), ``high`` the second halves."""
    low, high = [], []
    for offset in (0, LANES):
        for start in range(0, LANES, 2 * half):
            low += [offset + start + i for i in range(half)]
            high += [offset + start + half + i for i in range(half)]
    return low, high


@intrinsic
def lane_sums(typingctx, ary, row):
    """The LANES sums of rows ``row`` .. ``row + LANES - 1`` of a (rows, LANES) float32 array, as
    one vector (lane i: the sum of row ``row + i``): a transpose-and-add tree of 30 shuffles and 15
    additions, where LANES separate ``hsum`` calls would take 4 shuffles and 4 additions each."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.float32 and ary.layout == "C" and ary.ndim == 2
            and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        aryty, rowty = sig.args
        array = context.make_array(aryty)(context, builder, args[0])
        index = [context.cast(builder, args[1], rowty, types.intp), context.get_constant(types.intp, 0)]
        first = builder.bitcast(cgutils.get_item_pointer(context, builder, aryty, array, index), _FLOATS.as_pointer())
        vectors = [builder.load(builder.gep(first, [ir.Constant(ir.IntType(64), i)]), align=4) for i in range(LANES)]
        half = LANES // 2
        while half:
            low, high = (ir.Constant(ir.VectorType(ir.IntType(32), LANES), mask) for mask in _segment_masks(half))
            vectors = [builder.fadd(builder.shuffle_vector(a, b, low), builder.shuffle_vector(a, b, high), flags=_FAST)
                       for a, b in zip(vectors[0::2], vectors[1::2])]
            half //= 2
        return vectors[0]
    return float32x16(ary, row), codegen


def _register_operator(op, implementation):
    @overload(op)
    def typed(a, b):
        if _vector_operands(a, b):
            return lambda a, b: implementation(a, b)


for _op, _implementation in ((operator.add, _add), (operator.sub, _sub), (operator.mul, _mul),
                          (operator.truediv, _div)):
    _register_operator(_op, _implementation)


@numba.njit(inline="always", fastmath=True)
def exp(x):
    """exp of each lane: Cephes' expf (x = k ln 2 + f, a degree-6 polynomial in f, 2 ** k from its
    bits), x clamped to [-87, 88]; relative error about 2e-7 (``tests/test_simd.py``). k is rounded
    by adding 1.5 * 2 ** 23, which also leaves 127 + k in the sum's low bits (``_exponent_bits``):
    no rounding or float-to-int instruction, which cost a fifth of the scan's time."""
    x = vmin(vmax(x, np.float32(-87.0)), np.float32(88.0))
    magic = np.float32(1.5 * 2 ** 23 + 127)
    t = fma(x, np.float32(1.44269504), magic)
    k = t - magic
    f = fma(k, np.float32(2.12194440e-4), fma(k, np.float32(-0.693359375), x))
    p = fma(f, np.float32(1.9875691500e-4), np.float32(1.3981999507e-3))
    p = fma(p, f, np.float32(8.3334519073e-3))
    p = fma(p, f, np.float32(4.1665795894e-2))
    p = fma(p, f, np.float32(1.6666665459e-1))
    p = fma(p, f, np.float32(5.0000001201e-1))
    return fma(p * f, f, f + np.float32(1.0)) * _exponent_bits(t)


@numba.njit(inline="always", fastmath=True)
def log1p_unit(y):
    """log(1 + y) of each lane for y in [0, 1]: Cephes' logf after range reduction to
    [sqrt(1/2), sqrt(2)] (absolute error ~1e-7), and for y < 1e-2, where 1 + y would round away
    y's digits, a 4-term series (relative error < 2e-9)."""
    one = np.float32(1.0)
    series = y * (one - y * (np.float32(0.5) - y * (np.float32(1.0 / 3.0) - np.float32(0.25) * y)))
    m = y + one
    high = where_greater(m, np.float32(1.41421356), one, np.float32(0.0))  # 1 where m is halved
    m = m * (one - np.float32(0.5) * high)
    x = m - one
    z = x * x
    p = fma(x, np.float32(7.0376836292e-2), np.float32(-1.1514610310e-1))
    p = fma(p, x, np.float32(1.1676998740e-1))
    p = fma(p, x, np.float32(-1.2420140846e-1))
    p = fma(p, x, np.float32(1.4249322787e-1))
    p = fma(p, x, np.float32(-1.6668057665e-1))
    p = fma(p, x, np.float32(2.0000714765e-1))
    p = fma(p, x, np.float32(-2.4999993993e-1))
    p = fma(p, x, np.float32(3.3333331174e-1))
    r = p * x * z - high * np.float32(2.12194440e-4) - np.float32(0.5) * z
    return where_greater(np.float32(1e-2), y, series, x + r + high * np.float32(0.693359375))


@numba.njit(inline="always", fastmath=True)
def softplus(x):
    """(softplus(x), its slope sigmoid(x)) of each lane from one exp: with e = exp(-|x|),
    softplus(x) = max(x, 0) + log(1 + e), stable for every x, and sigmoid(x) = 1 / (1 + e) for
    x >= 0, e / (1 + e) below."""
    zero, one = np.float32(0.0), np.float32(1.0)
    e = exp(-vmax(x, -x))
    slope = where_greater(zero, x, e, splat(one)) / (e + one)
    return vmax(x, splat(zero)) + log1p_unit(e), slope


@numba.njit(inline="always", fastmath=True)
def sigmoid(x):
    """1 / (1 + exp(-x)) of each lane (``exp`` clamps, so it saturates instead of overflowing)."""
    return np.float32(1.0) / (exp(-x) + np.float32(1.0))


@numba.njit(inline="always", fastmath=True)
def silu(x):
    """x * sigmoid(x) of each lane."""
    return x * sigmoid(x)
