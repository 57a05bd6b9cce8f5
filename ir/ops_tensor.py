"""Sources and data-movement ops: input, weight, reshape, transpose, slice, concat,
kv_append (KV-cache append along the sequence axis) and repeat_kv (GQA head sharing)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparseflow.ir.dims import Dim, add_dims, mul_dims, parse_dim, same_dim
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops import AttrDict, Cost, Op, OpClass, TypeMismatch, dense_bytes, register
from sparseflow.ir.types import TensorType

Bindings = dict[str, int]


def movement_cost(ins: Sequence[TensorType], out: TensorType, b: Bindings) -> Cost:
    """Return the cost of copying every input once into the output: no FLOPs."""
    return Cost(0, tuple(dense_bytes(t, b) for t in ins), dense_bytes(out, b))


def free_cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
    """Return zero cost: a view that no kernel materialises."""
    return Cost(0, tuple(0 for _ in ins), 0)


def axis_index(axis: int, rank: int) -> int:
    """Return a non-negative axis, or raise TypeMismatch when out of range."""
    if not -rank <= axis < rank:
        raise TypeMismatch(f"axis {axis} out of range for rank {rank}")
    return axis % rank


class _Source:
    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        raise TypeMismatch("a source's type is given, not inferred")

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        raise TypeMismatch("sources are read by the interpreter, not computed")


@register(Op.INPUT, OpClass.SOURCE, (0, 0))
class Input(_Source):
    """A graph input (token ids, positions, KV cache)."""

    cost = staticmethod(free_cost)


@register(Op.WEIGHT, OpClass.SOURCE, (0, 0))
class Weight(_Source):
    """A parameter read from the weight table; attr `role` says what it is."""

    cost = staticmethod(free_cost)


def _split_factors(shape: Sequence[Dim]) -> tuple[int, list[str]]:
    concrete, symbolic = 1, []
    for d in shape:
        if isinstance(d, int):
            concrete *= d
        else:
            symbolic.append(str(d).replace(" ", ""))
    return concrete, sorted(symbolic)


@register(Op.RESHAPE, OpClass.DATA, (1, 1))
class Reshape:
    """Reshape to attr `shape` (ints or symbolic dims); element count must match."""

    cost = staticmethod(free_cost)

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        shape = tuple(parse_dim(str(d)) for d in a["shape"])
        if _split_factors(shape) != _split_factors(ins[0].shape):
            raise TypeMismatch(f"cannot reshape {list(ins[0].shape)} to {list(shape)}")
        return ins[0].with_(shape=shape)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        shape = [int(d) if isinstance(d, int) else -1 for d in a["shape"]]
        if shape.count(-1) > 1:
            raise InputError(f"reshape to {list(a['shape'])}: at most one symbolic dim")
        return xs[0].reshape(shape)


@register(Op.TRANSPOSE, OpClass.DATA, (1, 1))
class Transpose:
    """Permute axes by attr `perm`."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        perm = tuple(a["perm"])
        if sorted(perm) != list(range(ins[0].rank)):
            raise TypeMismatch(f"perm {list(perm)} is not a permutation of rank {ins[0].rank}")
        return ins[0].with_(shape=tuple(ins[0].shape[p] for p in perm))

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        return movement_cost(ins, out, b)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return np.ascontiguousarray(xs[0].transpose(a["perm"]))


@register(Op.SLICE, OpClass.DATA, (1, 1))
class Slice:
    """Take [start, stop) along attr `axis` (a concrete axis)."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        axis = axis_index(int(a["axis"]), ins[0].rank)
        size, start, stop = ins[0].shape[axis], int(a["start"]), int(a["stop"])
        if not isinstance(size, int) or not 0 <= start < stop <= size:
            raise TypeMismatch(f"slice [{start}, {stop}) does not fit axis of size {size}")
        shape = list(ins[0].shape)
        shape[axis] = stop - start
        return ins[0].with_(shape=tuple(shape))

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        return Cost(0, (dense_bytes(out, b),), dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        index = [slice(None)] * xs[0].ndim
        index[int(a["axis"])] = slice(int(a["start"]), int(a["stop"]))
        return np.ascontiguousarray(xs[0][tuple(index)])


def _concat_type(ins: Sequence[TensorType], axis_attr: int) -> TensorType:
    first, second = ins
    if first.rank != second.rank:
        raise TypeMismatch(f"concat of rank {first.rank} and rank {second.rank}")
    axis = axis_index(axis_attr, first.rank)
    for i, (x, y) in enumerate(zip(first.shape, second.shape, strict=True)):
        if i != axis and not same_dim(x, y):
            raise TypeMismatch(f"concat shapes {list(first.shape)} and {list(second.shape)}")
    shape = list(first.shape)
    shape[axis] = add_dims(first.shape[axis], second.shape[axis])
    return first.with_(shape=tuple(shape))


@register(Op.CONCAT, OpClass.DATA, (2, 2))
class Concat:
    """Join two tensors along attr `axis`."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        return _concat_type(ins, int(a["axis"]))

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        return movement_cost(ins, out, b)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return np.concatenate(xs, axis=int(a["axis"]))


@register(Op.KV_APPEND, OpClass.ATTENTION, (2, 2))
class KvAppend:
    """Append new keys or values [B, H, T, D] to a cache [B, H, L, D] along the sequence axis.

    Cost: only the new entries are written (the cache is updated in place); the cache is read
    by the attention matmul that consumes the result, not here.
    """

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        if ins[0].rank != 4:
            raise TypeMismatch("a KV cache is [batch, heads, length, head_dim]")
        return _concat_type(ins, 2)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        new = dense_bytes(ins[1], b)
        return Cost(0, (0, new), new)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return np.concatenate(xs, axis=2)


@register(Op.REPEAT_KV, OpClass.ATTENTION, (1, 1))
class RepeatKv:
    """Share each of H key/value heads with `n_rep` query heads: [B, H, S, D] -> [B, H*n_rep,
    S, D], head h of the result reading head h // n_rep (grouped-query attention)."""

    cost = staticmethod(free_cost)

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        n_rep = int(a["n_rep"])
        if ins[0].rank != 4 or n_rep < 1:
            raise TypeMismatch("repeat_kv takes [batch, heads, length, head_dim] and n_rep >= 1")
        shape = list(ins[0].shape)
        shape[1] = mul_dims(shape[1], n_rep)
        return ins[0].with_(shape=tuple(shape))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return np.repeat(xs[0], int(a["n_rep"]), axis=1)
