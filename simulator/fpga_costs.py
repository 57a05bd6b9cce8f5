"""What one accelerator instruction costs: unit, fixed cycles or HBM bytes, energy events.

`FpgaMachine` is the timing view of an FPGA hardware model: clock, matrix engine (whose
per-instruction cycles come from `engine_model.matrix_cycles`, the count the generated RTL
is tested to match), SFU lanes and passes, HBM channels and buffer capacities.
Costs are computed from the field columns of `program.Stream.table()`, once per distinct
`TIMING_COLUMNS` row: addresses and HBM channels never change what an instruction costs
(the channel only decides where its bytes go, which the engine handles).

Per-instruction costs (cycles at `clock_hz`):
- MM/MV: `matrix_cycles`; executed MACs = issue cycles x chains x DSPs per chain x MACs per
  DSP (every DSP works every issue cycle, dense or N:16 sparse, FlightLLM [P]); on-chip bytes
  = weight words + activation words read + output words written.
- SFU: passes(op) x rows x ceil(length / lanes) cycles (lanes and passes from the YAML);
  FP16 ops = passes x elements; on-chip bytes = FP16 reads per pass + one FP16 write.
- LOAD/STORE: bytes = transfers x length x `isa.HBM_WORD_BYTES`; the time is the engine's
  business (channel bandwidth shares); each byte also crosses a buffer port.
- Every instruction occupies the dispatcher for its words + fetch + execute cycles, as in
  the RTL controller (`engine_model.controller_cycles`), or longer if the board DDR cannot
  deliver its words that fast: programs live in DDR (HBM holds weights and KV caches, as
  in FlightLLM [P]) and each core streams its own at an equal share of the DDR's sustained
  bandwidth (`fetch_bytes_per_cycle`), ahead of dispatch. Those words are DDR bytes in the
  energy events. On the U280 a core's share is ~45 B/cycle against the controller's 4, so
  fetch never stalls dispatch there; it costs energy only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import (
    ACC_BITS,
    DENSE_N,
    EXECUTE_CYCLES,
    FETCH_LATENCY_CYCLES,
    INDEX_BITS,
    ChainParams,
    EngineParams,
    MatrixOp,
    matrix_cycles,
)
from sparseflow.backends.fpga.layout import FP16_BYTES, buffer_plan, core_channels, engine_for
from sparseflow.backends.fpga.program import BufferPlan
from sparseflow.hw_models.schema import FpgaModel
from sparseflow.ir.errors import InputError
from sparseflow.simulator.energy import EnergyEvents
from sparseflow.simulator.hbm import HbmParams

ACT_BYTES = 1  # INT8 activations (FlightLLM [A])
SFU_PASSES_FIELD = {
    isa.SfuOp.SOFTMAX: "softmax_passes",
    isa.SfuOp.LAYERNORM: "norm_passes",
    isa.SfuOp.RMSNORM: "norm_passes",
}
# The `Stream.table()` columns that decide an instruction's cost.
TIMING_COLUMNS = (
    "opcode", "wait", "release", "buffer", "length", "nbytes", "n", "wbits", "tok_pairs",
    "row_tiles", "k_steps", "op", "rows",
)  # fmt: skip
UNIT_OF = {
    isa.Opcode.LOAD: isa.Queue.LOAD,
    isa.Opcode.STORE: isa.Queue.STORE,
    isa.Opcode.MM: isa.Queue.MATRIX,
    isa.Opcode.MV: isa.Queue.MATRIX,
    isa.Opcode.SFU: isa.Queue.SFU,
}


@dataclass(frozen=True)
class FpgaMachine:
    """Describe one FPGA accelerator as the event engine times it (see the module docstring)."""

    clock_hz: float
    cores: int
    chain: ChainParams  # chain structure: matrix_cycles' pipeline latency
    n_chains: int
    macs_per_dsp: int
    sfu_lanes: int
    sfu_passes: dict[isa.SfuOp, int]
    hbm: HbmParams
    buffer_bytes: dict[isa.Buffer, int]
    static_power_w: float
    fetch_bytes_per_cycle: float  # one core's share of the DDR that holds the programs

    @classmethod
    def from_hw(
        cls, hw: FpgaModel, engine: EngineParams | None = None, plan: BufferPlan | None = None
    ) -> FpgaMachine:
        """Return the timing view of `hw`, with the compiled engine and buffer plan if given."""
        core = hw.core
        engine = engine or engine_for(hw)
        chain = engine.chain
        passes = {
            op: getattr(core.sfu, SFU_PASSES_FIELD.get(op, "elementwise_passes"))
            for op in isa.SfuOp
        }
        plan = plan or buffer_plan(hw, chain, core.dsp_chains)
        return cls(
            clock_hz=hw.clock_hz,
            cores=hw.cores,
            chain=chain,
            n_chains=engine.n_chains,
            macs_per_dsp=core.int8_macs_per_dsp_per_cycle,
            sfu_lanes=core.sfu.lanes,
            sfu_passes=passes,
            hbm=hbm_params(hw),
            buffer_bytes={buf: plan.capacity_bytes(buf) for buf in isa.Buffer},
            static_power_w=hw.power.static_power_w,
            fetch_bytes_per_cycle=hw.ddr.bandwidth_bytes_per_s
            * hw.ddr.access_efficiency
            / hw.cores
            / hw.clock_hz,
        )

    @property
    def macs_per_issue(self) -> int:
        """Return the MACs the matrix engine executes per issue cycle (all DSPs busy)."""
        return self.n_chains * self.chain.chain_len * self.macs_per_dsp


def hbm_params(hw: FpgaModel) -> HbmParams:
    """Return the HBM parameters of `hw` for the channel model."""
    h = hw.hbm
    owners = [0] * h.channels
    for core in range(hw.cores):
        for channel in core_channels(hw, core):
            owners[channel] = core
    return HbmParams(
        channels=h.channels,
        owners=tuple(owners),
        channel_bytes_per_s=h.bandwidth_per_channel_bytes_per_s,
        same_channel_efficiency=h.same_channel_efficiency,
        cross_channel_efficiency=h.cross_channel_efficiency,
        port_bytes_per_s=h.port_bytes_per_s,
    )


@dataclass(frozen=True)
class InstructionCost:
    """Price of one instruction: unit, fixed cycles, HBM bytes, energy, dispatch."""

    unit: isa.Queue | None  # None: SYS, run by the dispatcher
    cycles: int  # fixed busy cycles (matrix, SFU); 0 for transfers
    hbm_bytes: int  # bytes moved over HBM (LOAD/STORE)
    dispatch_cycles: int
    wait: int
    release: int
    events: EnergyEvents
    barrier: bool = False
    end: bool = False


def instruction_cost(row: dict[str, int], machine: FpgaMachine) -> InstructionCost:
    """Return the cost of the instruction whose `TIMING_COLUMNS` values are `row`."""
    opcode = isa.Opcode(row["opcode"])
    cls = isa.INSTRUCTIONS[opcode]
    fetched = cls.n_words() * isa.WORD_BYTES
    dispatch = max(
        cls.n_words() + FETCH_LATENCY_CYCLES + EXECUTE_CYCLES,
        math.ceil(fetched / machine.fetch_bytes_per_cycle),
    )
    unit, cycles, hbm_bytes, sys_op = UNIT_OF.get(opcode), 0, 0, None
    if opcode in (isa.Opcode.MM, isa.Opcode.MV):
        cycles, events = _matrix_cost(row, machine)
    elif opcode == isa.Opcode.SFU:
        cycles, events = _sfu_cost(row, machine)
    elif opcode in (isa.Opcode.LOAD, isa.Opcode.STORE):
        _check_transfer(row, machine, opcode)
        hbm_bytes = row["nbytes"]
        events = EnergyEvents(hbm_bytes=hbm_bytes, onchip_bytes=hbm_bytes)
    else:  # SYS: run by the dispatcher
        sys_op = isa.SysOp(row["op"])
        events = EnergyEvents()
    return InstructionCost(
        unit, cycles, hbm_bytes, dispatch_cycles=dispatch, wait=row["wait"],
        release=row["release"], events=dataclasses.replace(events, ddr_bytes=fetched),
        barrier=sys_op == isa.SysOp.BARRIER, end=sys_op == isa.SysOp.END,
    )  # fmt: skip


def _matrix_cost(row: dict[str, int], machine: FpgaMachine) -> tuple[int, EnergyEvents]:
    n = row["n"]
    op = MatrixOp(n=n, tok_pairs=row["tok_pairs"], row_tiles=row["row_tiles"],
                  k_steps=row["k_steps"])  # fmt: skip
    cycles = matrix_cycles(op, EngineParams(machine.chain))
    issues = op.tok_pairs * op.row_tiles * op.k_steps
    index_bits = 0 if n == DENSE_N else INDEX_BITS
    weight_word = machine.n_chains * machine.chain.chain_len * (row["wbits"] + index_bits) / 8
    act_word = 2 * machine.chain.act_width * ACT_BYTES
    out_word = 2 * machine.n_chains * machine.chain.segments(n) * ACC_BITS / 8
    onchip = issues * (weight_word + act_word) + op.tok_pairs * op.row_tiles * out_word
    mac_field = "int4_macs" if row["wbits"] == 4 else "int8_macs"
    macs = issues * machine.macs_per_issue
    return cycles, EnergyEvents(**{mac_field: macs, "onchip_bytes": onchip})


def _sfu_cost(row: dict[str, int], machine: FpgaMachine) -> tuple[int, EnergyEvents]:
    passes = machine.sfu_passes[isa.SfuOp(row["op"])]
    cycles = passes * row["rows"] * math.ceil(row["length"] / machine.sfu_lanes)
    elements = row["rows"] * row["length"]
    onchip = (passes + 1) * elements * FP16_BYTES
    return cycles, EnergyEvents(fp16_sfu_ops=passes * elements, onchip_bytes=onchip)


def _check_transfer(row: dict[str, int], machine: FpgaMachine, opcode: isa.Opcode) -> None:
    buffer = isa.Buffer(row["buffer"])
    capacity = machine.buffer_bytes[buffer]
    if row["length"] * isa.HBM_WORD_BYTES > capacity:
        raise InputError(
            f"{opcode.name} length={row['length']}: {row['length'] * isa.HBM_WORD_BYTES} bytes "
            f"per transfer exceed the {buffer.name.lower()} buffer's {capacity} bytes"
        )
