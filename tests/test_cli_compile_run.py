"""`sparseflow compile` and `run`: report.json, compression error, and recipe errors."""

import json

import pytest

from sparseflow.cli import main


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def tiny_run(capsys, quant):
    return run_json(
        capsys, "run", "tiny-llama", "--target", "host-cpu", "--quant", quant,
        "--prompt", "12", "--gen", "4",
    )  # fmt: skip


def test_int8_error_is_small_and_below_int4(capsys):
    int8 = tiny_run(capsys, "int8")
    int4 = tiny_run(capsys, "int4:channel")
    assert 0 < int8["logits_rel_error_vs_dense"] < 0.05
    assert int8["logits_rel_error_vs_dense"] < int4["logits_rel_error_vs_dense"]
    assert int8["recipe"] == "int8" and len(int8["tokens"][0]) == 4
    assert int8["tokens_per_s"] > 0


def test_compile_2_4_reports_half_density_and_exact_bytes(capsys, tmp_path):
    report = run_json(
        capsys, "compile", "tiny-llama", "--target", "host-cpu", "--sparsity", "2:4",
        "-o", str(tmp_path),
    )  # fmt: skip
    sparse = [row for row in report["layers"] if row["format"].startswith("nm=")]
    assert len(sparse) == 14 and all(row["density"] == 0.5 for row in sparse)
    assert all(0 < row["rel_error"] < 1 for row in sparse)
    assert report["weight_bytes"] == sum(row["weight_bytes"] for row in report["layers"])
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["weight_bytes"] == report["weight_bytes"]
    assert "%layers.0.attn.q_proj : f32[64,64] nm=2:4" in (tmp_path / "graph").read_text()


def test_compile_for_the_fpga_writes_program_listing_and_rtl(capsys, tmp_path):
    report = run_json(capsys, "compile", "tiny-llama", "--target", "u280", "-o", str(tmp_path))
    assert {"graph", "program", "program.lst", "report.json"} <= set(report["files"])
    assert any(name.startswith("rtl/") for name in report["files"])
    assert report["program"]["programs"] >= 2
    resources = report["resources"]
    assert resources["fits"] and resources["total"]["dsp"] == 3 * 64 * 16
    top = (tmp_path / "rtl" / "sf_accel_top.sv").read_text()
    assert "Hardware model: u280 (built-in) sha256:" in top
    scale = [row for row in report["layers"] if row["name"] == "v.0.scale"]
    assert scale and "rel_error" not in scale[0]  # a calibrated scale has no dense original


def test_flightllm_llama2_7b_weight_bytes_in_published_range(capsys, tmp_path):
    report = run_json(
        capsys, "compile", "llama2-7b", "--target", "u280", "--recipe", "flightllm",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert 2.9e9 <= report["weight_bytes"] <= 4.0e9
    assert "rel_error" not in report["layers"][0]  # shape-only: no values to compare


@pytest.mark.parametrize(
    "recipe, words",
    [
        ("passes:\n  - pass: prune_everything\n", ["bad.yaml", "prune_everything"]),
        (
            "passes:\n  - pass: sparsify_nm\n    options: {n: 5, m: 4}\n",
            ["bad.yaml", "sparsify_nm", "'n'"],
        ),
        (
            "passes:\n  - pass: quantize_int4\n    options: {group_size: 48}\n",
            ["bad.yaml", "quantize_int4", "group_size", "layers."],
        ),
        (
            "passes:\n  - pass: sparsify_nm\n    layers: ['*.qproj']\n    options: {n: 2, m: 4}\n",
            ["bad.yaml", "sparsify_nm", "*.qproj"],
        ),
    ],
)
def test_bad_recipes_exit_2_naming_file_pass_and_option(capsys, tmp_path, recipe, words):
    path = tmp_path / "bad.yaml"
    path.write_text(recipe)
    code = main(
        [
            "compile",
            "tiny-llama",
            "--target",
            "host-cpu",
            "--recipe",
            str(path),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert all(word in err for word in words), err


def test_fpga_estimate_writes_plot_and_trace(capsys, tmp_path):
    plot, trace = tmp_path / "r.png", tmp_path / "t.json"
    report = run_json(
        capsys, "estimate", "tiny-llama", "--target", "u280", "--prompt", "8", "--gen", "4",
        "--plot", str(plot), "--trace", str(trace),
    )  # fmt: skip
    assert report["recipe"] == "flightllm" and report["decode_tokens_per_s"] > 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("ph") == "X" for e in events)


def test_trace_on_a_gpu_target_is_refused(capsys, tmp_path):
    code = main(["estimate", "tiny-llama", "--target", "a100", "--trace", str(tmp_path / "t")])
    assert code == 2 and "--trace" in capsys.readouterr().err


def test_bench_gpu_says_when_the_simulator_ran(capsys):
    record = run_json(capsys, "bench", "gpu", "--kernel", "gemm_fp32", "--repeats", "1")
    assert record["rows"] and record["rows"][0]["kernel"] == "gemm_fp32"
    if record["simulator"]:
        assert "simulator" in record["warning"]


def test_run_on_a_gpu_target_uses_the_gpu_kernels(capsys):
    result = run_json(
        capsys, "run", "tiny-llama", "--target", "a100", "--sparsity", "2:4", "--quant", "int8",
        "--prompt", "2", "--gen", "2",
    )  # fmt: skip
    assert result["executor"] == "gpu" and "cuda_simulator" in result["program"]
    assert result["logits_rel_error_vs_reference"] < 1e-3


def test_run_on_the_fpga_executes_the_program_and_matches_the_reference(capsys):
    result = run_json(
        capsys, "run", "tiny-llama", "--target", "u280", "--recipe", "flightllm",
        "--prompt", "8", "--gen", "4",
    )  # fmt: skip
    assert result["executor"] == "fpga" and result["program"]["programs"] >= 2
    assert result["logits_rel_error_vs_reference"] == 0.0  # bit for bit
    # one prefill and three decode steps, each a whole bucket program (all cores)
    buckets = {b["phase"]: b["instructions"] for b in result["program"]["buckets"]}
    assert result["instructions_executed"] == buckets["prefill"] + 3 * buckets["decode"]


def test_run_of_a_checkpoint_folder_on_the_fpga_matches_the_reference(capsys, tiny_decoder_folder):
    """A trained safetensors LLaMA (f32 weights, eps 1e-6 held as an FP16 immediate)."""
    result = run_json(
        capsys, "run", str(tiny_decoder_folder), "--target", "u280", "--recipe", "flightllm",
        "--prompt", "32", "--gen", "4",
    )  # fmt: skip
    assert result["executor"] == "fpga" and result["instructions_executed"] > 0
    assert result["logits_rel_error_vs_reference"] == 0.0


def test_run_on_the_cpu_meets_the_block_sparse_int8_bound(capsys):
    result = run_json(
        capsys, "run", "tiny-llama", "--target", "host-cpu", "--sparsity", "block4x1:0.9",
        "--quant", "int8", "--prompt", "8", "--gen", "4",
    )  # fmt: skip
    assert result["executor"] == "cpu"
    assert result["logits_rel_error_vs_reference"] < 1e-3
