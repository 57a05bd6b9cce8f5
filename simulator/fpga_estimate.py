"""`estimate` for FPGA targets: run the compiled program's length buckets on the event engine.

A request = the prefill bucket serving the prompt, then `gen_len` decode steps; step i runs
the decode bucket serving KV length prompt_len + i + 1 (the cache after appending the step's
token). Length-adaptive compilation makes every length inside a bucket run the bucket's
program, so each distinct bucket is simulated once and its result reused for every step it
serves. `estimate_fpga` compiles lazily (each bucket lowered when it runs, then dropped) and
runs buckets block by block (`fpga_blocks`: priced instructions and epochs shared across
buckets); `estimate_program(..., reuse=False)` is the full reference path, every epoch of
every bucket instruction by instruction, and the two agree in every report number.

Time by op class: every instant of a bucket's run is charged to the instruction that
completes next on any core (the one the run was waiting on), so the classes add up to the
run's time; epochs (runs between barriers) follow each other, so each is charged from its own
start, and the gap before an epoch's first completion goes to that instruction (absolute
times would round differently on each path and reorder ties). An instruction's class comes
from what it touches: loads by the HBM region they read (weight -> linear, kv -> attention,
others -> data), matrix instructions by the last weight-buffer load before them, SFU
instructions by their function (DEQUANT and QUANTIZE by the matrix instruction before them).
Power (`simulator.power`): the design's resources (`backends.fpga.resources`) at the units'
measured activity plus traffic; energy by class = its instructions' traffic and SFU energy +
the rest of the power x its time (a SYS instruction's energy, fetching its word, goes to
data). The report has the keys of DESIGN.md "Report", like `estimate.estimate_analytical`,
plus `resources`, `avg_power_w_range` (the power at the low and high ends of the hardware
model's coefficient bands), `power_w` and `energy_split_j` by component.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.fpga.program import Bucket, HbmLayout, Program
from sparseflow.backends.fpga.resources import check_fit, estimate_resources, transfer_key
from sparseflow.backends.memory import deployed_weight_bytes, kv_cache_bytes
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.schema import FpgaModel
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import OpClass
from sparseflow.simulator.energy import EnergyEvents, dynamic_energy
from sparseflow.simulator.estimate import Workload, request_report
from sparseflow.simulator.fpga_blocks import BlockRunner, ChargeSum, charge_epoch
from sparseflow.simulator.fpga_costs import FpgaMachine
from sparseflow.simulator.fpga_engine import N_UNITS, ReuseCache, SimResult, simulate_streams
from sparseflow.simulator.power import CORNERS, run_power
from sparseflow.simulator.trace import trace_events, write_trace

# The classes FPGA time is charged to; instructions carry a class as its index here (arrays).
OP_CLASSES = (OpClass.LINEAR, OpClass.ATTENTION, OpClass.NORM, OpClass.ELEMENTWISE, OpClass.DATA)
INDEX = {op_class: i for i, op_class in enumerate(OP_CLASSES)}
REGION_CLASS = {"weight": INDEX[OpClass.LINEAR], "kv": INDEX[OpClass.ATTENTION]}
SFU_CLASS = {
    isa.SfuOp.SOFTMAX: INDEX[OpClass.ATTENTION],
    isa.SfuOp.MASK: INDEX[OpClass.ATTENTION],
    isa.SfuOp.RMSNORM: INDEX[OpClass.NORM],
    isa.SfuOp.LAYERNORM: INDEX[OpClass.NORM],
}
DATA = INDEX[OpClass.DATA]
# Conversions around a matrix op (int32 -> FP16, FP16 -> INT8) belong to that op's class.
SFU_CONVERSIONS = (isa.SfuOp.DEQUANT, isa.SfuOp.DEQUANT_BIAS, isa.SfuOp.QUANTIZE)
UNIT_BOUND = {
    int(isa.Queue.LOAD): "memory",
    int(isa.Queue.STORE): "memory",
    int(isa.Queue.MATRIX): "compute",
    int(isa.Queue.SFU): "sfu",
}


@dataclass(frozen=True)
class BucketRun:
    """One bucket's simulated run, summarised for a report (`result`: with timelines)."""

    time_s: float
    events: EnergyEvents
    class_time_s: np.ndarray  # [len(OP_CLASSES)]
    class_dynamic_j: np.ndarray  # [len(OP_CLASSES)]
    class_bound_s: dict[tuple[int, str], float]  # (class, bound) -> seconds
    busy_s: np.ndarray  # [N_UNITS] seconds each unit had work in flight, all cores
    buffer_bytes: np.ndarray  # [len(isa.Buffer)] bytes LOAD/STORE moved per buffer
    bucket: Bucket | None = None
    result: SimResult | None = None

    @property
    def macs(self) -> float:
        return self.events.int8_macs + self.events.int4_macs


