"""Generate the accelerator's SystemVerilog from the templates beside this module.

Each template is a parameterised module; the generator fills in the parameter defaults and
the synthesis `ram_style` of every memory, prepends a header naming the parameters, the
hardware model they came from and this generator, and writes one file per module.
Parameters are validated by `engine_model.ChainParams` / `EngineParams`, so the RTL and the
Python model always describe the same engine. `params_for_target` derives them from an FPGA
hardware model (chains, chain length, N modes, weight bits, buffer depths from the buffer
plan the compiler uses); `make_params` builds them from explicit values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sparseflow.backends.fpga.engine_model import (
    ACC_BITS,
    ACT_BITS,
    DENSE_N,
    INDEX_BITS,
    ChainParams,
    EngineParams,
)
from sparseflow.backends.fpga.rtl.memories import Memory, RamStyle, choose_style
from sparseflow.hw_models.schema import FpgaFabric, FpgaModel
from sparseflow.ir.errors import InputError

MODULES = ("sf_dsp48", "sf_dsp_chain", "sf_matrix_engine", "sf_controller", "sf_accel_top")
TOPS: dict[str, tuple[str, ...]] = {
    "sf_dsp_chain": ("sf_dsp48", "sf_dsp_chain"),
    "sf_matrix_engine": ("sf_dsp48", "sf_dsp_chain", "sf_matrix_engine"),
    "sf_controller": ("sf_controller",),
    "sf_accel_top": MODULES,
}
IMEM_DEPTH_WORDS = 1024  # default instruction memory: one BRAM36 of 32-bit words (UG573)
IMEM_WORD_BITS = 32  # isa.WORD_BYTES
REFERENCE_TARGET = "u280"  # part whose totals weigh memory styles when no target is given


@dataclass(frozen=True)
class RtlParams:
    """Hold every parameter of the generated RTL: engine, instruction memory, memory styles.

    `styles` maps each memory of `memories()` to its primitive kind; `origin` names the
    hardware model (file and hash) the parameters came from, empty for explicit values.
    """

    engine: EngineParams
    imem_depth: int = IMEM_DEPTH_WORDS
    styles: dict[str, RamStyle] = field(default_factory=dict, compare=False)
    origin: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.imem_depth <= 1 << 16:
            raise InputError(f"imem_depth={self.imem_depth}: must be 1..65536")

    def values(self) -> dict[str, int]:
        """Return the SystemVerilog parameter values by name."""
        e = self.engine
        return {
            "N_CHAINS": e.n_chains,
            "CHAIN_LEN": e.chain.chain_len,
            "MIN_N": e.chain.min_n,
            "WBITS": e.chain.wbits,
            "ACT_DEPTH": e.act_depth,
            "W_DEPTH": e.weight_depth,
            "BIAS_DEPTH": e.bias_depth,
            "OUT_DEPTH": e.out_depth,
            "IMEM_DEPTH": self.imem_depth,
        }

    def memories(self) -> list[Memory]:
        """Return the RTL's memories (widths as sf_matrix_engine.sv declares them)."""
        e, ch = self.engine, self.engine.chain
        bias_bits = e.n_chains * ch.max_segments * ACC_BITS
        return [
            Memory("act", 2 * ch.act_width * ACT_BITS, e.act_depth),
            Memory("weight", e.n_chains * ch.chain_len * (ch.wbits + INDEX_BITS), e.weight_depth),
            Memory("bias", bias_bits, e.bias_depth),
            Memory("out", 2 * bias_bits, e.out_depth),
            Memory("imem", IMEM_WORD_BITS, self.imem_depth),
        ]

    def attributes(self) -> dict[str, str]:
        """Return the `ram_style` attribute text of each memory's template placeholder."""
        return {
            f"{name.upper()}_RAM_STYLE": f'(* ram_style = "{style.value}" *) '
            for name, style in self.styles.items()
        }


def with_styles(
    engine: EngineParams, imem_depth: int, fabric: FpgaFabric, origin: str = ""
) -> RtlParams:
    """Return RtlParams whose memories take the primitives `choose_style` picks on `fabric`."""
    bare = RtlParams(engine, imem_depth, origin=origin)
    styles = {m.name: choose_style(m, fabric) for m in bare.memories()}
    return RtlParams(engine, imem_depth, styles, origin)


def parse_nm(text: str | None) -> tuple[int, int] | None:
    """Return (N, M) from 'N:M' (None for None or 'dense'); raise InputError otherwise."""
    if text is None or text == "dense":
        return None
    n_text, sep, m_text = text.partition(":")
    if not sep or not n_text.isdigit() or not m_text.isdigit():
        raise InputError(f"--nm {text!r}: expected N:M such as 8:16")
    return int(n_text), int(m_text)


def min_n_of(nm: tuple[int, int] | None) -> int:
    """Return the smallest N:16 mode a chain builds in for `nm` (None: dense only)."""
    if nm is None:
        return DENSE_N
    n, m = nm
    if m != 16:
        raise InputError(f"nm={n}:{m}: M must be 16 (N:16 blocks)")
    return n


