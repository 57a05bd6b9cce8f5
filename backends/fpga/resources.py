"""Estimate the FPGA resources of an accelerator in microseconds, FINN-style.

Per core, the blocks of the generated RTL (`rtl.generator`) plus the SFU buffer the compiler
plans but the RTL does not hold (`layout.buffer_plan`):

- DSP = chains x chain length: one DSP48E2 per slice, instantiated with its cascade ports.
- Block RAM, UltraRAM and LUT RAM of every buffer: `rtl.memories.map_memory` on the memory's
  width, depth and read ports in the primitive kind the generator chose (exact: it replays
  Yosys's geometry search).
- LUT and FF of the logic of each block (a chain, the matrix engine, the controller): a
  linear function of structural counts of that block (`*_features`) with non-negative
  coefficients fitted to Yosys runs of small configurations by
  examples/calibrate_resources.py, which writes resource_costs.yaml beside this module;
  docs/fpga_resources.md has the calibration and the errors on held-out configurations.

Device totals multiply a core by `cores`. Not modelled (not in the generated RTL): the SFU
datapath, the load/store units and their HBM ports, and the vendor shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources as package_files

import yaml

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import ACC_BITS, ACT_BITS, ChainParams
from sparseflow.backends.fpga.rtl.generator import RtlParams, params_for_target
from sparseflow.backends.fpga.rtl.memories import Mapping, Memory, choose_style, map_memory
from sparseflow.hw_models.schema import FpgaModel
from sparseflow.ir.errors import InputError

KEYS = ("lut", "ff", "dsp", "bram36", "uram")
COSTS_FILE = "resource_costs.yaml"
NOT_MODELLED = ("SFU datapath", "load/store units and HBM ports", "vendor shell")
# What keeps each memory busy (simulator.power): the unit that reads or writes a whole word
# per busy cycle, and the ISA buffers whose LOAD/STORE bytes it holds. Logic follows the
# matrix unit; the controller and its instruction memory run whenever the core does.
MEMORY_USE = {
    "act": ("matrix", (isa.Buffer.ACT,)),
    "weight": ("matrix", (isa.Buffer.WEIGHT, isa.Buffer.NTABLE)),  # indices share its words
    "bias": ("matrix", (isa.Buffer.BIAS,)),
    "out": ("matrix", (isa.Buffer.OUT,)),
    "imem": ("dispatch", ()),
    "sfu": ("sfu", (isa.Buffer.SFU,)),
}
N_CODES_FROM = {2: 4, 4: 3, 8: 2, 16: 1}  # N:16 modes a chain runs, by its smallest N


@dataclass(frozen=True)
class Block:
    """Resources of one block of a core, per instance.

    `units` pairs each activity that drives the block's power (a unit's busy fraction, or a
    buffer's transferred bytes per cycle, `transfer_key`) with the share of the block one unit
    of it exercises (simulator.power).
    """

    name: str
    instances: int
    lut: float = 0.0
    ff: float = 0.0
    dsp: int = 0
    bram36: float = 0.0
    uram: int = 0
    lutram: int = 0  # LUTs used as RAM (included in `lut`)
    units: tuple[tuple[str, float], ...] = ()
    style: str = ""  # primitive kind of a buffer
    in_rtl: bool = True

    def get(self, key: str) -> float:
        """Return one resource count per instance."""
        return float(getattr(self, key))


@dataclass(frozen=True)
class ResourceReport:
    """A design's resources: blocks of one core, cores, and the device totals."""

    blocks: list[Block]
    cores: int
    device: dict[str, float]
    label: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def core_total(self) -> dict[str, float]:
        """Return one core's resources (every block times its instances)."""
        return {k: sum(b.get(k) * b.instances for b in self.blocks) for k in (*KEYS, "lutram")}

    def total(self) -> dict[str, float]:
        """Return the device-wide resources of the design."""
        return {k: v * self.cores for k, v in self.core_total().items()}

    def utilization(self) -> dict[str, float]:
        """Return each resource's share of the device."""
        total = self.total()
        return {k: total[k] / self.device[k] if self.device[k] else float("inf") for k in KEYS}

    def overflow(self) -> tuple[str, float, float] | None:
        """Return (resource, need, device total) of the first resource that does not fit."""
        total = self.total()
        for key in KEYS:
            if total[key] > self.device[key]:
                return key, total[key], self.device[key]
        return None

    def to_dict(self) -> dict[str, object]:
        """Return the report's `resources` entry (JSON-ready)."""
        rows = [
            {"name": b.name, "instances": b.instances * self.cores, "in_rtl": b.in_rtl,
             **({"style": b.style} if b.style else {}),
             **{k: b.get(k) * b.instances * self.cores for k in (*KEYS, "lutram")}}
            for b in self.blocks
        ]  # fmt: skip
        return {
            "model": "analytical, LUT/FF calibrated on Yosys (docs/fpga_resources.md)",
            "cores": self.cores,
            "device": self.device,
            "total": self.total(),
            "utilization": self.utilization(),
            "fits": self.overflow() is None,
            "blocks": rows,
            "not_modelled": list(NOT_MODELLED),
        }


