"""`bench estimate`: rows carry fast and reference times and the report difference."""

from __future__ import annotations

from sparseflow.simulator.bench_estimate import _case, _max_rel_diff, format_estimate_table


def test_max_rel_diff_reads_every_number() -> None:
    a = {"x": 1.0, "rows": [{"t": 2.0, "name": "linear"}]}
    assert _max_rel_diff(a, a) == 0.0
    b = {"x": 1.0, "rows": [{"t": 2.002, "name": "linear"}]}
    assert abs(_max_rel_diff(b, a) - 1e-3) < 1e-12
    assert _max_rel_diff({"x": 1.0, "n": "a"}, {"x": 1.0, "n": "b"}) == float("inf")


def test_a_small_fpga_case_equals_its_reference() -> None:
    row = _case("tiny-llama", "u280", 16, 8, 1)
    assert row["max_rel_diff"] <= 1e-9
    assert row["fast_s"] > 0 and row["full_s"] > 0 and row["fast_cpu_s"] > 0
    assert "tiny-llama" in format_estimate_table({"rows": [row]})
