"""`estimate` for GPU and CPU targets: a request's latency, throughput, energy and bottlenecks.

A pure function of (compressed prefill graph, compressed decode graph, hardware model,
workload): no global state, cheap to call many times (design-space sweeps). The prefill graph
runs once over the prompt; the decode graph runs `gen_len` times with the KV length growing
from `prompt_len`. Nodes whose cost does not depend on the KV length are timed once and reused;
the others are timed at every step, so the result equals timing each step in full.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numpy as np

from sparseflow.backends.runner import check_request
from sparseflow.hw_models.schema import GpuModel, HardwareModel
from sparseflow.ir.dims import dim_symbols
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op, weight_storage_bytes
from sparseflow.simulator.analytical import KernelTiming, bound_of, estimate_kernel
from sparseflow.simulator.graph_work import graph_works


@dataclass(frozen=True)
class Workload:
    """One request: batch size, prompt length and number of generated tokens.

    An estimate reports decode steps, so it needs at least one generated token.
    """

    batch: int = 1
    prompt_len: int = 128
    gen_len: int = 128

    def __post_init__(self) -> None:
        check_request(self.batch, self.prompt_len, self.gen_len, min_gen_len=1)


def deployed_weight_bytes(graph: Graph) -> int:
    """Return the graph's weight bytes as deployed (`weight_storage_bytes` of each weight)."""
    return sum(weight_storage_bytes(node.type) for node in graph.nodes_of(Op.WEIGHT))


def _kv_cache_bytes(decode: Graph, length: int, float_bytes: int) -> int:
    total = 0
    for node in decode.nodes_of(Op.KV_APPEND):
        tensor_type = node.type
        per_element = tensor_type.dtype.bits / 8 if tensor_type.quant else float_bytes
        total += int(tensor_type.numel({"L": length - 1, "T": 1}) * per_element)
    return total


def _check_capacity(hw: HardwareModel, decode: Graph, weights: int, workload: Workload) -> None:
    kv = _kv_cache_bytes(decode, workload.prompt_len + workload.gen_len, 2)
    capacity = hw.memory.capacity_bytes  # type: ignore[attr-defined]
    if weights + kv > capacity:
        raise InputError(
            f"{hw.source_file or hw.name}: field 'memory.capacity_bytes' = {capacity} cannot hold "
            f"the model: weights {weights} + KV cache {kv} bytes"
        )


def _time_graph(
    hw: HardwareModel, graph: Graph, bindings: dict[str, int], dtype: DType
) -> list[KernelTiming]:
    """Time every kernel; layers repeat, so a kernel alike but for its name is timed once."""
    timed: dict[tuple, KernelTiming] = {}
    out = []
    for work in graph_works(graph, bindings, dtype):
        key = tuple(getattr(work, f.name) for f in fields(work) if f.name != "name")
        if key not in timed:
            timed[key] = estimate_kernel(hw, work)
        out.append(replace(timed[key], name=work.name))
    return out


def length_dependent(graph: Graph, symbol: str = "L") -> set[str]:
    """Return the nodes whose input or output shapes involve `symbol`."""
    types = {n.name: n.type for n in graph.nodes}
    return {
        n.name
        for n in graph.nodes
        if any(
            symbol in dim_symbols(d)
            for t in (n.type, *(types[i] for i in n.inputs))
            for d in t.shape
        )
    }


class StepTiming(NamedTuple):
    """What a report sums over kernels: time, work, traffic, energy, class and bound."""

    name: str
    op_class: str
    time_s: float
    flops_executed: float
    peak_ops_per_s: float
    bytes_moved: float
    peak_bandwidth_bytes_per_s: float
    energy_j: float
    bound: str


def _step(t: KernelTiming) -> StepTiming:
    return StepTiming(
        t.name,
        t.op_class,
        t.time_s,
        t.flops_executed,
        t.peak_ops_per_s,
        t.bytes_moved,
        t.peak_bandwidth_bytes_per_s,
        t.energy_j,
        t.bound,
    )


