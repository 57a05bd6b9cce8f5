"""Performance and energy models: the event simulator for FPGA programs, analytical models
for GPUs and CPUs, energy accounting, reports, plots and traces.

- `fpga_estimate` (FPGA `estimate`): runs a compiled program's buckets on `fpga_engine`
  (event-driven, per-core instruction queues), with instruction costs from `fpga_costs`
  and HBM channels from `hbm`.
- `estimate` (GPU/CPU `estimate`): per-kernel roofline times from `analytical`, kernels
  from graph nodes by `graph_work`.
- `energy`: dynamic energy per event plus static power x time.
- `plot`, `trace`: report plots and Chrome/Perfetto traces.
- `design`: one design point (compress, estimate) for the API and the explorer.
- `explore/`: co-design sweeps over hardware fields, recipes and workloads to Pareto fronts
  (`sparseflow explore`, docs/explore.md).

Imports: sparseflow.ir, sparseflow.hw_models and sparseflow.backends (to compile programs).
"""
