"""Plot an estimate report: time and energy by op class, and a roofline with the model's layers.

Works for every target's report (FPGA event simulation or GPU/CPU analytical model): the
first two panels read the report's `breakdown`; the roofline uses the device's peak matrix
throughput and memory bandwidth and places each linear/attention node of the decode graph
(at KV length = prompt_len) at its arithmetic intensity, on the roofline (attainable
performance), so the plot shows which layers are memory-bound on the device.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sparseflow.hw_models.schema import FpgaModel, HardwareModel
from sparseflow.ir.dtypes import DType
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op
from sparseflow.simulator.analytical import dram_bandwidth, matrix_peak
from sparseflow.simulator.graph_work import graph_works

MATRIX_NODE_OPS = (Op.LINEAR, Op.MATMUL)


def device_peaks(hw: HardwareModel) -> tuple[float, float]:
    """Return (peak matrix ops/s in INT8, a MAC counting 2; peak memory bytes/s)."""
    if isinstance(hw, FpgaModel):
        return 2 * hw.peak_int8_macs_per_s, hw.hbm.bandwidth_bytes_per_s
    return matrix_peak(hw, DType.I8), dram_bandwidth(hw)


def layer_points(decode: Graph, prompt_len: int) -> list[tuple[str, float, float]]:
    """Return (layer kind, FLOPs, bytes) of each linear and matmul node of the decode graph."""
    points = []
    for work in graph_works(decode, {"L": prompt_len}, DType.I8):
        if decode.node(work.name).op in MATRIX_NODE_OPS:
            moved = (
                work.stored_weight_bytes
                + work.activation_bytes_read
                + work.bytes_written
                + work.kv_bytes_read
            )
            points.append((work.name.rsplit(".", 1)[-1], work.flops * work.density, moved))
    return points


def plot_report(
    report: dict, path: str | Path, hw: HardwareModel, decode: Graph | None = None
) -> Path:
    """Write a PNG: time and energy by op class, and the roofline with the decode layers."""
    rows = report["breakdown"]
    names = [r["name"] for r in rows]
    fig, (ax_t, ax_e, ax_r) = plt.subplots(1, 3, figsize=(15, 4.5))
    ax_t.barh(names, [r["time_s"] * 1e3 for r in rows], color="tab:blue")
    ax_t.set_xlabel("time (ms)")
    ax_t.set_title("latency by op class")
    ax_e.barh(names, [r["energy_j"] for r in rows], color="tab:orange")
    ax_e.set_xlabel("energy (J)")
    ax_e.set_title("energy by op class")
    _roofline(ax_r, hw, decode, report["prompt_len"])
    fig.suptitle(
        f"{report['model']} on {report['target']} ({report['recipe']}): prompt "
        f"{report['prompt_len']}, generate {report['gen_len']}; "
        f"{report['decode_tokens_per_s']:.1f} tok/s, {report['avg_power_w']:.1f} W"
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _roofline(ax: plt.Axes, hw: HardwareModel, decode: Graph | None, prompt_len: int) -> None:
    peak_ops, bandwidth = device_peaks(hw)
    ridge = peak_ops / bandwidth
    xs = [ridge / 1000, ridge, ridge * 100]
    ax.loglog(xs, [min(peak_ops, x * bandwidth) for x in xs], color="black", label="roofline")
    if decode is not None:
        kinds: dict[str, tuple[float, float]] = {}
        for kind, flops, moved in layer_points(decode, prompt_len):
            kinds.setdefault(kind, (flops, moved))
        for kind, (flops, moved) in kinds.items():
            intensity = flops / moved
            ax.scatter(intensity, min(peak_ops, intensity * bandwidth), label=kind, zorder=3)
    ax.set_xlabel("arithmetic intensity (ops/byte)")
    ax.set_ylabel("attainable ops/s")
    ax.set_title(f"roofline of {hw.name} (decode layers)")
    ax.legend(fontsize=7)
