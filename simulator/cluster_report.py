"""Compose the stage runs of a multi-device request into one report (`simulator.cluster`).

Pipeline timing, energy, utilisation, per-device rows and the breakdown with its
communication row follow the formulas of `simulator.cluster`'s docstring.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from sparseflow.hw_models.schema import HardwareModel, LinkSpec
from sparseflow.ir.ops import Op
from sparseflow.simulator.collectives import CollectiveWork, link_energy_j, send_time_s
from sparseflow.simulator.estimate import Workload, request_report

if TYPE_CHECKING:
    from sparseflow.simulator.cluster import StageRun


class Pipeline:
    """The critical path of a request over the stages (see `simulator.cluster`)."""

    def __init__(self, hw: HardwareModel, workload: Workload, runs: list[StageRun]) -> None:
        self.hw, self.workload, self.runs = hw, workload, runs
        self.link: LinkSpec | None = hw.link
        self.m = hw.parallel.micro_batches
        self.pre_comm = np.array([self.comm_s(r.prefill_comm, r) for r in runs])
        self.dec_comm = np.array([self.comm_s(r.decode_comm, r) for r in runs])
        self.pre = np.array([r.prefill_s for r in runs]) + self.pre_comm
        self.dec = np.stack([r.decode_s for r in runs]) + self.dec_comm[:, None]
        self.w_pre = self.weights(int(np.argmax(self.pre)))
        self.w_dec = self.weights(int(np.argmax(self.dec.sum(axis=1))))
        self.send_pre = sum(self.send_s(r.send_bytes[0]) for r in runs[1:])
        self.send_dec = sum(self.send_s(r.send_bytes[1]) for r in runs[1:])

    def comm_s(self, works: tuple[CollectiveWork, ...], run: StageRun) -> float:
        launch = run.extras["launch_s"]
        return sum(w.time_s(self.link, launch) for w in works) if works else 0.0

    def send_s(self, nbytes: float) -> float:
        return send_time_s(self.link, nbytes) if nbytes else 0.0

    def weights(self, slowest: int) -> np.ndarray:
        """Return how often each stage's time lies on the critical path of a phase."""
        w = np.ones(len(self.runs))
        w[slowest] += self.m - 1
        return w

    @property
    def prefill_s(self) -> float:
        return float(self.w_pre @ self.pre) + self.send_pre

    @property
    def steps_s(self) -> np.ndarray:
        return self.w_dec @ self.dec + self.send_dec

    def busy_s(self, s: int) -> float:
        """Return the time device group `s` computes or exchanges, all micro-batches."""
        return self.m * float(self.pre[s] + self.dec[s].sum())


def cluster_report(
    hw: HardwareModel, workload: Workload, labels: dict[str, str], runs: list[StageRun]
) -> dict[str, object]:
    """Return the report of DESIGN.md (plus parallel, communication, devices) of `runs`."""
    pipe = Pipeline(hw, workload, runs)
    tp, m = hw.parallel.tp, pipe.m
    steps = pipe.steps_s
    total_s = pipe.prefill_s + float(steps.sum())
    comm = communication(pipe)
    idle_j = sum(
        tp * r.static_power_w * max(0.0, total_s - pipe.busy_s(s)) for s, r in enumerate(runs)
    )
    kernels_j = sum(tp * m * r.energy_j for r in runs)
    energy_j = kernels_j + comm["energy_j"] + idle_j
    devices = device_rows(hw, pipe, total_s)
    utilization = {
        key: float(np.mean([d["utilization"][key] for d in devices]))
        for key in ("compute", "memory_bandwidth")
    }
    rows = breakdown_rows(pipe, comm, idle_j)
    weight_bytes = sum(tp * r.weight_bytes for r in runs)
    report = request_report(
        labels, workload, pipe.prefill_s, float(steps[0]), float(steps.sum()), energy_j,
        weight_bytes, utilization, rows,
    )  # fmt: skip
    report["parallel"] = {
        "devices": hw.parallel.device_count, "tp": tp, "pp": hw.parallel.pp,
        "micro_batches": m, "link": hw.link.technology if hw.link else None,
    }  # fmt: skip
    report["communication"] = comm
    report["devices"] = devices
    report.update(fpga_extras(runs, tp, energy_j, total_s))
    return report


