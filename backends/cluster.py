"""Run a model mapped onto several devices as one model: per-device runners, host collectives.

`ClusterRunner` takes the device graphs of `passes.parallel.map_devices` and a factory that
makes each device's runner from its graph and the kernels of its collectives; it takes and
returns the whole model's values (token ids, positions, the full KV caches, the logits), so
`backends.runner.generate` drives it like a single device. Stages run one after the other,
each receiving the values the previous stage sends; the devices of a stage run in threads and
meet at every collective: each one hands its input to the exchange, waits for the others,
and gets the op's reference over all of them (the sum for an all_reduce, the concatenation
for an all_gather). What is modelled: the arithmetic on every device and exactly the values
the collectives exchange (as each device holds them, e.g. FP16 partial sums on an FPGA card);
not how or when the bytes move (the estimate's link model times that).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sparseflow.backends.runner import GraphRunner
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter, Kernel
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op, OpClass
from sparseflow.passes.parallel import DeviceGraph

RunnerFactory = Callable[[Graph, dict[str, Kernel]], GraphRunner]
CACHE_PREFIXES = ("past_k.", "past_v.")
WAIT_S = 600.0  # a device that never reaches a collective is a bug: fail instead of hanging


def reference_runner(graph: Graph, kernels: dict[str, Kernel]) -> GraphRunner:
    """Return the numpy reference of a device graph, with its collectives' kernels."""
    return Interpreter(graph, kernels=kernels)


class Exchange:
    """The meeting point of one collective node: every device's value in, the result out."""

    def __init__(self, node: Node, devices: int) -> None:
        self.node = node
        self.values: list[np.ndarray | None] = [None] * devices
        self.barrier = threading.Barrier(devices, timeout=WAIT_S)

    def kernel(self, rank: int) -> Kernel:
        """Return device `rank`'s kernel: deposit its input, wait, apply the op to all."""

        def run(inputs: list[np.ndarray]) -> np.ndarray:
            self.values[rank] = inputs[0]
            self.barrier.wait()
            result = self.node.op.reference(list(self.values), self.node.attr_dict)
            self.barrier.wait()  # nobody overwrites a value before all have read them
            return result

        return run


class ClusterRunner:
    """Run device graphs [stage][rank] as the whole model (module doc)."""

    def __init__(self, devices: list[list[DeviceGraph]], factory: RunnerFactory) -> None:
        self.devices = devices
        self.runners = [_stage_runners(stage, factory) for stage in devices]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the model's outputs for the model's inputs (module doc)."""
        sent: dict[str, np.ndarray] = {}
        outputs: dict[str, np.ndarray] = {}
        for stage, runners in zip(self.devices, self.runners, strict=True):
            feeds = [_feeds(d, {**inputs, **sent}) for d in stage]
            results = _run_all(runners, feeds)
            sent = dict(results[0])
            for name in sent:
                caches = name.startswith(("k.", "v."))
                outputs[name] = (
                    _gather_cache(stage, [r[name] for r in results]) if caches else sent[name]
                )
        return outputs


def _stage_runners(stage: list[DeviceGraph], factory: RunnerFactory) -> list[GraphRunner]:
    """Return the runners of one stage's devices, joined by one exchange per collective."""
    collectives = [n for n in stage[0].graph.nodes if n.op.op_class is OpClass.COMMUNICATION]
    exchanges = [Exchange(n, len(stage)) for n in collectives]
    return [factory(d.graph, {ex.node.name: ex.kernel(d.rank) for ex in exchanges}) for d in stage]


def _run_all(runners: list[GraphRunner], feeds: list[dict]) -> list[dict[str, np.ndarray]]:
    if len(runners) == 1:
        return [runners[0].run(feeds[0])]
    with ThreadPoolExecutor(len(runners)) as pool:
        return list(pool.map(lambda pair: pair[0].run(pair[1]), zip(runners, feeds, strict=True)))


def _feeds(device: DeviceGraph, values: dict[str, np.ndarray]) -> dict:
    """Return a device's inputs: the model's, its own KV heads of the caches, and received."""
    feeds = {}
    first, last = device.kv_heads
    for node in device.graph.nodes_of(Op.INPUT):
        value = values[node.name]
        feeds[node.name] = value[:, first:last] if node.name.startswith(CACHE_PREFIXES) else value
    return feeds


def _gather_cache(stage: list[DeviceGraph], parts: list[np.ndarray]) -> np.ndarray:
    """Return the model's cache from the devices' KV heads (each head once)."""
    heads = {}
    for device, part in zip(stage, parts, strict=True):
        for offset, head in enumerate(range(*device.kv_heads)):
            heads.setdefault(head, part[:, offset : offset + 1])
    return np.concatenate([heads[h] for h in sorted(heads)], axis=1)
