"""Design-space files: values expanded and checked; every bad file exits 2 naming the file and
the field before anything is evaluated (the output folder is never created)."""

from pathlib import Path

import pytest
import yaml

from sparseflow.cli import main
from sparseflow.ir.errors import InputError
from sparseflow.simulator.explore import load_space
from sparseflow.simulator.explore.axes import AxisKind
from sparseflow.simulator.explore.points import design, make_point, planned_points

BASE = {
    "model": "tiny-llama",
    "target": "u280",
    "workload": {"prompt": 32, "gen": 8},
    "axes": {"clock_hz": [200.0e6, 250.0e6]},
    "objectives": {"decode_tokens_per_s": "maximize", "energy_per_token_j": "minimize"},
}


def write(tmp_path: Path, **changes) -> Path:
    data = {**BASE, **changes}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_ranges_expand_and_take_the_field_types(tmp_path):
    space = load_space(
        write(
            tmp_path,
            axes={
                "clock_hz": {"range": [200.0e6, 250.0e6], "step": 25.0e6},
                "hbm.channels": {"range": [4, 32], "num": 4, "log": True},
                "core.buffers.weight_buffer_bytes": {"range": [1048576, 3145728], "step": 1048576},
                "recipe.sparsify_flightllm.density": {"range": [0.2, 0.4], "step": 0.1},
                "workload.gen": [4, 8],
            },
        )
    )
    values = {a.key: a.values for a in space.axes}
    assert values["clock_hz"] == (200.0e6, 225.0e6, 250.0e6)
    assert values["hbm.channels"] == (4, 8, 16, 32)  # geometric, rounded to integers
    assert values["core.buffers.weight_buffer_bytes"] == (1048576, 2097152, 3145728)
    assert values["recipe.sparsify_flightllm.density"] == (0.2, 0.3, 0.4)  # not 0.30000000000000004
    kinds = [a.kind for a in space.axes]
    assert kinds == [AxisKind.HARDWARE] * 3 + [AxisKind.RECIPE_OPTION, AxisKind.WORKLOAD]
    assert space.size == 3 * 4 * 3 * 3 * 2


def test_points_have_stable_ids_and_build_their_design(tmp_path):
    axes = {"clock_hz": [2.0e8, 2.5e8], "recipe.sparsify_flightllm.density": [0.25]}
    space = load_space(write(tmp_path, axes=axes))
    points = planned_points(space, None, 0)
    assert [p.id for p in points][0] == "base" and len(points) == 3
    again = make_point({"recipe.sparsify_flightllm.density": 0.25, "clock_hz": 2.5e8})
    assert again.id == points[2].id  # the id does not depend on key order
    built = design(space, points[2])
    assert built.hw.clock_hz == 2.5e8 and built.hw.core == space.targets["u280"].core
    density = [s.options.density for s in built.recipe.steps if s.pass_name == "sparsify_flightllm"]
    assert density == [0.25]


def test_a_budget_samples_without_replacement_seeded(tmp_path):
    space = load_space(write(tmp_path, axes={"clock_hz": {"range": [1.0e8, 3.0e8], "num": 30}}))
    first = planned_points(space, 10, seed=3)
    assert len({p.id for p in first}) == 11 and first == planned_points(space, 10, seed=3)
    assert first != planned_points(space, 10, seed=4)


def test_target_and_recipe_axes_mix_presets_files_and_shorthands(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "name: mine\npasses:\n  - pass: quantize_int4\n    options: {group_size: 64}\n"
    )
    space = load_space(
        write(
            tmp_path,
            target="a100",
            axes={
                "target": ["a100", "h100"],
                "recipe": ["dense", "mine.yaml", {"sparsity": "2:4", "quant": "int8"}],
            },
        )
    )
    assert list(space.targets) == ["a100", "h100"]
    assert [r.name for r in space.recipes.values()] == ["2:4", "dense", "mine", "2:4+int8"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"axes": {"core.dsp_chanis": [64]}}, "axes.core.dsp_chanis"),
        ({"axes": {"core.dsp_chains": []}}, "axes.core.dsp_chains"),
        ({"axes": {"core.dsp_chains": ["many"]}}, "axes.core.dsp_chains"),
        ({"axes": {"core.dsp_chains": [64.5]}}, "axes.core.dsp_chains"),
        ({"axes": {"core.dsp_chains": [-4]}}, "axes.core.dsp_chains"),
        ({"axes": {"core.buffers.double_buffering": [1]}}, "axes.core.buffers.double_buffering"),
        ({"axes": {"name": ["a", "b"]}}, "axes.name"),
        ({"axes": {"core.sfu.precision": ["fp16"]}}, "axes.core.sfu.precision"),
        ({"axes": {"core": [1]}}, "axes.core"),
        ({"axes": {"clock_hz": {"range": [3, 1], "step": 1}}}, "axes.clock_hz"),
        ({"axes": {"clock_hz": {"range": [1, 3], "step": 1, "num": 2}}}, "axes.clock_hz"),
        ({"axes": {"clock_hz": [2e8, 2e8]}}, "axes.clock_hz"),
        ({"axes": {"recipe.sparsify_nm.n": [2]}}, "axes.recipe.sparsify_nm.n"),
        ({"axes": {"recipe.sparsify_flightllm.density": [2.0]}}, "axes.recipe"),
        ({"axes": {"recipe.sparsify_flightllm.dens": [0.5]}}, "axes.recipe"),
        ({"axes": {"recipe": ["nope"]}}, "axes.recipe"),
        ({"axes": {"target": ["tpu9"]}}, "target"),
        ({"axes": {"workload.prompt": [0]}}, "axes.workload.prompt"),
        ({"axes": {"workload.tokens": [1]}}, "axes.workload.tokens"),
        ({"axes": {}}, "axes"),
        ({"objectives": {"tokens_per_second": "maximize"}}, "objectives.tokens_per_second"),
        ({"objectives": {"energy_j": "less"}}, "objectives.energy_j"),
        ({"objectives": {}}, "objectives"),
        ({"constraints": {"avg_power": {"max": 75}}}, "constraints.avg_power"),
        ({"constraints": {"avg_power_w": {"max": "75 W"}}}, "constraints.avg_power_w"),
        ({"constraints": {"avg_power_w": {"below": 75}}}, "constraints.avg_power_w"),
        ({"model": "llama9-1t"}, "model"),
        ({"target": "tpu9"}, "target"),
        ({"recipe": "nope"}, "recipe"),
        ({"workload": {"prompt": 0}}, "workload.prompt"),
        ({"workload": {"prompt": 4000}}, "workload"),
        ({"search": {"method": "annealing"}}, "search.method"),
        ({"search": {"budget": 0}}, "search.budget"),
        ({"search": {"method": "grid", "patience": 3}}, "search"),
        ({"search": {"time_limit_s": -1}}, "search.time_limit_s"),
        ({"axis": {}}, "axis"),
    ],
)
def test_bad_space_exits_2_naming_file_and_field(tmp_path, capsys, changes, field):
    path = write(tmp_path, **changes)
    out = tmp_path / "out"
    code = main(["explore", str(path), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and str(path) in err and f"'{field}" in err, err
    assert not out.exists()  # nothing was evaluated


def test_other_kinds_have_no_fpga_fields(tmp_path):
    with pytest.raises(InputError, match="a100 has no field 'core.dsp_chains'"):
        load_space(write(tmp_path, axes={"target": ["u280", "a100"], "core.dsp_chains": [8]}))


def test_not_yaml_or_not_a_mapping(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(InputError, match=str(path)):
        load_space(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_space(path)
