"""Co-design exploration: sweep hardware fields, recipes and workloads to Pareto fronts.

    space = load_space("examples/spaces/u280.yaml")          # checked before any evaluation
    run = run_sweep(space, "out/dse", jobs=2)                 # or cluster="tcp://host:8786"
    result = summarise(space, run, "out/dse", "out/dse/pareto.png")

- `space`: the space file (axes, objectives, constraints, search) and its checks.
- `points`: point ids, grid and sampled points, the design a point builds.
- `evaluate`: the worker side, a batch of points sharing one compressed model.
- `execute`: local process pool, Dask or Ray executors; tasks fed to them.
- `search`: NSGA-II through optuna; `sweep`: the run, store and resume.
- `store`: OUT/space.json and OUT/results.jsonl; `pareto`: front and hypervolume.
- `export`, `plot`, `summary`: design YAMLs, the scatter plot, the result record.

docs/explore.md documents the space schema, resume and the execution backends.
Imports: sparseflow.simulator (design points), hw_models, passes, backends and ir.
"""

from sparseflow.simulator.explore.metrics import MetricSource
from sparseflow.simulator.explore.space import Space, load_space
from sparseflow.simulator.explore.summary import format_summary, summarise
from sparseflow.simulator.explore.sweep import SweepRun, run_sweep

__all__ = [
    "MetricSource",
    "Space",
    "SweepRun",
    "format_summary",
    "load_space",
    "run_sweep",
    "summarise",
]
