"""The command line of multi-device and ragged-batch estimates: acceptance commands, the
text report, and bad settings that exit 2 naming the option."""

import json

import pytest

from sparseflow.cli import main


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse rejects a malformed option value itself
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_show_counts_the_new_models_exactly(capsys):
    expected = {
        "llama2-70b": 68976648192, "llama3-8b": 8030261248, "mistral-7b": 7241732096,
        "mixtral-8x7b": 46702792704,
    }  # fmt: skip
    for model, params in expected.items():
        code, out, _ = run(capsys, "show", model, "--json")
        assert code == 0 and json.loads(out)["params"] == params


def test_llama2_70b_on_four_a100s(capsys):
    argv = ["estimate", "llama2-70b", "--target", "a100", "--prompt", "128", "--gen", "128"]
    code, out, _ = run(capsys, *argv, "--tp", "4", "--json")
    report = json.loads(out)
    assert code == 0 and report["decode_tokens_per_s"] > 0
    assert [d["memory_bytes"] > 0 for d in report["devices"]] == [True] * 4
    assert report["communication"]["all_reduce_time_s"] > 0
    code, _, err = run(capsys, *argv, "--tp", "1", "--recipe", "dense")
    assert code == 2 and "memory.capacity_bytes" in err and len(err.splitlines()) == 1
    code, out, _ = run(capsys, *argv, "--tp", "4")
    assert code == 0 and "all-reduce" in out and "communication" in out


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--tp", "3"], "--tp 3"),  # 3 does not divide tiny-llama's 4 heads
        (["--pp", "3"], "--pp 3"),  # tiny-llama has 2 layers
        (["--devices", "4", "--tp", "2", "--pp", "1"], "--devices 4"),
        (["--devices", "3", "--tp", "2"], "--devices 3"),
        (["--micro-batches", "3", "--batch", "2"], "--micro-batches 3"),
        (["--prompt", "8,x"], "--prompt"),
        (["--prompt", "8,16", "--batch", "3"], "--batch 3"),
    ],
)
def test_bad_parallel_settings_exit_2_naming_the_option(capsys, options, named):
    code, _, err = run(capsys, "estimate", "tiny-llama", "--target", "a100", "--gen", "2",
                       *options)  # fmt: skip
    assert code == 2 and named in err


def test_ragged_prompts_in_the_text_report(capsys):
    code, out, _ = run(capsys, "estimate", "tiny-llama", "--target", "a100", "--gen", "2",
                       "--prompt", "8,32,16", "--batching", "padded")  # fmt: skip
    assert code == 0 and "padded: 56 tokens of 3 prompts, prefill computes 96" in out
