"""`estimate` for GPU and CPU targets: a request's latency, throughput, energy and bottlenecks.

A pure function of (compressed prefill graph, compressed decode graph, hardware model,
workload): no global state, cheap to call many times (design-space sweeps, calibration).
`prepare_request` turns the graphs into kernel works once; `estimate_prepared` times them on
a hardware model, so a fit that varies a device's efficiencies reuses the works. The prefill
graph runs once over the prompt; the decode graph runs `gen_len` times with the KV length
growing from `prompt_len`. Kernels whose cost does not depend on the KV length are timed
once; the others have FLOPs, bytes and event energies affine in the KV length, so they are
timed at two lengths and every step follows exactly (`exact=True` times every step in full;
the tests compare both).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

import numpy as np

from sparseflow.backends.memory import check_capacity, deployed_weight_bytes
from sparseflow.backends.runner import check_request
from sparseflow.hw_models.schema import CpuModel, GpuModel, HardwareModel
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.simulator.analytical import (
    AMOUNT_FIELDS,
    KernelTiming,
    KernelWork,
    analytical_model,
    bound_of,
    estimate_kernel,
    estimate_kernels,
    kernel_time_s,
)
from sparseflow.simulator.graph_work import graph_works


@dataclass(frozen=True)
class Workload:
    """One request: batch size, prompt length and number of generated tokens.

    An estimate reports decode steps, so it needs at least one generated token. A batch of
    different prompts gives `prompt_lens` (one per sequence; `prompt_len` is the longest)
    and says how they are batched: `ragged` (vLLM-style: prompts packed without padding,
    each sequence attending over its own cache) or padded to the longest prompt (every
    sequence computes and caches `prompt_len` positions).
    """

    batch: int = 1
    prompt_len: int = 128
    gen_len: int = 128
    prompt_lens: tuple[int, ...] = ()
    ragged: bool = True

    def __post_init__(self) -> None:
        check_request(self.batch, self.prompt_len, self.gen_len, min_gen_len=1)
        lens = self.prompt_lens
        if lens and (len(lens) != self.batch or max(lens) != self.prompt_len or min(lens) < 1):
            raise InputError(
                f"--prompt {','.join(map(str, lens))}: one length >= 1 per sequence of the "
                f"batch of {self.batch}, the longest being prompt_len {self.prompt_len}"
            )

    @property
    def lengths(self) -> tuple[int, ...]:
        """Return every sequence's prompt length as the device processes it."""
        if not self.prompt_lens or not self.ragged:
            return (self.prompt_len,) * self.batch
        return self.prompt_lens

    @property
    def is_ragged(self) -> bool:
        """Return whether the prompts differ in length and run without padding."""
        return len(set(self.lengths)) > 1

    def batching(self) -> dict[str, object]:
        """Return the report's record of how the batch's prompts are processed."""
        given = self.prompt_lens or (self.prompt_len,) * self.batch
        computed = sum(self.lengths)
        return {
            "mode": "ragged" if self.ragged else "padded",
            "prompt_lens": list(given),
            "prompt_tokens": sum(given),
            "prefill_tokens": computed,
            "padding_fraction": 1 - sum(given) / computed,
            "first_step_kv_tokens": computed,
        }


@dataclass(frozen=True)
class PreparedRequest:
    """A request's kernel works on one device kind, ready to time on any model of that kind.

    decode_first / decode_next: the KV-length-dependent decode kernels at KV length
    prompt_len and prompt_len + 1 (`decode_graph` keeps the graph for exact timing).
    `fuse`: kernels are grouped as serving frameworks run them (`graph_work`, GPU targets).
    """

    workload: Workload
    weight_bytes: int
    dtype: DType
    fuse: bool
    prefill: tuple[KernelWork, ...]
    decode_fixed: tuple[KernelWork, ...]
    decode_first: tuple[KernelWork, ...]
    decode_next: tuple[KernelWork, ...]
    decode_graph: Graph


def prepare_request(
    prefill: Graph, decode: Graph, hw: HardwareModel, workload: Workload
) -> PreparedRequest:
    """Return the request's kernel works on `hw`'s kind; check that the model fits `hw`."""
    check_capacity(analytical_model(hw), decode, cache_length(workload))
    return prepare_works(prefill, decode, hw, workload)


def cache_length(workload: Workload) -> int:
    """Return the KV positions per sequence the cache must hold (ragged: paged caches hold
    each sequence's own, so the mean, rounded up)."""
    return math.ceil(sum(workload.lengths) / workload.batch) + workload.gen_len


def float_dtype(hw: HardwareModel) -> DType:
    """Return the float type activations run in: fp16 on GPUs, fp32 on CPUs."""
    return DType.F16 if isinstance(analytical_model(hw), GpuModel) else DType.F32