def communication(pipe: Pipeline) -> dict[str, float]:
    """Return collective and send time on the critical path, bytes sent by all devices."""
    tp, m, gen = pipe.hw.parallel.tp, pipe.m, pipe.workload.gen_len
    out = {"time_s": 0.0, "energy_j": 0.0}
    for op, key in ((Op.ALL_REDUCE, "all_reduce"), (Op.ALL_GATHER, "all_gather")):
        time_s = sent = 0.0
        for s, run in enumerate(pipe.runs):
            pre = [w for w in run.prefill_comm if w.op is op]
            dec = [w for w in run.decode_comm if w.op is op]
            launch = run.extras["launch_s"]
            time_s += pipe.w_pre[s] * sum(w.time_s(pipe.link, launch) for w in pre)
            time_s += pipe.w_dec[s] * gen * sum(w.time_s(pipe.link, launch) for w in dec)
            per_forward = sum(w.bytes_sent() for w in pre), sum(w.bytes_sent() for w in dec)
            sent += tp * m * (per_forward[0] + gen * per_forward[1])
        out[f"{key}_time_s"], out[f"{key}_bytes"] = time_s, sent
    out["send_time_s"] = pipe.send_pre + gen * pipe.send_dec
    out["send_bytes"] = tp * m * sum(r.send_bytes[0] + gen * r.send_bytes[1] for r in pipe.runs)
    out["time_s"] = out["all_reduce_time_s"] + out["all_gather_time_s"] + out["send_time_s"]
    link_bytes = out["all_reduce_bytes"] + out["all_gather_bytes"] + out["send_bytes"]
    waiting_j = sum(
        tp * m * run.wait_power_w * (pipe.pre_comm[s] + gen * pipe.dec_comm[s])
        for s, run in enumerate(pipe.runs)
    )
    out["energy_j"] = (link_energy_j(pipe.link, link_bytes) if pipe.link else 0.0) + waiting_j
    return out


def device_rows(hw: HardwareModel, pipe: Pipeline, total_s: float) -> list[dict]:
    """Return one row per device: its place, memory and utilisation over the request."""
    rows = []
    for s, run in enumerate(pipe.runs):
        for rank in range(hw.parallel.tp):
            rows.append({
                "device": len(rows), "stage": s, "tp_rank": rank, "layers": list(run.layers),
                "weight_bytes": run.weight_bytes, "kv_cache_bytes": run.kv_cache_bytes,
                "memory_bytes": run.weight_bytes + run.kv_cache_bytes,
                "memory_capacity_bytes": capacity_bytes(hw), "busy_s": pipe.busy_s(s),
                "utilization": {
                    "compute": pipe.m * run.compute_s / total_s,
                    "memory_bandwidth": pipe.m * run.memory_s / total_s,
                },
            })  # fmt: skip
    return rows


def capacity_bytes(hw: HardwareModel) -> int:
    """Return the memory one device holds weights and KV cache in."""
    memory = getattr(hw, "memory", None)
    return memory.capacity_bytes if memory is not None else hw.hbm.capacity_bytes


def breakdown_rows(pipe: Pipeline, comm: dict, idle_j: float) -> list[dict]:
    """Return time on the critical path and energy of all devices per op class."""
    tp, m = pipe.hw.parallel.tp, pipe.m
    time_s: dict[str, float] = defaultdict(float)
    energy_j: dict[str, float] = defaultdict(float)
    bound_s: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s, run in enumerate(pipe.runs):
        for phase, weight in (("prefill", pipe.w_pre[s]), ("decode", pipe.w_dec[s])):
            for row in run.rows[phase]:
                time_s[row["name"]] += weight * row["time_s"]
                energy_j[row["name"]] += tp * m * row["energy_j"]
                bound_s[row["name"]][row["bound"]] += weight * row["time_s"]
    rows = [
        {"name": n, "time_s": time_s[n], "energy_j": energy_j[n],
         "bound": max(bound_s[n], key=bound_s[n].get)}
        for n in time_s
    ]  # fmt: skip
    rows.append({"name": "communication", "time_s": comm["time_s"],
                 "energy_j": comm["energy_j"], "bound": "link"})  # fmt: skip
    if idle_j > 0:
        rows.append({"name": "idle", "time_s": 0.0, "energy_j": idle_j, "bound": "idle"})
    return sorted(rows, key=lambda r: -r["time_s"])


def fpga_extras(runs: list[StageRun], tp: int, energy_j: float, total_s: float) -> dict:
    """Return one card's resources and the cluster's power band (FPGA targets; else {}):
    each card's band around its nominal power, over the time it runs."""
    local = [r.extras.get("fpga") for r in runs]
    if local[0] is None:
        return {}
    band = [
        energy_j + sum(tp * (r["avg_power_w_range"][i] - r["avg_power_w"]) * r["e2e_latency_s"]
                       for r in local)
        for i in (0, 1)
    ]  # fmt: skip
    return {"resources": local[0]["resources"], "avg_power_w_range": [b / total_s for b in band]}
