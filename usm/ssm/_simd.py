"""Eight-lane float32 vectors for the numba kernels (``_numba_kernels``): explicit SIMD in numba.

    >>> import numba, numpy as np
    >>> from usm.ssm import _simd as v
    >>> @numba.njit
    ... def scaled_sum(x):
    ...     return v.hsum(v.load(x, 0) * np.float32(2.0))
    >>> float(scaled_sum(np.arange(8, dtype=np.float32)))
    56.0

Why: a scan's state is N = 16 floats per channel, two AVX registers. Written as numba loops over
N, every 16-element row costs LLVM's loop set-up and run-time overlap checks between the arrays it
reads and writes (numba cannot declare them disjoint), and loops that update several arrays at
once are left scalar. A value of type ``float32x8`` is one LLVM ``<8 x float>``: the kernels hold
a block of 8 states in a register across the whole walk along the sequence and load and store
lanes explicitly, so nothing is checked at run time and nothing has to be proven to vectorise.
On CPUs with narrower vectors (SSE, NEON) LLVM splits each value in two; the results are the same.

What there is: ``load(array, index)`` / ``store(array, index, value)`` of the 8 lanes that start at
``array[index]`` (a C-contiguous float32 array; an int for a 1-D array, a tuple for more axes; the
lanes run along the last axis, which must hold 8 more elements there: nothing is bounds-checked), ``splat``,
``+ - *`` between vectors and float32 scalars, ``fma``, ``vmax``/``vmin``, ``hsum`` (the sum of the
lanes) and ``exp``. The kernels' callers pad N to a multiple of ``LANES``.

numba's on-disk cache keys a kernel on its own file only: after editing this module, delete the
``__pycache__`` entries of ``_numba_kernels`` (or its cached kernels keep the old code).
"""

import operator

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, overload, register_model

LANES = 8
_FLOATS = ir.VectorType(ir.FloatType(), LANES)
_INTS = ir.VectorType(ir.IntType(32), LANES)


class Float32x8(types.Type):
    def __init__(self):
        super().__init__(name="float32x8")


float32x8 = Float32x8()


@register_model(Float32x8)
class _Float32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _FLOATS)


def _is_vector(ty) -> bool:
    return isinstance(ty, Float32x8)


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
    """The LLVM intrinsic ``name`` (``llvm.fmuladd``, ...) on 8-lane float vectors."""
    fnty = ir.FunctionType(_FLOATS, [_FLOATS] * len(args))
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, f"{name}.v8f32"), args)


