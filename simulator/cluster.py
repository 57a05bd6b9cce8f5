"""`estimate` on several devices: tensor- and pipeline-parallel mappings of one request.

Inputs: the compressed prefill and decode graphs of one micro-batch (batch / micro_batches
sequences), a hardware model whose `parallel` section names tp, pp and micro-batches and
whose `link` joins its devices, and the request (the whole batch).
- Mapping: `passes.parallel.map_devices`; the tp devices of a stage do the same work on their
  slices, so the first of each stage is timed and stands for all of them.
- A device: its kernels as on one device (GPU/CPU: the analytical model; FPGA: the event
  simulator on the card's own program, `local_program`, tensor parallelism only), then its
  collectives (`simulator.collectives`), one after the other.
- Pipeline: every phase fills and drains (GPipe); with P_s, D_s a stage's prefill and decode
  step times for one micro-batch (collectives included), m micro-batches and p stages
      prefill     = sum_s P_s + (m - 1) P_slow + (p - 1) send(hidden state of the prompt)
      decode step = sum_s D_s + (m - 1) D_slow + (p - 1) send(hidden state of one token)
  where slow is the stage with the largest total in the phase; steps do not overlap (the
  next token of a sequence needs the last).
- Memory: a device holds its weights and the KV cache of every micro-batch for its layers
  and heads; the device's capacity must hold both (InputError names the field and device).
- Energy: the devices' kernel energy, the links' energy plus static and busy power while
  devices run collectives, and static power while a device idles in pipeline bubbles.
The report has DESIGN.md's keys over the whole cluster, plus `parallel`, `communication`
(time on the critical path and bytes all devices send, by kind) and `devices` (memory and
utilisation per device); the breakdown gains `communication` (and `idle`: bubble energy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparseflow.backends.memory import FP16_BYTES, deployed_weight_bytes, kv_cache_bytes
from sparseflow.hw_models.schema import FpgaModel, HardwareModel
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op
from sparseflow.passes.parallel import DeviceGraph, local_program, map_devices
from sparseflow.passes.pipeline_parallel import received_values
from sparseflow.simulator.analytical import analytical_model, estimate_kernels
from sparseflow.simulator.cluster_report import cluster_report
from sparseflow.simulator.collectives import CollectiveWork, collective_works
from sparseflow.simulator.estimate import (
    KernelSeries,
    Workload,
    breakdown,
    cache_length,
    decode_series,
    float_dtype,
    prepare_works,
)
from sparseflow.simulator.fpga_estimate import estimate_fpga


@dataclass(frozen=True)
class StageRun:
    """The timed device of one stage, for one micro-batch over the whole request.

    prefill_s / decode_s: kernel time of the prefill and of each decode step; *_comm: the
    collectives of one forward; rows: breakdown rows (name, time_s, energy_j, bound) per
    phase; compute_s / memory_s: executed work over the peaks (utilisation numerators);
    wait_power_w: the device's power while it runs a collective; send_bytes: the hidden
    state it receives per forward (prefill, decode step).
    """

    layers: tuple[int, int]
    prefill_s: float
    decode_s: np.ndarray
    prefill_comm: tuple[CollectiveWork, ...]
    decode_comm: tuple[CollectiveWork, ...]
    energy_j: float
    rows: dict[str, list[dict]]
    compute_s: float
    memory_s: float
    weight_bytes: int
    kv_cache_bytes: int
    wait_power_w: float
    static_power_w: float
    send_bytes: tuple[float, float]
    extras: dict


def estimate_cluster(
    prefill: Graph, decode: Graph, hw: HardwareModel, workload: Workload, labels: dict[str, str]
) -> dict[str, object]:
    """Return the report of one request on `hw.parallel`'s devices (module doc)."""
    par = hw.parallel
    micro = _micro_workload(prefill, workload, par.micro_batches)
    if isinstance(hw, FpgaModel) and (par.pp > 1 or par.micro_batches > 1):
        raise InputError(
            f"--pp {par.pp} / --micro-batches {par.micro_batches}: {hw.name} cards run "
            "tensor-parallel mappings of one sequence (use --tp, with --pp 1)"
        )
    stages = zip(
        map_devices(prefill, par.tp, par.pp), map_devices(decode, par.tp, par.pp), strict=True
    )
    runs = [_stage_run(p[0], d[0], hw, micro, par.micro_batches, labels) for p, d in stages]
    return cluster_report(hw, workload, labels, runs)


def _micro_workload(prefill: Graph, workload: Workload, micro_batches: int) -> Workload:
    """Return one micro-batch's request; the graphs must be built for it."""
    if workload.batch % micro_batches:
        raise InputError(
            f"--micro-batches {micro_batches} (parallel.micro_batches) does not divide "
            f"--batch {workload.batch}"
        )
    if workload.is_ragged and micro_batches > 1:
        raise InputError(f"--micro-batches {micro_batches}: ragged prompts run as one batch")
    size = workload.batch // micro_batches
    built = prefill.node("ids").type.shape[0]
    if built != size:
        raise InputError(f"the graphs serve batch {built}, a micro-batch holds {size} sequences")
    lens = workload.prompt_lens if micro_batches == 1 else ()
    return Workload(size, workload.prompt_len, workload.gen_len, lens, workload.ragged)