def prepare_works(
    prefill: Graph, decode: Graph, hw: HardwareModel, workload: Workload
) -> PreparedRequest:
    """Return the request's kernel works on `hw`'s kind (no capacity check)."""
    dtype = float_dtype(hw)
    gpu = dtype is DType.F16
    weights = deployed_weight_bytes(decode)
    start = sum(workload.lengths) / workload.batch  # mean KV length of the first step
    base = math.floor(start)
    first = graph_works(decode, {"L": base}, dtype, fuse=gpu)
    following = graph_works(decode, {"L": base + 1}, dtype, fuse=gpu)
    # A kernel whose work is the same at two KV lengths does not depend on the length.
    varying = [(a, b) for a, b in zip(first, following, strict=True) if a != b]
    offset = start - base  # ragged caches: the batch's work is that of the mean length
    return PreparedRequest(
        workload=workload,
        weight_bytes=weights,
        dtype=dtype,
        fuse=gpu,
        prefill=tuple(prefill_works(prefill, workload, dtype, gpu)),
        decode_fixed=tuple(a for a, b in zip(first, following, strict=True) if a == b),
        decode_first=tuple(along(a, b, offset) for a, b in varying),
        decode_next=tuple(along(a, b, offset + 1) for a, b in varying),
        decode_graph=decode,
    )


def along(at_l: KernelWork, at_next: KernelWork, offset: float) -> KernelWork:
    """Return a KV-length-dependent kernel's work `offset` positions past `at_l` (its work
    is affine in the KV length: exact for fractional offsets too)."""
    if offset == 0:
        return at_l
    return replace(at_l, **{f: getattr(at_l, f) + offset * (getattr(at_next, f) - getattr(at_l, f))
                            for f in AMOUNT_FIELDS})  # fmt: skip


def prefill_works(prefill: Graph, workload: Workload, dtype: DType, fuse: bool) -> list[KernelWork]:
    """Return the prompt's kernel works: the batch at the longest prompt (padded), or packed
    prompts (ragged: each kernel does the sum of every sequence's work at its own length,
    reading its weights once, as vLLM's varlen kernels do; needs a prefill graph whose
    sequence length T is symbolic). A sequence's share is the batch graph's work over the
    batch size: exact but for the position vector [T] the graph's sequences share (8 bytes
    per token and reader, under 0.02% of a LLaMA prefill's bytes)."""
    if not workload.is_ragged:
        return graph_works(prefill, {"T": workload.prompt_len}, dtype, fuse=fuse)
    if isinstance(prefill.node("ids").type.shape[1], int):
        raise InputError("ragged prompts need a prefill graph of symbolic length T")
    counts = Counter(workload.lengths)
    per_length = [(graph_works(prefill, {"T": n}, dtype, fuse=fuse), c) for n, c in counts.items()]
    merged = []
    for kernels in zip(*(works for works, _ in per_length), strict=True):
        shares = [c / workload.batch for _, c in per_length]  # the graph holds the whole batch
        sums = {f: sum(s * getattr(k, f) for s, k in zip(shares, kernels, strict=True))
                for f in AMOUNT_FIELDS}  # fmt: skip
        fraction = min(
            1.0, sum(s * k.weight_fraction for s, k in zip(shares, kernels, strict=True))
        )
        merged.append(replace(kernels[0], weight_fraction=fraction, **sums))
    return merged


@dataclass(frozen=True)
class KernelSeries:
    """One kernel's timing over the steps it runs (arrays; length 1 with `repeat` when fixed).

    compute_s_at_peak / memory_s_at_peak: executed work over the peak and bytes over the peak
    bandwidth, the utilisation numerators.
    """

    op_class: str
    time_s: np.ndarray
    energy_j: np.ndarray
    bound: np.ndarray
    compute_s_at_peak: np.ndarray
    memory_s_at_peak: np.ndarray
    repeat: int = 1

    @classmethod
    def of(cls, t: KernelTiming, repeat: int = 1) -> KernelSeries:
        """Return the series of one timing, run `repeat` times."""
        return cls.stack([t], repeat)

    @classmethod
    def stack(cls, timings: list[KernelTiming], repeat: int = 1) -> KernelSeries:
        """Return the series of one kernel's timings at successive steps."""
        return cls(
            timings[0].op_class,
            np.array([t.time_s for t in timings]),
            np.array([t.energy_j for t in timings]),
            np.array([t.bound for t in timings]),
            np.array([t.flops_executed / t.peak_ops_per_s for t in timings]),
            np.array([t.bytes_moved / t.peak_bandwidth_bytes_per_s for t in timings]),
            repeat,
        )