def make_params(
    chain_len: int = 16,
    nm: tuple[int, int] | None = (2, 16),
    wbits: int = 8,
    n_chains: int = 2,
    act_depth: int = 256,
    weight_depth: int = 256,
    bias_depth: int = 64,
    out_depth: int = 256,
    imem_depth: int = IMEM_DEPTH_WORDS,
    fabric: FpgaFabric | None = None,
) -> RtlParams:
    """Return validated RTL parameters; nm=None builds a dense-only chain.

    Memory styles are weighed against `fabric` (default: the REFERENCE_TARGET part's).
    """
    chain = ChainParams(chain_len, min_n_of(nm), wbits)
    engine = EngineParams(chain, n_chains, act_depth, weight_depth, bias_depth, out_depth)
    return with_styles(engine, imem_depth, fabric or reference_fabric())


def reference_fabric() -> FpgaFabric:
    """Return the REFERENCE_TARGET part's totals."""
    from sparseflow.hw_models.loader import load_hw

    hw = load_hw(REFERENCE_TARGET)
    assert isinstance(hw, FpgaModel)
    return hw.fabric


def params_for_target(
    hw: FpgaModel,
    chain_len: int | None = None,
    nm: tuple[int, int] | None | str = "target",
    wbits: int | None = None,
) -> RtlParams:
    """Return the RTL parameters of the accelerator `hw` describes; given values override.

    Chains, chain length, N modes and buffer depths come from the hardware model through the
    compiler's own engine and buffer plan (`layout.engine_for`); nm="target" keeps the
    model's N modes, None builds a dense-only chain.
    """
    from sparseflow.backends.fpga.layout import chain_for, engine_for

    base = chain_for(hw)
    min_n = base.min_n if nm == "target" else min_n_of(nm)  # type: ignore[arg-type]
    chain = ChainParams(chain_len or base.chain_len, min_n, wbits or base.wbits)
    return with_styles(engine_for(hw, chain), IMEM_DEPTH_WORDS, hw.fabric, origin_of(hw))


def origin_of(hw: FpgaModel) -> str:
    """Return 'FILE sha256:HASH' of the hardware model's YAML (the dumped model if none)."""
    path = Path(hw.source_file)
    if path.is_file():
        return f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    from sparseflow.hw_models.loader import hw_to_dict

    digest = hashlib.sha256(repr(hw_to_dict(hw)).encode()).hexdigest()[:16]
    return f"{hw.source_file or hw.name} sha256:{digest}"


def render(module: str, params: RtlParams) -> str:
    """Return one module's SystemVerilog with its header and placeholders filled in."""
    text = resources.files(__package__).joinpath(f"templates/{module}.sv").read_text()
    values = params.values()
    listed = " ".join(f"{k}={v}" for k, v in values.items())
    styles = " ".join(f"{k}={v.value}" for k, v in params.styles.items())
    header = (
        f"// {module}.sv: generated by sparseflow.backends.fpga.rtl.generator from\n"
        f"// templates/{module}.sv; edit the template, not this file.\n"
        f"// Parameters: {listed}\n"
        f"// Memory styles: {styles or 'none (synthesis chooses)'}\n"
        + (f"// Hardware model: {params.origin}\n" if params.origin else "")
        + "// Python model: sparseflow.backends.fpga.engine_model (bit-accurate, cycle-exact)."
    )
    fills = {**{k: str(v) for k, v in values.items()}, **params.attributes(), "HEADER": header}
    for name, value in fills.items():
        text = text.replace("{{" + name + "}}", value)
    for name in ("ACT", "WEIGHT", "BIAS", "OUT", "IMEM"):
        text = text.replace("{{" + name + "_RAM_STYLE}}", "")
    if "{{" in text.replace("{{3{", ""):
        raise AssertionError(f"template {module}.sv has an unfilled placeholder")
    return text


def generate_rtl(
    out_dir: str | Path,
    chain_len: int = 16,
    nm: tuple[int, int] | None = (2, 16),
    wbits: int = 8,
    **engine: int,
) -> list[Path]:
    """Write the accelerator's SystemVerilog modules into out_dir; return their paths."""
    params = make_params(chain_len, nm, wbits, **engine)
    return write_rtl(out_dir, params)


def write_rtl(out_dir: str | Path, params: RtlParams) -> list[Path]:
    """Write every module for `params` into out_dir; return the paths in dependency order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for module in MODULES:
        path = out / f"{module}.sv"
        path.write_text(render(module, params))
        paths.append(path)
    return paths


def sources_for(top: str, paths: list[Path]) -> list[Path]:
    """Return the files a top module needs, in dependency order."""
    if top not in TOPS:
        raise InputError(f"top {top!r}: must be one of {', '.join(TOPS)}")
    by_name = {p.stem: p for p in paths}
    return [by_name[m] for m in TOPS[top]]
