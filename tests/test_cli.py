"""The command line: DESIGN.md's keys, exit codes and one-line errors."""

import json

import pytest

from sparseflow.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_json_counts_parameters_exactly(capsys):
    code, out, _ = run(capsys, "show", "llama2-7b", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["params"] == 6738415616
    assert {"params", "weight_bytes", "flops_per_token", "layers"} <= set(stats)
    assert json.loads(run(capsys, "show", "gpt2", "--json")[1])["params"] == 124439808


def test_estimate_json_has_report_keys(capsys):
    code, out, _ = run(
        capsys,
        "estimate",
        "tiny-llama",
        "--target",
        "a100",
        "--gen",
        "4",
        "--prompt",
        "8",
        "--json",
    )
    report = json.loads(out)
    assert code == 0 and report["target"] == "a100" and report["gen_len"] == 4
    assert report["decode_tokens_per_s"] > 0 and report["breakdown"]


def test_lists(capsys):
    assert "u280" in run(capsys, "targets")[1]
    assert "tiny-llama" in run(capsys, "models")[1]
    assert "2:4" in run(capsys, "recipes")[1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["show", "llama3-900b"], "unknown model 'llama3-900b'"),
        (["estimate", "gpt2", "--target", "tpu9"], "tpu9"),
        (["estimate", "gpt2", "--target", "a100", "--recipe", "nope"], "unknown recipe 'nope'"),
        (["estimate", "gpt2", "--target", "a100", "--gen", "0"], "option --gen (gen_len)"),
        (["estimate", "gpt2", "--target", "a100", "--prompt", "-1"], "option --prompt"),
        (["estimate", "gpt2", "--target", "u280", "--batch", "0"], "option --batch"),
        (["run", "tiny-llama", "--target", "host-cpu", "--gen", "-1"], "option --gen"),
        (["run", "tiny-llama", "--target", "host-cpu", "--prompt", "0"], "option --prompt"),
        (["compile", "tiny-llama", "--target", "u280", "--batch", "0", "-o", "x"], "--batch"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def unfit_yaml(tmp_path, dsp_count=9024, **fabric):
    """Write the U280 model with smaller device totals; return its path."""
    import yaml

    from sparseflow.hw_models.loader import hw_to_dict, load_hw

    data = hw_to_dict(load_hw("u280"))
    data["fabric"].update(fabric)
    data["dsp_count"] = dsp_count
    path = tmp_path / "small-part.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("fabric", "message"),
    [
        ({"uram288": 500}, "needs 771 URAM288, the device has 500"),
        ({"bram36": 1000}, "needs 1,371 BRAM36, the device has 1,000"),
        ({"dsp_count": 3000}, "3 cores x 1024 DSPs exceed dsp_count 3000"),
    ],
)
def test_estimate_and_compile_of_a_design_that_does_not_fit_exit_2(
    capsys, tmp_path, fabric, message
):
    path = unfit_yaml(tmp_path, **fabric)
    for argv in (
        ["estimate", "tiny-llama", "--target", path, "--gen", "2", "--prompt", "8"],
        ["compile", "tiny-llama", "--target", path, "--gen", "2", "--prompt", "8", "-o",
         str(tmp_path / "out")],
    ):  # fmt: skip
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_rtl_generate_from_a_target_records_the_model(capsys, tmp_path):
    code, out, _ = run(capsys, "rtl", "generate", "--target", "u280-small", "-o", str(tmp_path))
    assert code == 0 and len(out.split()) == 5
    top = (tmp_path / "sf_accel_top.sv").read_text()
    assert "Hardware model: u280-small.yaml sha256:" in top
    assert "N_CHAINS=2 CHAIN_LEN=8 MIN_N=2 WBITS=8 ACT_DEPTH=4096 W_DEPTH=512" in top
    engine = (tmp_path / "sf_matrix_engine.sv").read_text()
    assert '(* ram_style = "ultra" *) logic [ACT_BITS-1:0] act_mem' in engine
    code, _, _ = run(capsys, "rtl", "generate", "--target", "u280-small", "--chain-len", "4",
                     "--nm", "dense", "-o", str(tmp_path / "o"))  # fmt: skip
    assert code == 0 and "CHAIN_LEN=4 MIN_N=16" in (tmp_path / "o" / "sf_dsp_chain.sv").read_text()
    assert run(capsys, "rtl", "generate", "--target", "a100", "-o", str(tmp_path))[0] == 2