def affine_series(
    hw: GpuModel | CpuModel, t0: KernelTiming, t1: KernelTiming, steps: int
) -> KernelSeries:
    """Return a kernel's series over `steps` decode steps from its timings at two KV lengths.

    Exact for the analytical model: FLOPs, bytes, compute and memory times and event energy
    grow affinely with the KV length; time and energy follow from them as in
    `analytical.estimate_kernel` (overlap, launch, power limit).
    """
    i = np.arange(steps)

    def line(a: float, b: float) -> np.ndarray:
        return a + (b - a) * i

    compute_s = line(t0.compute_time_s, t1.compute_time_s)
    memory_s = line(t0.memory_time_s, t1.memory_time_s)
    dynamic_j = line(t0.energy.dynamic_j, t1.energy.dynamic_j)
    time_s = kernel_time_s(hw, compute_s, memory_s, dynamic_j)
    floor_w = hw.power.static_power_w + hw.power.busy_power_w
    return KernelSeries(
        t0.op_class,
        time_s,
        dynamic_j + floor_w * time_s,
        bound_of(hw, compute_s, memory_s, dynamic_j),
        line(t0.flops_executed, t1.flops_executed) / t0.peak_ops_per_s,
        line(t0.bytes_moved, t1.bytes_moved) / t0.peak_bandwidth_bytes_per_s,
    )


def decode_series(
    hw: GpuModel | CpuModel, request: PreparedRequest, exact: bool = False
) -> list[KernelSeries]:
    """Return every decode kernel's series over the request's steps."""
    work = request.workload
    fixed = [KernelSeries.of(t, work.gen_len) for t in estimate_kernels(hw, request.decode_fixed)]
    if not exact:
        first = estimate_kernels(hw, request.decode_first)
        following = estimate_kernels(hw, request.decode_next)
        return fixed + [
            affine_series(hw, t0, t1, work.gen_len) for t0, t1 in zip(first, following, strict=True)
        ]
    if work.is_ragged:
        raise InputError("exact decode timing takes prompts of one length")
    per_step = [
        {w.name: estimate_kernel(hw, w) for w in _decode_works(request, work.prompt_len + i)}
        for i in range(work.gen_len)
    ]
    names = [w.name for w in request.decode_first]
    return fixed + [KernelSeries.stack([step[n] for step in per_step]) for n in names]


def _decode_works(request: PreparedRequest, kv_length: int) -> list[KernelWork]:
    return graph_works(request.decode_graph, {"L": kv_length}, request.dtype, fuse=request.fuse)


def estimate_prepared(
    hw: HardwareModel, request: PreparedRequest, labels: dict[str, str], exact: bool = False
) -> dict[str, object]:
    """Return the report (DESIGN.md keys) of a prepared request on a GPU or CPU model."""
    hw = analytical_model(hw)
    prefill = [KernelSeries.of(t) for t in estimate_kernels(hw, request.prefill)]
    decode = decode_series(hw, request, exact)
    prefill_s = sum(float(s.time_s[0]) for s in prefill)
    step_s = sum(np.broadcast_to(s.time_s, (request.workload.gen_len,)) for s in decode)
    every = prefill + decode
    total_s = prefill_s + float(step_s.sum())
    utilization = {
        "compute": _sum(every, "compute_s_at_peak") / total_s,
        "memory_bandwidth": _sum(every, "memory_s_at_peak") / total_s,
    }
    return request_report(
        labels, request.workload, prefill_s, float(step_s[0]), float(step_s.sum()),
        _sum(every, "energy_j"), request.weight_bytes, utilization, breakdown(every),
    )  # fmt: skip


def _sum(series: list[KernelSeries], field: str) -> float:
    return float(sum(getattr(s, field).sum() * s.repeat for s in series))


def estimate_analytical(
    prefill: Graph,
    decode: Graph,
    hw: HardwareModel,
    workload: Workload,
    labels: dict[str, str],
    exact: bool = False,
) -> dict[str, object]:
    """Return the report (DESIGN.md keys) of one request on a GPU or CPU model."""
    request = prepare_request(prefill, decode, hw, workload)
    return estimate_prepared(hw, request, labels, exact)


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
        "batching": workload.batching(),
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


def breakdown(series: list[KernelSeries]) -> list[dict[str, object]]:
    """Return time and energy per op class, largest first, with the bound that dominates."""
    time_s: dict[str, float] = defaultdict(float)
    energy_j: dict[str, float] = defaultdict(float)
    bound_s: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in series:
        time_s[s.op_class] += float(s.time_s.sum()) * s.repeat
        energy_j[s.op_class] += float(s.energy_j.sum()) * s.repeat
        for bound in np.unique(s.bound):
            seconds = float(s.time_s[s.bound == bound].sum()) * s.repeat
            bound_s[s.op_class][str(bound)] += seconds
    rows = [
        {
            "name": name,
            "time_s": time_s[name],
            "energy_j": energy_j[name],
            "bound": max(bound_s[name], key=bound_s[name].get),
        }
        for name in time_s
    ]
    return sorted(rows, key=lambda r: -r["time_s"])
