"""Sweeps on the tiny space: grid, random and NSGA-II; resume; infeasible points; exported
designs reproduce their stored objectives exactly."""

import json
from pathlib import Path

import pytest

from sparseflow.cli import main
from sparseflow.ir.errors import InputError
from sparseflow.simulator.design import estimate
from sparseflow.simulator.explore import MetricSource, load_space, run_sweep, summarise
from sparseflow.simulator.explore.metrics import flatten
from sparseflow.simulator.explore.points import BASE_ID, planned_points
from sparseflow.simulator.explore.store import RESULTS_FILE, read_records

from .conftest import ENERGY_BOUND_J, write_space


def check_statuses(records: list[dict]) -> None:
    """Each record's status follows from its reason: loader, constraint, or none."""
    for r in records:
        if r["values"].get("hbm.channels") == 2:
            assert r["status"] == "infeasible" and "channel" in r["reason"], r
            assert r["metrics"] == {}  # rejected before any estimate
        elif r["metrics"]["energy_per_token_j"] > ENERGY_BOUND_J:
            assert r["status"] == "infeasible" and "energy_per_token_j" in r["reason"], r
        else:
            assert r["status"] == "ok" and r["reason"] is None, r
            assert r["objectives"]["avg_power_w"] == r["metrics"]["avg_power_w"] > 0


def test_grid_evaluates_every_point_once_and_resumes_with_none(tiny_space, tmp_path):
    space = load_space(tiny_space)
    out = tmp_path / "out"
    run = run_sweep(space, out, jobs=2)
    expected = {p.id for p in planned_points(space, None, 0)}
    assert {r["id"] for r in run.records} == expected and run.new == 19 and run.complete
    check_statuses(run.records)
    assert read_records(out / RESULTS_FILE) == {r["id"]: r for r in run.records}
    again = run_sweep(space, out, jobs=2)
    assert again.new == 0 and again.records == run.records


def test_random_samples_the_budget(tiny_space, tmp_path):
    space = load_space(write_space(tmp_path, search={"method": "random", "budget": 5, "seed": 1}))
    run = run_sweep(space, tmp_path / "out", jobs=1)
    assert run.new == 6 and {r["id"] for r in run.records} == {
        p.id for p in planned_points(space, 5, 1)
    }
    check_statuses(run.records)


def test_nsga2_stays_within_budget_and_resumes(tmp_path):
    search = {"method": "nsga2", "budget": 9, "seed": 2, "population": 4}
    space = load_space(write_space(tmp_path, search=search))
    out = tmp_path / "out"
    run = run_sweep(space, out, jobs=2)
    grid = {p.id for p in planned_points(space, None, 0)}
    ids = [r["id"] for r in run.records]
    assert BASE_ID in ids and len(ids) == 10 and set(ids) <= grid
    check_statuses(run.records)
    assert run_sweep(space, out, jobs=2).new == 0
    bigger = run_sweep(space, out, jobs=2, budget=12)  # replays 9, adds 3
    assert bigger.new == 3 and len(bigger.records) == 13


def test_a_different_space_needs_force(tiny_space, tmp_path):
    out = tmp_path / "out"
    run_sweep(load_space(tiny_space), out, jobs=1, budget=2)
    other = load_space(write_space(tmp_path, workload={"prompt": 16, "gen": 8}))
    with pytest.raises(InputError, match="different design space"):
        run_sweep(other, out, jobs=1, budget=2)
    assert run_sweep(other, out, jobs=1, budget=2, force=True).new == 3


def test_a_cut_last_line_is_evaluated_again(tiny_space, tmp_path):
    space = load_space(tiny_space)
    out = tmp_path / "out"
    run_sweep(space, out, jobs=1, budget=4)
    results = out / RESULTS_FILE
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])  # a crash mid-write
    assert run_sweep(space, out, jobs=1, budget=4).new == 1
    assert len(read_records(results)) == 5
    results.write_bytes(b"not json\n" + results.read_bytes())
    with pytest.raises(InputError, match="line 1 is not a result record"):
        run_sweep(space, out, jobs=1, budget=4)


def test_exported_designs_reproduce_their_objectives_exactly(tiny_space, tmp_path):
    space = load_space(tiny_space)
    out = tmp_path / "out"
    result = summarise(space, run_sweep(space, out, jobs=2), out, tmp_path / "front.png")
    assert result["front"] and len(result["designs"]) == len(result["front"])
    assert (tmp_path / "front.png").stat().st_size > 10_000
    for row, files in zip(result["front"], result["designs"], strict=True):
        values = row["values"]
        report = estimate("tiny-llama", files["target"], files["recipe"], prompt_len=32, gen_len=8)
        assert flatten(report) == row["metrics"]  # every number, bit for bit
        text = Path(files["target"]).read_text()
        assert all(f"{k} = {v}" in text for k, v in values.items()) and files["command"] in text


def test_cli_explore_and_the_designs_command(tiny_space, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explore", str(tiny_space), "-o", str(out), "--jobs", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["evaluated"] == 19 and result["infeasible"] >= 6 and result["errors"] == 0
    assert result["hypervolume"]["value"] > 0 and result["hypervolume"]["reference_point"]
    chosen = result["designs"][0]
    row = next(r for r in result["front"] if r["id"] == chosen["id"])
    argv = chosen["command"].split()[1:]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: report[k] for k in row["objectives"]} == row["objectives"]
    compiled = ["compile", "tiny-llama", "--target", chosen["target"], "--recipe", chosen["recipe"]]
    assert main([*compiled, "--prompt", "32", "--gen", "8", "-o", str(tmp_path / "c")]) == 0
    assert main(["explore", str(tiny_space), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "19 points" in text and "(0 new)" in text and "hypervolume" in text


def recipe_steps(model: str, recipe, request: dict) -> dict[str, float]:
    """A stand-in for an accuracy metric: computed per compressed model, in the workers."""
    return {"recipe_steps": float(len(recipe.steps) + request["prompt_len"])}


def test_extra_metrics_are_objectives(tmp_path):
    source = MetricSource(("recipe_steps",), recipe_steps)
    objectives = {"recipe_steps": "minimize", "energy_j": "minimize"}
    path = write_space(tmp_path, objectives=objectives, constraints={})
    with pytest.raises(InputError, match="'objectives.recipe_steps': unknown report key"):
        load_space(path)
    space = load_space(path, metrics=source)
    run = run_sweep(space, tmp_path / "out", jobs=2, metrics=source, budget=4)
    feasible = [r for r in run.records if r["status"] == "ok"]
    assert feasible and all(r["objectives"]["recipe_steps"] == 7 + 32 for r in feasible)


def test_a_time_limit_stops_submitting_and_the_next_run_goes_on(tmp_path):
    limited = load_space(write_space(tmp_path, search={"time_limit_s": 1e-6}))
    out = tmp_path / "out"
    run = run_sweep(limited, out, jobs=1)
    assert not run.complete and run.new < 19
    assert all(r["status"] == "infeasible" for r in run.records)  # only the loader's rejections
    rest = run_sweep(load_space(write_space(tmp_path)), out, jobs=1)  # `search` may change
    assert rest.complete and rest.new == 19 - run.new