class _Affine:
    """A kernel's timing as an affine function of the KV entries past a first timing t0, from
    t0 and the timing t1 one entry later.

    Exact for the analytical model: FLOPs and bytes of attention kernels are affine in the KV
    length, so compute and memory times and dynamic energy are too; the time is their max plus
    the launch overhead, and static energy is static power times that time.
    """

    def __init__(self, t0: KernelTiming, t1: KernelTiming) -> None:
        self.t0 = t0
        self.compute = (t0.compute_time_s, t1.compute_time_s - t0.compute_time_s)
        self.memory = (t0.memory_time_s, t1.memory_time_s - t0.memory_time_s)
        self.dynamic = (t0.energy.dynamic_j, t1.energy.dynamic_j - t0.energy.dynamic_j)
        self.flops = (t0.flops_executed, t1.flops_executed - t0.flops_executed)
        self.bytes = (t0.bytes_moved, t1.bytes_moved - t0.bytes_moved)
        self.static_w = t0.energy.static_j / t0.time_s

    def over(self, steps: np.ndarray) -> dict[str, np.ndarray]:
        """Return `at` for every count of `steps` as arrays (the same arithmetic per element):
        time_s, energy_j, compute_share, memory_share and bound (index in BOUNDS)."""
        t0 = self.t0
        compute = self.compute[0] + self.compute[1] * steps
        memory = self.memory[0] + self.memory[1] * steps
        time_s = np.maximum(compute, memory) + t0.launch_overhead_s
        dynamic = self.dynamic[0] + self.dynamic[1] * steps
        launch = t0.launch_overhead_s > np.maximum(compute, memory)
        bound = np.where(launch, 2, np.where(compute >= memory, 0, 1))
        return {
            "time_s": time_s,
            "energy_j": dynamic + self.static_w * time_s,
            "compute_share": (self.flops[0] + self.flops[1] * steps) / t0.peak_ops_per_s,
            "memory_share": (self.bytes[0] + self.bytes[1] * steps) / t0.peak_bandwidth_bytes_per_s,
            "bound": bound,
        }

    def at(self, steps: int) -> StepTiming:
        """Return the timing `steps` KV entries past t0."""
        t0 = self.t0
        compute = self.compute[0] + self.compute[1] * steps
        memory = self.memory[0] + self.memory[1] * steps
        time_s = max(compute, memory) + t0.launch_overhead_s
        dynamic = self.dynamic[0] + self.dynamic[1] * steps
        return StepTiming(
            t0.name,
            t0.op_class,
            time_s,
            self.flops[0] + self.flops[1] * steps,
            t0.peak_ops_per_s,
            self.bytes[0] + self.bytes[1] * steps,
            t0.peak_bandwidth_bytes_per_s,
            dynamic + self.static_w * time_s,
            bound_of(compute, memory, t0.launch_overhead_s),
        )


def decode_timings(
    hw: HardwareModel, decode: Graph, workload: Workload, dtype: DType, exact: bool = False
) -> list[list[StepTiming]]:
    """Return each decode step's kernel timings (KV length prompt_len + step).

    Length-independent kernels are timed once; length-dependent ones are extrapolated from
    two lengths (`_Affine`), or timed at every step when `exact` (the tests compare both).
    """
    if exact:
        return [
            [_step(t) for t in _time_graph(hw, decode, {"L": workload.prompt_len + i}, dtype)]
            for i in range(workload.gen_len)
        ]
    fixed, lines = _decode_lines(hw, decode, workload, dtype)
    return [fixed + [line.at(i) for line in lines] for i in range(workload.gen_len)]