def chain_features(chain: ChainParams) -> dict[str, float]:
    """Return the structural counts a chain's LUTs and FFs scale with (sf_dsp_chain.sv)."""
    groups, segs = chain.groups, chain.max_segments
    lane_bits = 2 * ACC_BITS
    return {
        "const": 1.0,
        # Sparse muxes: every slice picks 2 lanes x 8 bits among act_width inputs; an n:1
        # mux takes about (n - 1) / 3 six-input LUTs.
        "mux_luts": chain.chain_len * 2 * ACT_BITS * (chain.act_width - 1) / 3,
        "adder_bits": (groups + 2 * (groups - 1)) * ACC_BITS,  # lane split, tree adders
        "select_bits": segs * lane_bits * (N_CODES_FROM[chain.min_n] - 1),
        "stage_bits": groups * (2 * ACT_BITS + 1 + chain.wbits),  # second slice's input regs
        "tree_bits": (chain.tree_levels + 1) * groups * lane_bits,
        "latency": chain.latency_cycles,
    }


def engine_features(params: RtlParams, maps: dict[str, Mapping]) -> dict[str, float]:
    """Return the structural counts the matrix engine's own logic scales with."""
    out = next(m for m in params.memories() if m.name == "out")
    lutram_reads = sum(m.memory.width_bits * m.memory.read_ports for m in maps.values() if m.luts)
    return {
        "const": 1.0,
        "out_bits": out.width_bits,  # accumulators, finish adders, output registers
        "mux_bits": sum(m.mux_bits for m in maps.values()),  # RAM blocks' read muxes
        "lutram_read_bits": lutram_reads,  # read registers outside LUT RAMs
        "latency": params.engine.chain.latency_cycles,
    }


LOGIC_FEATURES = {
    "dsp_chain": lambda p, maps: chain_features(p.engine.chain),
    "matrix_engine": engine_features,
    "controller": lambda p, maps: {"const": 1.0},
}


@cache
def costs() -> dict:
    """Return the calibrated coefficients (resource_costs.yaml)."""
    text = package_files.files(__package__).joinpath(COSTS_FILE).read_text()
    return yaml.safe_load(text)


def logic(
    block: str, params: RtlParams, maps: dict[str, Mapping], coeffs: dict | None = None
) -> tuple[float, float]:
    """Return (LUT, FF) of one block's logic from the calibrated (or given) coefficients."""
    features = LOGIC_FEATURES[block](params, maps)
    coeffs = (coeffs or costs()["blocks"])[block]
    lut = sum(coeffs["lut"].get(k, 0.0) * v for k, v in features.items())
    ff = sum(coeffs["ff"].get(k, 0.0) * v for k, v in features.items())
    return lut, ff


def transfer_key(buffer: isa.Buffer) -> str:
    """Return the activity key of the bytes LOAD/STORE move into or out of `buffer`."""
    return f"bytes:{buffer.name.lower()}"