def run_bucket(
    bucket: Bucket, regions: RegionIndex, hw: FpgaModel, cache: ReuseCache, reuse: bool = True
) -> BucketRun:
    """Simulate one bucket instruction by instruction (`reuse`: each distinct epoch once) and
    charge its time and energy to op classes."""
    result = simulate_streams(list(bucket.streams), cache.machine, reuse=reuse, cache=cache)
    dyn_j = np.zeros(len(OP_CLASSES))
    classes = []
    for core, stream in enumerate(bucket.streams):
        classes.append(instruction_classes(stream.table(), regions))
        # SYS: fetching it, charged to data
        dyn_j += class_energy(classes[-1], result.streams[core].ids, cache, hw)
    total = ChargeSum(len(OP_CLASSES))
    for offset, rows, timelines in result.epochs:
        cuts = [slice(a, b) for a, b in rows]
        units = [u[cut] for u, cut in zip(result.units, cuts, strict=True)]
        owned = [c[cut] for c, cut in zip(classes, cuts, strict=True)]
        ends = [t.end_s for t in timelines]
        total.add(charge_epoch(ends, units, owned, len(OP_CLASSES)), offset)
    return BucketRun(result.time_s, result.events, total.class_time_s, dyn_j,
                     _bounds(total.pair_time_s), result.busy_s.sum(axis=0),
                     bucket_buffer_bytes(bucket), bucket, result)  # fmt: skip


def run_blocks(bucket: Bucket, runner: BlockRunner) -> BucketRun | None:
    """Simulate one bucket block by block (`fpga_blocks`); None if it cannot be."""
    run = runner.run(bucket)
    if run is None:
        return None
    return BucketRun(run.time_s, runner.events(run), run.class_time_s, run.class_dynamic_j,
                     _bounds(run.pair_time_s), run.busy_s, bucket_buffer_bytes(bucket))  # fmt: skip


def bucket_buffer_bytes(bucket: Bucket) -> np.ndarray:
    """Return the bytes the bucket's LOADs and STOREs move, per on-chip buffer."""
    moved = np.zeros(len(isa.Buffer))
    for block in (b for stream in bucket.streams for b in stream.blocks):
        cols = block.cols
        moves = (cols["opcode"] == isa.Opcode.LOAD) | (cols["opcode"] == isa.Opcode.STORE)
        moved += np.bincount(
            cols["buffer"][moves], weights=cols["nbytes"][moves], minlength=len(isa.Buffer)
        )
    return moved