def _decode_lines(
    hw: HardwareModel, decode: Graph, workload: Workload, dtype: DType
) -> tuple[list[StepTiming], list[_Affine]]:
    """Return the decode kernels whose timing does not depend on the KV length (in graph
    order) and the affine lines of those that do (`decode_timings` orders them so too)."""
    varying = length_dependent(decode)
    first = _time_graph(hw, decode, {"L": workload.prompt_len}, dtype)
    fixed = [_step(t) for t in first if t.name not in varying]
    base = [t for t in first if t.name in varying]
    works = graph_works(decode, {"L": workload.prompt_len + 1}, dtype, only=varying)
    nxt = [estimate_kernel(hw, w) for w in works]
    return fixed, [_Affine(t0, t1) for t0, t1 in zip(base, nxt, strict=True)]


def estimate_analytical(
    prefill: Graph,
    decode: Graph,
    hw: HardwareModel,
    workload: Workload,
    labels: dict[str, str],
    exact: bool = False,
) -> dict[str, object]:
    """Return the report (DESIGN.md keys) of one request on a GPU or CPU model."""
    dtype = DType.F16 if isinstance(hw, GpuModel) else DType.F32
    weights = deployed_weight_bytes(decode)
    _check_capacity(hw, decode, weights, workload)
    prefill = [_step(t) for t in _time_graph(hw, prefill, {"T": workload.prompt_len}, dtype)]
    if exact:
        steps = decode_timings(hw, decode, workload, dtype, exact)
        table = StepTable.of_records(prefill, steps)
    else:
        fixed, lines = _decode_lines(hw, decode, workload, dtype)
        table = StepTable.of_lines(prefill, fixed, lines, workload.gen_len)
    prefill_s = sum(t.time_s for t in prefill)
    step_s = [sum(row) for row in table.time_s.tolist()]
    decode_s = sum(step_s)
    total_s = prefill_s + decode_s
    utilization = {
        "compute": table.total("compute_share") / total_s,
        "memory_bandwidth": table.total("memory_share") / total_s,
    }
    return request_report(
        labels, workload, prefill_s, step_s[0], decode_s, table.total("energy_j"), weights,
        utilization, table.breakdown(),
    )  # fmt: skip


BOUNDS = ("compute", "memory", "launch")
QUANTITIES = ("time_s", "energy_j", "compute_share", "memory_share")