def _stage_run(
    prefill: DeviceGraph, decode: DeviceGraph, hw, micro: Workload, copies: int, labels
) -> StageRun:
    layers = _layers(decode.graph)
    if isinstance(hw, FpgaModel):
        return _fpga_stage(prefill.graph, decode.graph, hw, micro, labels, layers)
    return _analytical_stage(prefill.graph, decode.graph, hw, micro, copies, layers)


def _layers(graph: Graph) -> tuple[int, int]:
    """Return the first and last layer a device graph holds."""
    numbers = {int(n.name.split(".")[1]) for n in graph.nodes_of(Op.KV_APPEND)}
    return (min(numbers), max(numbers)) if numbers else (0, -1)


def _analytical_stage(prefill, decode, hw, micro: Workload, copies: int, layers) -> StageRun:
    model = analytical_model(hw)
    weights = deployed_weight_bytes(decode)
    kv = kv_cache_bytes(decode, cache_length(micro), FP16_BYTES) * copies
    _check_device_memory(model, decode, weights, kv)
    request = prepare_works(prefill, decode, model, micro)
    pre = [KernelSeries.of(t) for t in estimate_kernels(model, request.prefill)]
    dec = decode_series(model, request)
    steps = sum(np.broadcast_to(s.time_s, (micro.gen_len,)) for s in dec)
    every = pre + dec
    dtype = float_dtype(model)
    power = model.power
    return StageRun(
        layers=layers,
        prefill_s=float(sum(s.time_s[0] for s in pre)),
        decode_s=np.asarray(steps, float),
        prefill_comm=tuple(collective_works(prefill, {"T": micro.prompt_len}, dtype)),
        decode_comm=tuple(collective_works(decode, {"L": micro.prompt_len}, dtype)),
        energy_j=_total(every, "energy_j"),
        rows={"prefill": breakdown(pre), "decode": breakdown(dec)},
        compute_s=_total(every, "compute_s_at_peak"),
        memory_s=_total(every, "memory_s_at_peak"),
        weight_bytes=weights,
        kv_cache_bytes=kv,
        wait_power_w=power.static_power_w + power.busy_power_w,
        static_power_w=power.static_power_w,
        send_bytes=_send_bytes(prefill, decode, micro, dtype),
        extras={"launch_s": model.efficiency.kernel_launch_overhead_s},
    )


def _total(series: list[KernelSeries], field: str) -> float:
    return float(sum(getattr(s, field).sum() * s.repeat for s in series))


def _check_device_memory(hw, decode: Graph, weights: int, kv: int) -> None:
    capacity = hw.memory.capacity_bytes
    if weights + kv > capacity:
        meta = decode.meta_dict
        where = f"stage {meta.get('pp_stage', 0)}, tp rank {meta.get('tp_rank', 0)}"
        raise InputError(
            f"{hw.source_file or hw.name}: field 'memory.capacity_bytes' = {capacity} cannot "
            f"hold device ({where})'s share: weights {weights} + KV cache {kv} bytes (more "
            "devices: --tp/--pp)"
        )


def _send_bytes(prefill: Graph, decode: Graph, micro: Workload, dtype: DType) -> tuple:
    """Return the bytes a stage receives per forward: (prefill, one decode step)."""
    sizes = []
    for graph, bindings in ((prefill, {"T": micro.prompt_len}), (decode, {"L": micro.prompt_len})):
        numel = sum(n.type.numel(bindings) for n in received_values(graph))
        sizes.append(numel * dtype.bits / 8)
    return sizes[0], sizes[1]


def _fpga_stage(prefill, decode, hw: FpgaModel, micro: Workload, labels, layers) -> StageRun:
    local = estimate_fpga(local_program(prefill), local_program(decode), hw, micro, labels)
    gen = micro.gen_len
    first, total = local["decode_first_step_s"], local["decode_mean_step_s"] * gen
    steps = np.full(gen, (total - first) / max(gen - 1, 1))
    steps[0] = first
    busy_s = local["e2e_latency_s"]
    dtype = DType.F16  # partial sums leave the card in the SFU's FP16
    return StageRun(
        layers=layers,
        prefill_s=local["prefill_latency_s"],
        decode_s=steps,
        prefill_comm=tuple(collective_works(prefill, {"T": micro.prompt_len}, dtype)),
        decode_comm=tuple(collective_works(decode, {"L": micro.prompt_len}, dtype)),
        energy_j=local["energy_j"],
        rows={"prefill": [], "decode": local["breakdown"]},  # one micro-batch: equal weights
        compute_s=local["utilization"]["compute"] * busy_s,
        memory_s=local["utilization"]["memory_bandwidth"] * busy_s,
        weight_bytes=local["weight_bytes"],
        kv_cache_bytes=kv_cache_bytes(decode, micro.prompt_len + gen, 1),
        wait_power_w=hw.power.static_power_w,
        static_power_w=hw.power.static_power_w,
        send_bytes=_send_bytes(prefill, decode, micro, dtype),
        extras={"launch_s": 0.0, "fpga": local},
    )
