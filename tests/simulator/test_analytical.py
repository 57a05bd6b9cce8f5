"""Tests for the analytical GPU/CPU model: hand-computed cases, sparsity rules, the floor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.hw_models.schema import GpuModel
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops import weight_storage_bytes
from sparseflow.ir.types import TensorType, parse_type
from sparseflow.simulator.analytical import KernelWork, estimate_kernel, estimate_kernels

GPUS = ["a100", "h100", "v100s"]
CPUS = ["host-cpu", "xeon-8380"]
LLAMA2_7B_PARAMS = 6.74e9  # Touvron et al. 2023, "Llama 2", Table 1: 7B model


def weight(n: int, k: int, storage: str = "", dtype: str = "f16") -> TensorType:
    """Return the type of an [n, k] weight stored as `storage` (a printed sparse/quant suffix)."""
    return parse_type(f"{dtype}[{n},{k}] {storage}".strip())


def gemm(m: int, k: int, n: int, storage: str = "", **kwargs: object) -> KernelWork:
    """Return an (m x k) @ (k x n) linear kernel with fp16 operands by default."""
    dtype = "i8" if "int8" in storage else "i4" if "int4" in storage else "f16"
    return KernelWork(
        name=kwargs.pop("name", "gemm"),
        op_class="linear",
        flops=2 * m * k * n,
        activation_bytes_read=m * k * 2,
        bytes_written=m * n * 2,
        weights=(weight(n, k, storage, dtype),),
        **kwargs,
    )


# Device figures fixed here, so the arithmetic below does not move when a YAML is recalibrated.
A100_FIGURES = {
    "efficiency.gemm_compute_efficiency": 0.7,
    "efficiency.int8_gemm_compute_efficiency": 0.5,
    "efficiency.memory_bandwidth_efficiency": 0.8,
    "efficiency.compute_memory_overlap": 0.25,
    "efficiency.kernel_launch_overhead_s": 4e-6,
    "efficiency.sparse_compute_efficiency": 0.5,
    "power.static_power_w": 55.0,
    "power.busy_power_w": 100.0,
    "energy.pj_per_fp16_flop": 0.5,
}


def a100() -> GpuModel:
    """Return the A100 model with the figures the tests compute by hand."""
    return with_overrides(load_hw("a100"), A100_FIGURES)


def test_llama2_7b_fp16_gemv_on_a100_is_weight_bytes_over_effective_bandwidth() -> None:
    hw = a100()
    rows = 4096  # a [4096, params / 4096] fp16 matrix holds LLaMA2-7B's weights
    work = KernelWork(
        "decode", "linear", flops=2 * LLAMA2_7B_PARAMS,
        weights=(weight(rows, round(LLAMA2_7B_PARAMS / rows)),),
    )  # fmt: skip
    timing = estimate_kernel(hw, work)
    weight_bytes = rows * round(LLAMA2_7B_PARAMS / rows) * 2
    memory_s = weight_bytes / (2.039e12 * 0.8)
    compute_s = 2 * LLAMA2_7B_PARAMS / (312e12 * 0.7)
    assert timing.bound == "memory"
    assert timing.time_s == pytest.approx(memory_s + 0.75 * compute_s + 4e-6, rel=1e-9)
    assert 8.0e-3 < timing.time_s < 8.5e-3


def test_large_fp16_gemm_on_a100_is_compute_bound_at_gemm_efficiency() -> None:
    timing = estimate_kernel(a100(), gemm(8192, 8192, 8192))
    assert timing.bound == "compute"
    assert timing.compute_time_s == pytest.approx(2 * 8192**3 / (312e12 * 0.7))


@pytest.mark.parametrize("overlap", [0.0, 0.25, 1.0])
def test_overlap_hides_that_share_of_the_shorter_time(overlap: float) -> None:
    hw = with_overrides(a100(), {"efficiency.compute_memory_overlap": overlap})
    for m in (1, 64, 256, 4096):  # memory-bound, near the ridge point, compute-bound
        t = estimate_kernel(hw, gemm(m, 4096, 4096))
        longer, shorter = (
            max(t.compute_time_s, t.memory_time_s),
            min(t.compute_time_s, t.memory_time_s),
        )
        assert t.time_s == pytest.approx(longer + (1 - overlap) * shorter + 4e-6, rel=1e-12)


def test_gemm_efficiency_rises_with_rows_from_gemv_to_large_gemm() -> None:
    """Achieved FLOP/s over peak grows with M: bandwidth-limited GEMV, compute-limited GEMM."""
    hw = a100()
    achieved = [
        estimate_kernel(hw, gemm(m, 4096, 4096)).compute_utilization
        for m in (1, 16, 128, 1024, 8192)
    ]
    assert achieved == sorted(achieved)
    assert achieved[0] < 0.01 and 0.6 < achieved[-1] <= 0.7


def test_a_kernel_over_the_power_limit_runs_at_the_limit() -> None:
    hot = with_overrides(a100(), {"power.tdp_w": 300.0, "energy.pj_per_fp16_flop": 0.8})
    t = estimate_kernel(hot, gemm(8192, 8192, 8192))
    # At full speed it would draw 55 + 100 + 0.8 pJ x 218 TFLOP/s = 330 W.
    assert t.bound == "power"
    assert t.energy_j / t.time_s == pytest.approx(300.0, rel=1e-9)
    assert t.time_s > t.compute_time_s
    cool = estimate_kernel(a100(), gemm(8192, 8192, 8192))
    assert cool.bound == "compute" and cool.energy_j / cool.time_s < 400.0


def test_int8_and_int4_use_their_peaks() -> None:
    hw = a100()
    fp16 = estimate_kernel(hw, gemm(8192, 8192, 8192)).compute_time_s
    int8 = estimate_kernel(hw, gemm(8192, 8192, 8192, dtype="i8")).compute_time_s
    int4 = estimate_kernel(hw, gemm(8192, 8192, 8192, dtype="i4")).compute_time_s
    # INT8 at twice the peak, at its own efficiency: 2 x 0.5 / 0.7.
    assert fp16 / int8 == pytest.approx(2.0 * 0.5 / 0.7) and int8 / int4 == pytest.approx(2.0)
    h100 = load_hw("h100")  # no INT4 tensor cores: INT4 runs at the INT8 peak
    h_int8 = estimate_kernel(h100, gemm(8192, 8192, 8192, dtype="i8")).compute_time_s
    assert estimate_kernel(h100, gemm(8192, 8192, 8192, dtype="i4")).compute_time_s == h_int8


def test_w4a16_weights_cut_memory_traffic_fourfold() -> None:
    hw = a100()
    fp16 = estimate_kernel(hw, gemm(1, 4096, 4096))
    w4 = gemm(1, 4096, 4096, "q=int4:channel")
    # Two values per byte plus an f32 scale and a zero point per row.
    assert w4.stored_weight_bytes == 4096 * 4096 / 2 + 4096 * 5
    assert estimate_kernel(hw, w4).bytes_moved < fp16.bytes_moved / 3.9


@pytest.mark.parametrize("name", ["a100", "h100"])
def test_2to4_uses_sparse_tensor_cores_where_present(name: str) -> None:
    hw = load_hw(name)
    dense = estimate_kernel(hw, gemm(8192, 8192, 8192))
    sparse = estimate_kernel(hw, gemm(8192, 8192, 8192, "nm=2:4"))
    eff = hw.efficiency
    speedup = eff.sparse_compute_efficiency * 2 / eff.gemm_compute_efficiency
    assert dense.compute_time_s / sparse.compute_time_s == pytest.approx(speedup)


def test_2to4_gives_no_compute_gain_on_v100s_but_less_traffic() -> None:
    hw = load_hw("v100s")
    dense = estimate_kernel(hw, gemm(8192, 8192, 8192))
    sparse = estimate_kernel(hw, gemm(8192, 8192, 8192, "nm=2:4"))
    assert sparse.compute_time_s == dense.compute_time_s
    # fp16 values halve; 2-bit indices per kept value add 1/16 of the dense bytes.
    weights = 8192 * 8192 * 2
    assert gemm(8192, 8192, 8192, "nm=2:4").stored_weight_bytes == (weights / 2 + weights / 16)
    assert sparse.bytes_moved == dense.bytes_moved - weights + weights * (0.5 + 1 / 16)


def test_unstructured_sparsity_gives_no_tensor_core_gain_on_gpus() -> None:
    for name in GPUS:
        hw = load_hw(name)
        dense = estimate_kernel(hw, gemm(1, 4096, 4096))
        sparse = estimate_kernel(hw, gemm(1, 4096, 4096, "unstructured@0.2"))
        assert sparse.compute_time_s == dense.compute_time_s
        assert sparse.memory_time_s < dense.memory_time_s
        # CSR: 0.2 of the fp16 values, an i32 column per value, i32 row pointers.
        nnz, weights = round(0.2 * 4096 * 4096), 4096 * 4096 * 2
        assert sparse.bytes_moved == dense.bytes_moved - weights + nnz * 6 + 4 * 4097


def test_cpu_sparse_kernels_skip_zeros_only_when_faster() -> None:
    hw = load_hw("host-cpu")
    dense = estimate_kernel(hw, gemm(2048, 2048, 2048, dtype="f32"))
    sparse = gemm(2048, 2048, 2048, "block=4x1@0.1", dtype="f32")
    # density 0.1 at 0.15 efficiency beats 0.54 dense efficiency by 0.15 / (0.1 * 0.54) = 2.8x.
    assert dense.compute_time_s / estimate_kernel(hw, sparse).compute_time_s == pytest.approx(
        0.15 / (0.1 * 0.54)
    )
    half = gemm(2048, 2048, 2048, "block=4x1@0.5", dtype="f32")
    assert estimate_kernel(hw, half).compute_time_s == dense.compute_time_s


def test_launch_overhead_bounds_tiny_kernels() -> None:
    timing = estimate_kernel(a100(), KernelWork("add", "elementwise", flops=64))
    assert timing.bound == "launch" and timing.time_s == pytest.approx(4e-6, rel=1e-5)


def test_vector_ops_run_at_the_fp32_vector_rate() -> None:
    hw = load_hw("xeon-8380")
    norm = KernelWork("norm", "norm", flops=1e12, activation_bytes_read=8)
    assert estimate_kernel(hw, norm).compute_time_s == pytest.approx(1e12 / (5.888e12 * 0.3))


def test_efficiency_overrides_change_the_estimate() -> None:
    hw = a100()
    work = gemm(1, 8192, 8192)
    slower = with_overrides(hw, {"efficiency.memory_bandwidth_efficiency": 0.4})
    base, slow = estimate_kernel(hw, work), estimate_kernel(slower, work)
    assert slow.memory_time_s == pytest.approx(2 * base.memory_time_s)


def test_fpga_targets_are_refused() -> None:
    with pytest.raises(InputError, match="u280.*event simulator"):
        estimate_kernel(load_hw("u280"), gemm(1, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"op_class": "conv"}, "op_class"),
        ({"op_class": "source"}, "op_class"),
        ({"dtype": "fp8"}, "dtype"),
        ({"dtype": "i64"}, "dtype"),
        ({"flops": -1.0}, "flops"),
        ({"bytes_written": float("inf")}, "bytes_written"),
        ({"weight_fraction": 1.5}, "weight_fraction"),
        ({"op_class": "norm", "weights": (weight(8, 8, "block=4x1@0.5"),)}, "weights"),
    ],
)
def test_bad_kernel_work_names_kernel_and_field(kwargs: dict, field: str) -> None:
    base = {"name": "k0", "op_class": "linear", "flops": 1.0}
    with pytest.raises(InputError, match=f"kernel 'k0': field '{field}'"):
        KernelWork(**{**base, **kwargs})


def test_estimate_kernels_keeps_order_and_serialises() -> None:
    works = [gemm(1, 64, 64, name="a"), KernelWork("b", "norm", flops=10.0)]
    timings = estimate_kernels(load_hw("h100"), works)
    assert [t.name for t in timings] == ["a", "b"]
    record = timings[0].to_dict()
    assert record["time_s"] == timings[0].time_s and record["energy_j"] > 0


STORAGES = ["", "q=int8:channel", "q=int4:group:g128", "nm=2:4", "unstructured@0.1"]
STORAGES += ["block=4x4@0.3", "nm=8:16 q=int4:channel", "nmblock=16x16:16@0.5"]
works = st.builds(
    KernelWork,
    name=st.just("k"),
    op_class=st.sampled_from(["linear", "attention", "norm", "elementwise", "embedding"]),
    flops=st.floats(0, 1e16),
    activation_bytes_read=st.floats(0, 1e10),
    bytes_written=st.floats(0, 1e10),
    kv_bytes_read=st.floats(0, 1e10),
    dtype=st.sampled_from(["f32", "f16", "bf16", "i8", "i4"]),
).flatmap(lambda w: st.sampled_from(weighted_variants(w)))


def weighted_variants(work: KernelWork) -> list[KernelWork]:
    """Return the work without weights and with a weight in each storage its class allows."""
    storages = STORAGES if work.op_class.value in ("linear", "attention") else [""]
    fields = dict(work.__dict__)
    dtypes = {"int8": "i8", "int4": "i4"}
    typed = [(s, next((v for k, v in dtypes.items() if k in s), "f16")) for s in storages]
    return [work] + [
        KernelWork(**{**fields, "weights": (weight(512, 256, s, d),)}) for s, d in typed
    ]


def roofline_floor_s(hw, work: KernelWork) -> float:
    """Return max(useful work / best peak, unavoidable bytes / peak bandwidth), from scratch."""
    useful_ops = work.flops * work.density
    if hw.kind.value == "gpu":
        p = hw.peaks
        best = max(p.fp32_flops_per_s, p.fp16_tensor_flops_per_s, p.int8_tensor_ops_per_s)
        best = max(best, p.int4_tensor_ops_per_s or 0) * (p.sparse_2to4_speedup or 1)
        bandwidth = hw.memory.hbm_bandwidth_bytes_per_s
    else:
        best = max(hw.compute.peak_fp32_flops_per_s, hw.compute.peak_int8_ops_per_s)
        bandwidth = hw.memory.dram_bandwidth_bytes_per_s
    kept_weights = sum(w.numel() * quant_bits(w) / 8 for w in work.weights) * work.density
    unavoidable = kept_weights + work.activation_bytes_read + work.bytes_written
    return max(useful_ops / best, (unavoidable + work.kv_bytes_read) / bandwidth)


def quant_bits(weight_type: TensorType) -> int:
    """Return the bits of one stored weight value (fp16 for float weights)."""
    return weight_type.quant.bits if weight_type.quant else 16


@settings(max_examples=400, deadline=None)
@given(work=works, name=st.sampled_from(GPUS + CPUS))
def test_time_never_beats_the_roofline_floor(work: KernelWork, name: str) -> None:
    hw = load_hw(name)
    timing = estimate_kernel(hw, work)
    assert timing.time_s >= roofline_floor_s(hw, work)
    assert timing.time_s >= max(timing.compute_time_s, timing.memory_time_s)
    assert 0 <= timing.compute_utilization <= 1 and 0 <= timing.bandwidth_utilization <= 1
    assert timing.energy_j >= hw.power.static_power_w * timing.time_s


def test_weight_storage_bytes_by_hand() -> None:
    rows, cols = 64, 96
    sparse_int8 = parse_type(f"i8[{rows},{cols}] nm=2:4 q=int8:channel")
    kept = rows * cols // 2
    # 1-byte kept values, a 2-bit position per kept value, an f32 scale per row.
    assert weight_storage_bytes(sparse_int8) == kept + kept * 2 // 8 + 4 * rows
    # An unquantized float weight is deployed in fp16, whatever its graph dtype.
    assert weight_storage_bytes(parse_type(f"f32[{rows},{cols}]")) == rows * cols * 2
    assert weight_storage_bytes(parse_type(f"f16[{rows},{cols}]")) == rows * cols * 2