@dataclass(frozen=True)
class StepTable:
    """A request's kernel timings: the prefill kernels' records, then the decode steps as
    [steps, kernels] arrays (the records of 512 steps of a 7B model would be half a million).

    `total` and `breakdown` add up values in the order of the records (prefill kernels, then
    step by step each step's kernels), so their sums are bit for bit those over the records.
    Columns: kernels whose timing does not depend on the KV length, then the others.
    """

    prefill: list[StepTiming]
    classes: list[str]  # op class of each decode column
    time_s: np.ndarray  # [steps, kernels]
    energy_j: np.ndarray
    compute_share: np.ndarray  # executed ops over the peak: seconds at peak
    memory_share: np.ndarray  # bytes over the peak bandwidth
    bound: np.ndarray  # index in BOUNDS

    @classmethod
    def of_records(cls, prefill: list[StepTiming], steps: list[list[StepTiming]]) -> StepTable:
        """Return the table of per-step records (every step lists the same kernels)."""
        rows = [[_values(t) for t in step] for step in steps]
        columns = np.array(rows, dtype=object).transpose(2, 0, 1)
        arrays = [np.array(c.tolist(), float) for c in columns[:4]]
        bound = np.array(columns[4].tolist(), np.int64)
        return cls(prefill, [t.op_class for t in steps[0]], *arrays, bound)

    @classmethod
    def of_lines(
        cls, prefill: list[StepTiming], fixed: list[StepTiming], lines: list, n_steps: int
    ) -> StepTable:
        """Return the table of constant kernels and affine ones (`_Affine`) over n_steps."""
        i = np.arange(n_steps)
        out = {q: np.empty((n_steps, len(fixed) + len(lines))) for q in QUANTITIES}
        bound = np.empty((n_steps, len(fixed) + len(lines)), np.int64)
        for k, t in enumerate(fixed):
            for q, value in zip(QUANTITIES, _values(t)[:4], strict=True):
                out[q][:, k] = value
            bound[:, k] = BOUNDS.index(t.bound)
        for k, line in enumerate(lines, start=len(fixed)):
            columns = line.over(i)
            for q in QUANTITIES:
                out[q][:, k] = columns[q]
            bound[:, k] = columns["bound"]
        classes = [t.op_class for t in fixed] + [line.t0.op_class for line in lines]
        return cls(prefill, classes, *(out[q] for q in QUANTITIES), bound)

    def total(self, quantity: str) -> float:
        """Return the sum of one quantity over every kernel run, in record order."""
        first = [_values(t)[QUANTITIES.index(quantity)] for t in self.prefill]
        return sum(first + getattr(self, quantity).ravel().tolist())

    def breakdown(self) -> list[dict[str, object]]:
        """Return time and energy per op class, largest first, with the bound that holds most
        of the class's time."""
        order = list(dict.fromkeys([t.op_class for t in self.prefill] + self.classes))
        col_class = np.array([order.index(c) for c in self.classes], np.int64)
        rows = []
        for index, name in enumerate(order):
            mine = [t for t in self.prefill if t.op_class == name]
            cols = col_class == index
            time_s = sum([t.time_s for t in mine] + self.time_s[:, cols].ravel().tolist())
            energy = sum([t.energy_j for t in mine] + self.energy_j[:, cols].ravel().tolist())
            rows.append({"name": name, "time_s": time_s, "energy_j": energy,
                         "bound": self._bound(mine, cols)})  # fmt: skip
        return sorted(rows, key=lambda r: -r["time_s"])

    def _bound(self, mine: list[StepTiming], cols: np.ndarray) -> str:
        """Return the bound holding the most time of one class; ties go to the bound seen
        first in record order."""
        first_seen, seconds = {}, {}
        n = len(mine)
        for code, bound in enumerate(BOUNDS):
            picked = [t.time_s for t in mine if t.bound == bound]
            where = self.bound[:, cols] == code
            flat = np.flatnonzero(where.ravel())
            if not picked and not len(flat):
                continue
            first = next((k for k, t in enumerate(mine) if t.bound == bound), None)
            first_seen[bound] = first if first is not None else n + int(flat[0])
            seconds[bound] = sum(picked + self.time_s[:, cols][where].tolist())
        ranked = sorted(seconds, key=first_seen.get)
        return max(ranked, key=seconds.get)


def _values(t: StepTiming) -> tuple[float, float, float, float, int]:
    """Return a record's (time, energy, compute share, memory share, bound index)."""
    return (t.time_s, t.energy_j, t.flops_executed / t.peak_ops_per_s,
            t.bytes_moved / t.peak_bandwidth_bytes_per_s, BOUNDS.index(t.bound))  # fmt: skip


def request_report(
    labels: dict[str, str],
    workload: Workload,
    prefill_s: float,
    first_step_s: float,
    decode_s: float,
    energy_j: float,
    weight_bytes: int,
    utilization: dict[str, float],
    rows: list[dict[str, object]],
) -> dict[str, object]:
    """Return the report record of DESIGN.md from a request's modelled times and energy."""
    tokens = workload.batch * workload.gen_len
    total_s = prefill_s + decode_s
    return {
        **labels,
        "batch": workload.batch,
        "prompt_len": workload.prompt_len,
        "gen_len": workload.gen_len,
        "prefill_latency_s": prefill_s,
        "decode_first_step_s": first_step_s,
        "decode_mean_step_s": decode_s / workload.gen_len,
        "decode_tokens_per_s": tokens / decode_s,
        "e2e_latency_s": total_s,
        "energy_j": energy_j,
        "energy_per_token_j": energy_j / tokens,
        "tokens_per_j": tokens / energy_j,
        "avg_power_w": energy_j / total_s,
        "weight_bytes": weight_bytes,
        "utilization": utilization,
        "breakdown": rows,
    }