def _addressable(ary, index) -> bool:
    """float32, C-contiguous (so that 8 lanes along the last axis are adjacent), indexed on every axis."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.float32 and ary.layout == "C"):
        return False
    if isinstance(index, types.Integer):
        return ary.ndim == 1
    return isinstance(index, types.UniTuple) and isinstance(index.dtype, types.Integer) and index.count == ary.ndim


def _lanes_pointer(context, builder, aryty, ary, indexty, index):
    if isinstance(indexty, types.Integer):
        indices, itemty = [index], indexty
    else:
        indices, itemty = cgutils.unpack_tuple(builder, index, indexty.count), indexty.dtype
    indices = [context.cast(builder, i, itemty, types.intp) for i in indices]
    array = context.make_array(aryty)(context, builder, ary)
    return builder.bitcast(cgutils.get_item_pointer(context, builder, aryty, array, indices), _FLOATS.as_pointer())


@intrinsic
def load(typingctx, ary, index):
    """The 8 lanes that start at ``ary[index]`` (float32, along the last axis)."""
    if not _addressable(ary, index):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_lanes_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1]), align=4)
    return float32x8(ary, index), codegen


@intrinsic
def store(typingctx, ary, index, value):
    """Writes ``value`` to the 8 lanes that start at ``ary[index]``."""
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
    return float32x8(x), codegen


def _lanewise(name, arity, emit):
    """The intrinsic ``name`` applying ``emit(builder, *vectors)`` lane by lane, scalars broadcast."""
    def signature(*operands):
        if not _vector_operands(*operands):
            return None

        def codegen(context, builder, sig, args):
            return emit(builder, *_operands(context, builder, sig, args))
        return float32x8(*operands), codegen

    # numba's intrinsics take a fixed number of arguments, so one typer per arity
    typer = {1: lambda typingctx, a: signature(a),
             2: lambda typingctx, a, b: signature(a, b),
             3: lambda typingctx, a, b, c: signature(a, b, c)}[arity]
    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


_FAST = ("fast",)
_add = _lanewise("_add", 2, lambda builder, a, b: builder.fadd(a, b, flags=_FAST))
_sub = _lanewise("_sub", 2, lambda builder, a, b: builder.fsub(a, b, flags=_FAST))
_mul = _lanewise("_mul", 2, lambda builder, a, b: builder.fmul(a, b, flags=_FAST))
# llvm.fmuladd: one fused instruction where the CPU has FMA, a multiply and an add where it has not
# (llvm.fma would become a libm call per lane there)
fma = _lanewise("fma", 3, lambda builder, a, b, c: _call_llvm(builder, "llvm.fmuladd", [a, b, c]))
fma.__doc__ = "a * b + c lane by lane, fused where the CPU can."
vmax = _lanewise("vmax", 2, lambda builder, a, b: _call_llvm(builder, "llvm.maxnum", [a, b]))
vmin = _lanewise("vmin", 2, lambda builder, a, b: _call_llvm(builder, "llvm.minnum", [a, b]))
_floor = _lanewise("_floor", 1, lambda builder, a: _call_llvm(builder, "llvm.floor", [a]))


@intrinsic
def _pow2(typingctx, k):
    """2 ** k for integral k in [-126, 127], assembled from the exponent bits."""
    if not _is_vector(k):
        return None

    def codegen(context, builder, sig, args):
        exponent = builder.add(builder.fptosi(args[0], _INTS), ir.Constant(_INTS, [127] * LANES))
        return builder.bitcast(builder.shl(exponent, ir.Constant(_INTS, [23] * LANES)), _FLOATS)
    return float32x8(k), codegen


@intrinsic
def hsum(typingctx, a):
    """The sum of the 8 lanes (pairwise: lanes i and i + 4, then i + 2, then i + 1)."""
    if not _is_vector(a):
        return None

    def codegen(context, builder, sig, args):
        value, undef = args[0], ir.Constant(_FLOATS, ir.Undefined)
        for half in (4, 2, 1):
            upper = ir.Constant(_INTS, list(range(half, 2 * half)) + [0] * (LANES - half))
            value = builder.fadd(value, builder.shuffle_vector(value, undef, upper), flags=_FAST)
        return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))
    return types.float32(a), codegen


def _register_operator(op, implementation):
    @overload(op)
    def typed(a, b):
        if _vector_operands(a, b):
            return lambda a, b: implementation(a, b)


for _op, _implementation in ((operator.add, _add), (operator.sub, _sub), (operator.mul, _mul)):
    _register_operator(_op, _implementation)


@numba.njit(inline="always", fastmath=True)
def exp(x):
    """exp of each lane: Cephes' expf (x = k ln 2 + f, a degree-6 polynomial in f, 2 ** k from its
    bits), x clamped to [-87, 88]; relative error about 2e-7 (``tests/test_simd.py``)."""
    x = vmin(vmax(x, np.float32(-87.0)), np.float32(88.0))
    k = _floor(fma(x, np.float32(1.44269504), np.float32(0.5)))
    f = fma(k, np.float32(2.12194440e-4), fma(k, np.float32(-0.693359375), x))
    p = fma(f, np.float32(1.9875691500e-4), np.float32(1.3981999507e-3))
    p = fma(p, f, np.float32(8.3334519073e-3))
    p = fma(p, f, np.float32(4.1665795894e-2))
    p = fma(p, f, np.float32(1.6666665459e-1))
    p = fma(p, f, np.float32(5.0000001201e-1))
    return fma(p * f, f, f + np.float32(1.0)) * _pow2(k)
