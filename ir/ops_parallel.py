"""Collectives between the devices of a tensor-parallel group: all_reduce and all_gather.

A per-device graph (`sparseflow.passes.parallel`) holds one collective node where the devices
exchange values. Its type is what each device holds after the exchange; its reference takes
the input's value on every device of the group, in rank order (a cluster runner gathers
them), so a single device's interpreter refuses a group of more than one. Costs are one
device's share of the arithmetic and its local reads and writes; the bytes crossing the
links, and their time, come from the link model of the hardware (`simulator.collectives`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparseflow.ir.dims import mul_dims
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops import AttrDict, Cost, Op, OpClass, TypeMismatch, dense_bytes, register
from sparseflow.ir.ops_tensor import axis_index
from sparseflow.ir.types import TensorType

Bindings = dict[str, int]


def group_size(a: AttrDict) -> int:
    """Return the attr `devices` of a collective, checked to be an integer >= 1."""
    devices = a.get("devices")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise TypeMismatch(f"devices must be an integer >= 1, not {devices!r}")
    return devices


def _check_values(xs: list[np.ndarray], a: AttrDict, op: Op) -> None:
    if len(xs) != int(a["devices"]):
        raise InputError(
            f"{op} over {a['devices']} devices needs the value of every device, got "
            f"{len(xs)}: run the per-device graphs together (backends.cluster)"
        )


@register(Op.ALL_REDUCE, OpClass.COMMUNICATION, (1, 1))
class AllReduce:
    """Sum a tensor over the attr `devices` of the group; every device holds the sum.

    Cost: a ring reduction adds (devices - 1) / devices of the elements on each device.
    """

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        group_size(a)
        if not ins[0].dtype.is_float:
            raise TypeMismatch(f"all_reduce sums floats, not {ins[0].dtype}")
        return ins[0].with_(sparse=None, quant=None)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        devices = int(a["devices"])
        flops = out.numel(b) * (devices - 1) // devices
        return Cost(flops, (dense_bytes(ins[0], b),), dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        _check_values(xs, a, Op.ALL_REDUCE)
        return np.sum([x.astype(np.float32) for x in xs], axis=0).astype(np.float32)


@register(Op.ALL_GATHER, OpClass.COMMUNICATION, (1, 1))
class AllGather:
    """Concatenate every device's tensor along attr `axis` (default -1) in rank order."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        devices = group_size(a)
        axis = axis_index(int(a.get("axis", -1)), ins[0].rank)
        shape = list(ins[0].shape)
        shape[axis] = mul_dims(shape[axis], devices)
        return ins[0].with_(shape=tuple(shape))

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        return Cost(0, (dense_bytes(ins[0], b),), dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        _check_values(xs, a, Op.ALL_GATHER)
        return np.concatenate(xs, axis=int(a.get("axis", -1)))