def _bounds(per_pair: np.ndarray) -> dict[tuple[int, str], float]:
    """Return (class, bound) -> seconds from seconds per (class, unit) pair."""
    bound: Counter = Counter()
    for pair in np.flatnonzero(per_pair).tolist():
        bound[pair // N_UNITS, UNIT_BOUND[pair % N_UNITS]] += float(per_pair[pair])
    return dict(bound)


class RegionIndex:
    """Find the op class of HBM addresses: per channel, region starts and their classes."""

    def __init__(self, layout: HbmLayout) -> None:
        self.by_channel: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        per_channel: dict[int, list[tuple[int, str]]] = {}
        for r in layout.regions:
            per_channel.setdefault(r.channel, []).append((r.addr, r.kind))
        for channel in range(layout.channels):
            regions = sorted(per_channel.get(channel, []))
            starts = np.array([addr for addr, _ in regions], np.int64)
            kinds = np.array([REGION_CLASS.get(kind, DATA) for _, kind in regions], np.int64)
            self.by_channel[channel] = (starts, kinds)

    def classes(self, channels: np.ndarray, addrs: np.ndarray) -> np.ndarray:
        """Return the op class of each (channel, word address) read."""
        out = np.full(len(channels), DATA, np.int64)
        for channel in np.unique(channels).tolist():
            starts, kinds = self.by_channel[channel]
            if not len(starts):
                continue
            rows = np.flatnonzero(channels == channel)
            at = np.searchsorted(starts, addrs[rows], side="right") - 1
            out[rows] = np.where(at >= 0, kinds[np.maximum(at, 0)], DATA)
        return out


def instruction_classes(table: dict[str, np.ndarray], regions: RegionIndex) -> np.ndarray:
    """Return each instruction's op class index (see the module docstring)."""
    opcode = table["opcode"]
    classes = np.full(len(opcode), DATA, np.int64)
    load = opcode == isa.Opcode.LOAD
    classes[load] = regions.classes(table["channel"][load], table["hbm_addr"][load])
    sfu = np.flatnonzero(opcode == isa.Opcode.SFU)
    elementwise = INDEX[OpClass.ELEMENTWISE]
    by_op = np.array([SFU_CLASS.get(op, elementwise) for op in isa.SfuOp], np.int64)
    classes[sfu] = by_op[table["op"][sfu]]
    matrix = (opcode == isa.Opcode.MM) | (opcode == isa.Opcode.MV)
    classes[matrix] = INDEX[OpClass.LINEAR]
    weight_load = load & (table["buffer"] == isa.Buffer.WEIGHT)
    _inherit(classes, matrix, weight_load)
    conversion = (opcode == isa.Opcode.SFU) & np.isin(table["op"], SFU_CONVERSIONS)
    _inherit(classes, conversion, matrix)
    return classes


def _inherit(classes: np.ndarray, takers: np.ndarray, givers: np.ndarray) -> None:
    """Give each taker the class of the last giver before it in the stream (if any)."""
    last = np.maximum.accumulate(np.where(givers, np.arange(len(classes)), -1))
    fed = takers & (last >= 0)
    classes[fed] = classes[last[fed]]


def class_energy(
    classes: np.ndarray, ids: np.ndarray, cache: ReuseCache, hw: FpgaModel
) -> np.ndarray:
    """Return dynamic joules per op class of the instructions (`ids` into cache.costs)."""
    per_cost = np.array([dynamic_energy(hw, c.events).total_j for c in cache.costs])
    return np.bincount(classes, weights=per_cost[ids], minlength=len(OP_CLASSES))


def check_fits(hw: FpgaModel, decode: Graph, workload: Workload) -> None:
    """Raise InputError naming the field when weights and the KV cache overflow the HBM."""
    weights = deployed_weight_bytes(decode)
    kv = kv_cache_bytes(decode, workload.prompt_len + workload.gen_len, 1)
    capacity = hw.hbm.capacity_bytes
    if weights + kv > capacity:
        raise InputError(
            f"{hw.source_file or hw.name}: field 'hbm.bytes_per_channel': {hw.hbm.channels} "
            f"channels x {hw.hbm.bytes_per_channel} bytes = {capacity} cannot hold the model: "
            f"weights {weights} + KV cache {kv} bytes"
        )


def check_program_fits(hw: FpgaModel, program_bytes: int) -> None:
    """Raise InputError naming the field when the instruction streams overflow the DDR."""
    if program_bytes > hw.ddr.capacity_bytes:
        raise InputError(
            f"{hw.source_file or hw.name}: field 'ddr.capacity_bytes': {hw.ddr.capacity_bytes} "
            f"bytes of DDR cannot hold the program's {program_bytes} instruction bytes"
        )


def estimate_fpga(
    prefill: Graph,
    decode: Graph,
    hw: FpgaModel,
    workload: Workload,
    labels: dict[str, str],
    trace_path: str | Path | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Compile the graphs for `hw` and return the report (DESIGN.md keys) of one request.

    The request has `gen_len` decode steps, as `estimate_analytical` counts them, so the
    program is compiled for KV lengths up to prompt_len + gen_len. With `trace_path`, also
    write the trace of the prefill and the first decode step (`trace.write_trace`).
    `progress` shows a bar over the simulated length buckets on a terminal.
    """
    check_fits(hw, decode, workload)
    check_fit(hw)  # the design must fit the part: refused before any simulation
    request = CompileRequest(
        prefill, decode, hw, workload.batch, workload.prompt_len, workload.gen_len + 1
    )
    program = compile_program(request, lazy=True)
    weight_bytes = deployed_weight_bytes(decode)
    return estimate_program(
        program, hw, workload, labels, weight_bytes, trace_path=trace_path, progress=progress
    )


def estimate_program(
    program: Program,
    hw: FpgaModel,
    workload: Workload,
    labels: dict[str, str],
    weight_bytes: int,
    reuse: bool = True,
    trace_path: str | Path | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Return the report (DESIGN.md keys) of one request running `program` on `hw`.

    With `reuse`, each bucket runs block by block, each distinct epoch once (`fpga_blocks`);
    without, every bucket runs instruction by instruction in one event loop (the reference).
    """
    cache = ReuseCache(FpgaMachine.from_hw(hw, program.engine, program.buffers))
    regions = RegionIndex(program.layout)
    runner = BlockRunner(
        cache,
        lambda cols: instruction_classes(cols, regions),
        len(OP_CLASSES),
        lambda cost: dynamic_energy(hw, cost.events).total_j,
    )
    lengths = [workload.prompt_len + i + 1 for i in range(workload.gen_len)]
    first_length = program.bucket_length("decode", lengths[0])
    traced_runs = {("prefill", workload.prompt_len), ("decode", first_length)}

    program_bytes = [0]
    steps = Counter(program.bucket_length("decode", n) for n in lengths)
    bar = tqdm(total=1 + len(steps), desc="buckets", disable=not progress, leave=False)

    def run(phase: str, length: int) -> BucketRun:
        bucket = program.bucket_for(phase, length)
        program_bytes[0] += bucket.nbytes
        traced = trace_path is not None and (phase, length) in traced_runs
        fast = run_blocks(bucket, runner) if reuse and not traced else None
        bar.update(1)
        return fast or run_bucket(bucket, regions, hw, cache, reuse)

    with bar:
        prefill = run("prefill", workload.prompt_len)
        runs = {length: run("decode", length) for length in steps}
    first = runs[first_length]
    check_program_fits(hw, program_bytes[0])
    if trace_path is not None:
        write_trace(trace_path, request_trace([("prefill", prefill), ("decode step 1", first)]))
    weighted = [(prefill, 1)] + [(runs[length], n) for length, n in steps.items()]
    return _report(hw, workload, labels, weight_bytes, prefill, first, weighted)


def request_trace(phases: list[tuple[str, BucketRun]]) -> list[dict]:
    """Return trace events of consecutive bucket runs (one track per core x unit)."""
    mnemonics = {int(code): code.name for code in isa.Opcode}
    return trace_events(
        [(label, run.result, [s.opcodes for s in run.bucket.streams]) for label, run in phases],
        mnemonics,
    )


def _report(
    hw: FpgaModel,
    workload: Workload,
    labels: dict[str, str],
    weight_bytes: int,
    prefill: BucketRun,
    first: BucketRun,
    weighted: list[tuple[BucketRun, int]],
) -> dict[str, object]:
    decode_s = sum(run.time_s * n for run, n in weighted[1:])
    total_s = prefill.time_s + decode_s
    events = _summed_events(weighted)
    busy = sum(run.busy_s * n for run, n in weighted)
    unit_busy_s = {q.name.lower(): float(busy[int(q)]) for q in isa.Queue}
    moved = sum(run.buffer_bytes * n for run, n in weighted)
    buffer_bytes = {transfer_key(b): float(moved[int(b)]) for b in isa.Buffer}
    resources = estimate_resources(hw)
    watts = {
        c: run_power(hw, resources, unit_busy_s, buffer_bytes, events, total_s, c) for c in CORNERS
    }
    macs = sum(run.macs * n for run, n in weighted)
    hbm_bytes = sum(run.events.hbm_bytes * n for run, n in weighted)
    machine = FpgaMachine.from_hw(hw)
    peak_macs_per_s = hw.cores * machine.macs_per_issue * hw.clock_hz
    utilization = {
        "compute": macs / (peak_macs_per_s * total_s),
        "memory_bandwidth": hbm_bytes / (hw.hbm.bandwidth_bytes_per_s * total_s),
    }
    power_w = sum(watts["nominal"].values())
    untimed_w = power_w - sum(watts["nominal"][k] for k in ("hbm", "ddr", "sfu"))
    report = request_report(
        labels, workload, prefill.time_s, first.time_s, decode_s, power_w * total_s,
        weight_bytes, utilization, _breakdown(untimed_w, weighted),
    )  # fmt: skip
    split = {f"{k}_j": w * total_s for k, w in watts["nominal"].items()}
    return {
        **report,
        "avg_power_w_range": [sum(watts["low"].values()), sum(watts["high"].values())],
        "power_w": watts["nominal"],
        "energy_split_j": {**split, "total_j": power_w * total_s},
        "resources": resources.to_dict(),
    }


def _summed_events(weighted: list[tuple[BucketRun, int]]) -> EnergyEvents:
    names = EnergyEvents.__dataclass_fields__
    return EnergyEvents(
        **{k: sum(getattr(run.events, k) * n for run, n in weighted) for k in names}
    )


def _breakdown(untimed_w: float, weighted: list[tuple[BucketRun, int]]) -> list[dict[str, object]]:
    """Return rows per op class: events' energy + the power not priced per event x time."""
    time_s = sum(run.class_time_s * n for run, n in weighted)
    dyn_j = sum(run.class_dynamic_j * n for run, n in weighted)
    bound: Counter = Counter()
    for run, n in weighted:
        for key, seconds in run.class_bound_s.items():
            bound[key] += seconds * n
    rows = []
    for cls, name in enumerate(OP_CLASSES):
        if time_s[cls] == 0 and dyn_j[cls] == 0:
            continue
        bounds = {b: s for (c, b), s in bound.items() if c == cls}
        rows.append(
            {
                "name": name.value,
                "time_s": float(time_s[cls]),
                "energy_j": float(dyn_j[cls] + untimed_w * time_s[cls]),
                "bound": max(bounds, key=bounds.get) if bounds else "compute",
            }
        )
    return sorted(rows, key=lambda r: -r["time_s"])
