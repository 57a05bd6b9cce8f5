"""Tasks: one compressed model each, sized by the measured time per point."""

import pytest

from sparseflow.ir.errors import InputError
from sparseflow.simulator.explore import load_space
from sparseflow.simulator.explore.execute import TASK_TARGET_S, _Feeder, check_backend
from sparseflow.simulator.explore.points import design, planned_points


def designs(tiny_space):
    space = load_space(tiny_space)
    built = []
    for point in planned_points(space, None, 0)[1:]:
        try:
            built.append(design(space, point))
        except InputError:
            continue
    return built


def test_tasks_keep_to_one_model_and_grow_with_fast_points(tiny_space):
    built = designs(tiny_space)
    assert len(built) == 12 and len({d.compress_key for d in built}) == 2
    feeder = _Feeder(built, workers=2, metrics=None)
    first = feeder.next_task()
    assert len(first.points) == 1  # no time measured yet
    feeder.observe([{"wall_s": TASK_TARGET_S / 4}])
    second = feeder.next_task()
    assert len(second.points) == 3  # ceil(5 left / 2 workers) < 4 points of 0.05 s
    sizes, recipes = [], set()
    while (task := feeder.next_task()) is not None:
        sizes.append(len(task.points))
        recipes.add(task.recipe.name)
    assert sum(sizes) == 12 - 4 and feeder.empty and len(recipes) == 2
    ids = [p[0] for p in first.points + second.points]
    assert len(set(ids)) == 4


def test_slow_points_go_one_by_one(tiny_space):
    feeder = _Feeder(designs(tiny_space), workers=2, metrics=None)
    feeder.observe([{"wall_s": 7.0}])
    assert len(feeder.next_task().points) == 1


@pytest.mark.parametrize("cluster, jobs", [(None, 0), (None, True), ("http://x:1", None)])
def test_backend_arguments_are_checked(cluster, jobs):
    with pytest.raises(InputError):
        check_backend(cluster, jobs)
