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