def memory_block(name: str, mapping: Mapping, in_rtl: bool = True) -> Block:
    """Return the block of one buffer mapped onto its primitives.

    Its unit reads or writes a whole word per busy cycle; a transferred byte is 1/word bytes
    of a word access.
    """
    unit, buffers = MEMORY_USE[name]
    word_bytes = mapping.memory.width_bits / 8
    units = ((unit, 1.0), *((transfer_key(b), 1.0 / word_bytes) for b in buffers))
    return Block(f"{name}_buffer", 1, lut=mapping.luts, bram36=mapping.bram36,
                 uram=mapping.uram, lutram=mapping.luts, units=units,
                 style=mapping.style.value, in_rtl=in_rtl)  # fmt: skip


def engine_maps(params: RtlParams) -> dict[str, Mapping]:
    """Return the primitives of the matrix engine's memories (all but the controller's)."""
    return {m.name: map_memory(m, params.styles[m.name]) for m in params.memories()
            if m.name != "imem"}  # fmt: skip


def core_blocks(params: RtlParams, coeffs: dict | None = None) -> list[Block]:
    """Return the blocks of one core of the generated RTL for `params`."""
    maps = {m.name: map_memory(m, params.styles[m.name]) for m in params.memories()}
    engine = engine_maps(params)
    chain_lut, chain_ff = logic("dsp_chain", params, engine, coeffs)
    engine_lut, engine_ff = logic("matrix_engine", params, engine, coeffs)
    ctrl_lut, ctrl_ff = logic("controller", params, engine, coeffs)
    chain = params.engine.chain
    return [
        Block("dsp_chain", params.engine.n_chains, chain_lut, chain_ff, chain.chain_len,
              units=(("matrix", 1.0),)),
        Block("matrix_engine", 1, engine_lut, engine_ff, units=(("matrix", 1.0),)),
        Block("controller", 1, ctrl_lut, ctrl_ff, units=(("dispatch", 1.0),)),
        *(memory_block(name, m) for name, m in maps.items()),
    ]  # fmt: skip


def estimate_resources(hw: FpgaModel, params: RtlParams | None = None) -> ResourceReport:
    """Return the resources of the accelerator `hw` describes (its RTL plus the SFU buffer)."""
    from sparseflow.backends.fpga.layout import buffer_plan

    params = params or params_for_target(hw)
    plan = buffer_plan(hw, params.engine.chain, params.engine.n_chains)
    buf = isa.Buffer.SFU
    sfu = Memory("sfu", 8 * plan.word_bytes[buf], plan.depth_words[buf])
    sfu_map = map_memory(sfu, choose_style(sfu, hw.fabric))
    f = hw.fabric
    device = {"lut": f.luts, "ff": f.flip_flops, "dsp": hw.dsp_count, "bram36": f.bram36,
              "uram": f.uram288}  # fmt: skip
    blocks = [*core_blocks(params), memory_block("sfu", sfu_map, in_rtl=False)]
    return ResourceReport(blocks, hw.cores, device, hw.source_file or hw.name)


def check_fit(hw: FpgaModel, report: ResourceReport | None = None) -> ResourceReport:
    """Return the resource report of `hw`; raise InputError naming the resource that overflows."""
    report = report or estimate_resources(hw)
    over = report.overflow()
    if over is not None:
        key, need, total = over
        field_name = {"lut": "fabric.luts", "ff": "fabric.flip_flops", "dsp": "dsp_count",
                      "bram36": "fabric.bram36", "uram": "fabric.uram288"}[key]  # fmt: skip
        names = {"lut": "LUTs", "ff": "flip-flops", "dsp": "DSP slices", "bram36": "BRAM36",
                 "uram": "URAM288"}  # fmt: skip
        raise InputError(
            f"{report.label}: the design does not fit: it needs {need:,.0f} {names[key]}, "
            f"the device has {total:,.0f} (field '{field_name}'; {hw.cores} cores of "
            f"{hw.core.dsp_chains} chains x {hw.core.dsps_per_chain} DSPs)"
        )
    return report
