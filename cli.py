"""The `sparseflow` command line (DESIGN.md fixes its contract).

Exit codes: 0 success, 2 bad input (one line naming the file, field or node), 1 internal error.
Each sub-command is a small function that calls into the library and formats the result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sparseflow.ir.errors import InputError

Handler = Callable[[argparse.Namespace], int]


def _print_json(value: object) -> None:
    from sparseflow.ir.fileio import dumps_strict

    print(dumps_strict(value, "the result"))


def cmd_targets(args: argparse.Namespace) -> int:
    """List the hardware models (targets) with their kind and default recipe."""
    from sparseflow.hw_models.loader import list_hw, load_hw

    rows = [load_hw(name) for name in list_hw()]
    if args.json:
        _print_json(
            [
                {
                    "name": h.name,
                    "kind": str(h.kind),
                    "default_recipe": h.default_recipe,
                    "description": h.description,
                }
                for h in rows
            ]
        )
        return 0
    for hw in rows:
        print(f"{hw.name:<12} {hw.kind!s:<5} {hw.default_recipe:<10} {hw.description}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """List the built-in recipes and the passes they run."""
    from sparseflow.passes.recipe import list_recipes, load_recipe

    recipes = [load_recipe(name) for name in list_recipes()]
    if args.json:
        _print_json(
            [
                {
                    "name": r.name,
                    "description": r.description,
                    "passes": [s.pass_name for s in r.steps],
                }
                for r in recipes
            ]
        )
        return 0
    for recipe in recipes:
        passes = " -> ".join(s.pass_name for s in recipe.steps) or "(no passes)"
        print(f"{recipe.name:<10} {recipe.description}\n{'':<10} {passes}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the built-in models and the checkpoints their configs copy."""
    from sparseflow.ir.models.zoo import list_models

    models = list_models()
    if args.json:
        _print_json(models)
        return 0
    for name, source in models.items():
        print(f"{name:<16} {source}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a model's parameters, weight bytes, FLOPs and bytes per token and its layers."""
    from sparseflow import api

    if args.graph:
        from sparseflow.ir.models.zoo import load_model

        print(load_model(args.model, phase="prefill" if api.is_encoder(args.model) else "decode"))
        return 0
    stats = api.show(args.model, context=args.context)
    if args.json:
        _print_json(stats)
        return 0
    print(_format_stats(stats))
    return 0


def _format_stats(stats: dict) -> str:
    lines = [
        f"model            {stats['model']} ({stats['phase']}, context {stats['context']})",
        f"params           {stats['params']:,}",
        f"weight bytes     {stats['weight_bytes']:,} ({stats['weight_bytes'] / 1e9:.2f} GB)",
        f"FLOPs per token  {stats['flops_per_token']:,.0f}",
        f"bytes per token  {stats['bytes_per_token']:,.0f}",
        "",
        f"{'layer':<40} {'op':<10} {'shape':<16} {'params':>14}",
    ]
    for layer in stats["layers"]:
        shape = "x".join(str(d) for d in layer["shape"])
        lines.append(f"{layer['name']:<40} {layer['op']:<10} {shape:<16} {layer['params']:>14,}")
    return "\n".join(lines)


def cmd_estimate(args: argparse.Namespace) -> int:
    """Estimate one request (prefill + decode) of a compressed model on a target."""
    from sparseflow import api
    from sparseflow.backends.outdir import check_output_file

    if args.plot:
        check_output_file(args.plot, api.PLOT_SUFFIXES, "--plot")
    hw = api.load_target(args.target)
    mapping = (args.devices, args.tp, args.pp, args.micro_batches)
    if any(value is not None for value in mapping):
        hw = api.load_target(hw, api.parallel_overrides(*mapping))
    lens = args.prompt if isinstance(args.prompt, tuple) else ()
    workload = api.make_workload(args.batch, max(lens or (args.prompt,)), args.gen, lens,
                                 args.batching == "ragged")  # fmt: skip
    model = api.compress(
        args.model, args.recipe, target=hw, sparsity=args.sparsity, quant=args.quant,
        batch=workload.batch, prompt_len=workload.prompt_len, symbolic_prompt=workload.is_ragged,
    )  # fmt: skip
    report = api.estimate(
        model, hw, batch=workload.batch, prompt_len=workload.prompt_len, gen_len=args.gen,
        prompt_lens=lens, ragged=workload.ragged, trace_path=args.trace,
        progress=not args.json and sys.stderr.isatty(),
    )  # fmt: skip
    if args.plot:
        from sparseflow.simulator.plot import plot_report

        plot_report(report, args.plot, hw, model.decode)
    if args.json:
        _print_json(report)
    else:
        print(_format_report(report))
    return 0


def _format_report(r: dict) -> str:
    lines = [
        f"{r['model']} on {r['target']} with recipe {r['recipe']}: batch {r['batch']}, "
        f"prompt {r['prompt_len']}, generate {r['gen_len']}",
        f"  prefill latency      {r['prefill_latency_s'] * 1e3:10.2f} ms",
        f"  decode step (first)  {r['decode_first_step_s'] * 1e3:10.2f} ms",
        f"  decode step (mean)   {r['decode_mean_step_s'] * 1e3:10.2f} ms",
        f"  decode throughput    {r['decode_tokens_per_s']:10.1f} tokens/s",
        f"  end to end           {r['e2e_latency_s']:10.3f} s",
        f"  energy               {r['energy_j']:10.1f} J  ({r['energy_per_token_j']:.3f} J/token,"
        f" {r['tokens_per_j']:.2f} tokens/J)",
        f"  average power        {r['avg_power_w']:10.1f} W",
        f"  weight bytes         {r['weight_bytes'] / 1e9:10.2f} GB",
        *_format_batching(r["batching"]),
        f"  utilisation          compute {r['utilization']['compute']:.1%}, "
        f"memory bandwidth {r['utilization']['memory_bandwidth']:.1%}",
    ]
    if "parallel" in r:
        lines += _format_cluster(r)
    lines += ["  time by op class (bottlenecks first):"]
    for row in r["breakdown"]:
        share = row["time_s"] / r["e2e_latency_s"]
        lines.append(
            f"    {row['name']:<12} {share:6.1%}  {row['energy_j']:8.1f} J  {row['bound']}"
        )
    return "\n".join(lines)


def _format_batching(b: dict) -> list[str]:
    if len(set(b["prompt_lens"])) == 1:
        return []
    return [
        f"  prompts              {b['mode']}: {b['prompt_tokens']} tokens of "
        f"{len(b['prompt_lens'])} prompts, prefill computes {b['prefill_tokens']} "
        f"({b['padding_fraction']:.0%} padding)"
    ]


def _format_cluster(r: dict) -> list[str]:
    p, c = r["parallel"], r["communication"]
    device = r["devices"][0]
    lines = [
        f"  devices              {p['devices']} (tp {p['tp']} x pp {p['pp']}, "
        f"{p['micro_batches']} micro-batch(es)) over {p['link'] or 'no link'}",
        f"  all-reduce           {c['all_reduce_time_s'] * 1e3:10.2f} ms  "
        f"({c['all_reduce_bytes'] / 1e6:.1f} MB sent by all devices)",
    ]
    if c["all_gather_bytes"] or c["send_bytes"]:
        lines.append(
            f"  all-gather, sends    {(c['all_gather_time_s'] + c['send_time_s']) * 1e3:10.2f} ms"
            f"  ({(c['all_gather_bytes'] + c['send_bytes']) / 1e6:.1f} MB)"
        )
    for d in r["devices"]:
        if d["tp_rank"] == 0 or d is device:
            lines.append(
                f"  device {d['device']:<3} stage {d['stage']}  memory "
                f"{d['memory_bytes'] / 1e9:6.2f} of {d['memory_capacity_bytes'] / 1e9:.2f} GB, "
                f"compute {d['utilization']['compute']:.1%}, "
                f"memory bandwidth {d['utilization']['memory_bandwidth']:.1%} (x{p['tp']} ranks)"
            )
    return lines


def _pass_context(args: argparse.Namespace):
    from sparseflow.passes.calibration import read_calibration_ids
    from sparseflow.passes.manager import PassContext

    ids = read_calibration_ids(args.calibration) if args.calibration else None
    return PassContext(calibration_ids=ids, seed=args.seed)


def _request(args: argparse.Namespace) -> dict:
    """Return the recipe and request options every model command takes, as api keywords."""
    return {
        "sparsity": args.sparsity,
        "quant": args.quant,
        "batch": args.batch,
        "prompt_len": args.prompt,
        "gen_len": args.gen,
        "context": _pass_context(args),
    }


def cmd_compile(args: argparse.Namespace) -> int:
    """Compress a model with a recipe and compile it for a target into a folder."""
    from pathlib import Path

    from sparseflow import api

    out = Path(args.output)
    report = api.compile(
        args.model, args.target, out, args.recipe, force=args.force, **_request(args)
    )
    if args.json:
        _print_json(report)
        return 0
    print(f"{report['model']} -> {report['target']} with recipe {report['recipe']}")
    print(
        f"  weight bytes {report['weight_bytes']:,} ({_human(report['weight_bytes'])}, "
        f"{report['compression_ratio']:.2f}x smaller than {_human(report['dense_weight_bytes'])})"
    )
    for name in report["files"]:
        print(f"  wrote {out / name}")
    return 0


def _prompt_lengths(text: str) -> int | tuple[int, ...]:
    """Parse --prompt: one length, or comma-separated lengths (one per sequence)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers such as 128 or 128,512: {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _human(n_bytes: float) -> str:
    """Return a byte count with a decimal unit: 3.60 GB, 129 kB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{n_bytes:.0f} B"


def cmd_run(args: argparse.Namespace) -> int:
    """Run one request of a compressed model on a target's backend and check its logits."""
    from sparseflow import api

    hw = api.load_target(args.target)
    if api.simulated_gpu(hw):
        short = api.SIMULATOR_REQUEST
        chosen = "" if args.prompt or args.gen else (
            f"; running a short request (--prompt {short['prompt_len']} --gen "
            f"{short['gen_len']}), give --prompt/--gen for another"
        )  # fmt: skip
        print(
            f"sparseflow: no GPU found: {hw.name} kernels run on numba's CUDA simulator "
            f"(about 5 s per prompt token, 30 s per decode step of a tiny model){chosen}",
            file=sys.stderr,
        )
    progress = not args.json and sys.stderr.isatty()
    result = api.run(args.model, hw, args.recipe, progress=progress, **_request(args))
    if args.json:
        _print_json(result)
        return 0
    ref = result["logits_rel_error_vs_reference"]
    print(f"{result['model']} on {result['target']} ({result['executor']}) with {result['recipe']}")
    print(f"  tokens                         {result['tokens']}")
    print(f"  logits rel. error vs reference {'n/a (no backend)' if ref is None else f'{ref:.3e}'}")
    print(f"  logits rel. error vs dense     {result['logits_rel_error_vs_dense']:.3e}")
    speed = result["tokens_per_s"]
    shown = "n/a (no decode step)" if speed is None else f"{speed:.1f}"
    print(f"  tokens/s (measured)            {shown}")
    if result.get("instructions_executed") is not None:
        print(f"  instructions executed          {result['instructions_executed']:,}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Measure a compressed model's accuracy against its uncompressed self on real text."""
    from sparseflow import api
    from sparseflow.backends.eval_report import format_eval

    fields = ("text", "calibration_text", "target", "window", "stride", "max_tokens")
    options = api.EvalOptions(**{n: getattr(args, n) for n in (*fields, "max_sentences", "seed")})
    progress = not args.json and sys.stderr.isatty()
    recipe = api.make_recipe(args.recipe, "dense", args.sparsity, args.quant)
    report = api.evaluate_accuracy(args.model, recipe, options, progress)
    if args.json:
        _print_json(report)
    else:
        print(format_eval(report))
    return 0


def cmd_rtl_generate(args: argparse.Namespace) -> int:
    """Write the accelerator's SystemVerilog: a target's, or one parameter set; flags override."""
    from pathlib import Path

    from sparseflow.backends.fpga.rtl.generator import make_params, params_for_target, write_rtl
    from sparseflow.backends.outdir import staged_dir

    nm = None if args.nm in ("dense", "16:16") else args.nm and _parse_nm(args.nm)
    if args.target:
        target_nm = "target" if args.nm is None else nm
        params = params_for_target(_fpga_target(args.target), args.chain_len, target_nm, args.wbits)
    else:
        nm = (2, 16) if args.nm is None else nm
        params = make_params(args.chain_len or 16, nm, args.wbits or 8)
    out = Path(args.output)
    with staged_dir(out, _holds_only_rtl, args.force) as staging:
        written = write_rtl(staging, params)
    for path in written:
        print(out / path.name)
    return 0


def _holds_only_rtl(folder) -> bool:
    """Return whether a folder holds only SystemVerilog (an earlier `rtl generate`)."""
    return all(p.suffix == ".sv" and p.is_file() and not p.is_symlink() for p in folder.iterdir())


def _fpga_target(name: str):
    from sparseflow.hw_models.loader import load_hw
    from sparseflow.hw_models.schema import Kind

    hw = load_hw(name)
    if hw.kind is not Kind.FPGA:
        raise InputError(f"--target {name}: a {hw.kind} model; the RTL is for fpga targets")
    return hw


def cmd_rtl_synth(args: argparse.Namespace) -> int:
    """Synthesise generated RTL with Yosys and print its resources per block."""
    from sparseflow.backends.fpga.rtl.synth import synth_record

    progress = not args.json and sys.stderr.isatty()
    record = synth_record(args.target, args.dir, progress)
    if args.json:
        _print_json(record)
        return 0
    print(_format_synth(record))
    return 0


def _format_synth(r: dict) -> str:
    keys = ("lut", "lutram", "ff", "dsp", "ramb36", "ramb18", "uram")
    head = f"{'block':<14} {'count':>5} " + " ".join(f"{k.upper():>9}" for k in keys)
    cached = ", cached" if r["cached"] else ""
    lines = [f"{r['source']}: {r['yosys']} (synth_xilinx -family xcup -uram{cached})", head]
    for b in r["blocks"]:
        cells = " ".join(f"{b[k] * b['instances']:>9,.0f}" for k in keys)
        lines.append(f"{b['name']:<14} {b['instances']:>5} {cells}")
    lines.append(f"{'core':<14} {'':>5} " + " ".join(f"{r['core'][k]:>9,.0f}" for k in keys))
    if "model_core" in r:
        model = r["model_core"]
        lines.append(
            f"analytical model per core: {model['lut']:,.0f} LUT, {model['ff']:,.0f} FF, "
            f"{model['dsp']:.0f} DSP, {model['bram36']:g} BRAM36, {model['uram']:.0f} URAM "
            f"(DSP/BRAM/URAM exact: {all(r['model_exact'].values())})"
        )
        d = r["device_total"]
        lines.append(
            f"device ({r['cores']} x core): {d['lut']:,.0f} LUT, {d['ff']:,.0f} FF, "
            f"{d['dsp']:.0f} DSP, {d['bram36']:g} BRAM36, {d['uram']:.0f} URAM"
        )
    return "\n".join(lines)


def _parse_nm(text: str) -> tuple[int, int]:
    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--nm {text!r}: expected N:M such as 2:16, or 'dense'") from None
    return n, m


def cmd_rtl_test(args: argparse.Namespace) -> int:
    """Run the cocotb + Verilator test benches; return pytest's exit code."""
    from sparseflow.backends.fpga.rtl.runner import run_rtl_tests

    return run_rtl_tests(args.simulator, waves=args.waves)


def cmd_bench_spmm(args: argparse.Namespace) -> int:
    """Time the CPU SpMM kernels against numpy dense and scipy CSR."""
    from sparseflow.backends.cpu.bench import run_spmm_bench
    from sparseflow.backends.cpu.bench_report import format_spmm_table, plot_spmm

    result = run_spmm_bench(quick=args.quick, progress=not args.json)
    if args.plot:
        plot_spmm(result, args.plot)
    if args.json:
        _print_json(result)
    else:
        print(format_spmm_table(result))
    return 0


def cmd_bench_estimate(args: argparse.Namespace) -> int:
    """Time compile + estimate of one design point against the full reference path."""
    from sparseflow.simulator.bench_estimate import format_estimate_table, run_estimate_bench

    record = run_estimate_bench(quick=args.quick, repeats=args.repeats)
    if args.json:
        _print_json(record)
    else:
        print(format_estimate_table(record))
    return 0


def cmd_bench_gpu(args: argparse.Namespace) -> int:
    """Time the numba.cuda kernels against a GPU hardware model's peaks (and cuBLAS)."""
    from sparseflow.backends.gpu.bench_report import bench_gpu, format_gpu_bench

    record = bench_gpu(args.target, kernels=args.kernel or None, repeats=args.repeats)
    if args.json:
        _print_json(record)
    else:
        print(format_gpu_bench(record))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit a target's efficiency and power fields to measured runs; write the calibrated YAML."""
    from pathlib import Path

    from tqdm import tqdm

    from sparseflow.hw_models.loader import NAME_PATTERN, load_hw
    from sparseflow.simulator.calibrate import calibrate, calibration_yaml
    from sparseflow.simulator.calibrate_report import calibration_record, format_calibration
    from sparseflow.simulator.measurements import read_measurements

    hw = load_hw(args.target)
    rows = read_measurements(args.measurements)
    steps = len(rows) + sum(r.role == "fit" for r in rows)
    shown = sys.stderr.isatty() and not args.json
    with tqdm(total=steps, desc="calibrate", disable=not shown, leave=False) as bar:
        result = calibrate(
            hw, rows, args.fit, lambda step: (bar.set_postfix_str(step), bar.update())
        )
    out = Path(args.output)
    name = out.stem if NAME_PATTERN.match(out.stem) else hw.name
    fields = "".join(f" --fit {field}" for field in args.fit or [])
    command = f"sparseflow calibrate {args.target} {args.measurements} -o {args.output}{fields}"
    header = [
        f"{hw.description}, calibrated from {args.measurements} by",
        f"  {command}",
        "Fitted fields cite the measurements and the fit; the others keep their notes.",
    ]
    out.write_text(calibration_yaml(result, args.measurements, name, header), encoding="utf-8")
    if args.json:
        _print_json(calibration_record(result))
    else:
        print(format_calibration(result))
        print(f"wrote {out}")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    """Sweep a design space into a folder: Pareto front, hypervolume, designs, plot."""
    from sparseflow.backends.outdir import check_output_file
    from sparseflow.simulator import explore
    from sparseflow.simulator.explore.execute import WorkerLost

    if args.plot:
        check_output_file(args.plot, (".png", ".pdf", ".svg"), "--plot")
    space = explore.load_space(args.space)
    bar = _ProgressBar("designs", enabled=not args.json and sys.stderr.isatty())
    try:
        run = explore.run_sweep(
            space, args.output, jobs=args.jobs, cluster=args.cluster, budget=args.budget,
            force=args.force, progress=bar.update,
        )  # fmt: skip
    except KeyboardInterrupt:
        bar.close()
        print(
            f"sparseflow: interrupted: every finished point is kept in {args.output}; "
            "run the same command again to evaluate the rest",
            file=sys.stderr,
        )
        return _exit_now(130)
    except WorkerLost as err:
        bar.close()
        print(
            f"sparseflow: error: {err}: every finished point is kept in {args.output}; run "
            "the same command again to evaluate the rest",
            file=sys.stderr,
        )
        return 1
    bar.close()
    result = explore.summarise(space, run, args.output, args.plot)
    if args.json:
        _print_json(result)
    else:
        print(explore.format_summary(result))
    return 0


class _ProgressBar:
    """A tqdm bar created on the first update, only when `enabled` (a terminal, no --json)."""

    def __init__(self, unit: str, enabled: bool) -> None:
        self.unit, self.enabled, self.bar = unit, enabled, None

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr)
        self.bar.total = max(total, done)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="sparseflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, handler, help_text in [
        ("models", cmd_models, "list built-in models"),
        ("targets", cmd_targets, "list hardware models"),
        ("recipes", cmd_recipes, "list built-in compression recipes"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(func=handler)
    show = commands.add_parser("show", help="parameters, weight bytes, FLOPs per token, layers")
    show.add_argument("model", help="built-in name, config.json, model folder or graph file")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--graph", action="store_true", help="print the graph, one line per node")
    show.add_argument("--context", type=int, default=512, help="KV length for per-token costs")
    show.set_defaults(func=cmd_show)
    estimate = _model_command(commands, "estimate", "latency, throughput and energy of a request")
    estimate.add_argument("--plot", metavar="FILE.png", help="write breakdown + roofline plot")
    estimate.add_argument("--trace", metavar="FILE.json", help="write a Perfetto trace (fpga)")
    estimate.add_argument("--devices", type=int, help="devices the model spans (tp x pp)")
    estimate.add_argument("--tp", type=int, help="tensor-parallel devices per layer")
    estimate.add_argument("--pp", type=int, help="pipeline stages (consecutive layers)")
    estimate.add_argument("--micro-batches", type=int, help="pipeline micro-batches per batch")
    estimate.add_argument(
        "--batching", choices=("ragged", "padded"), default="ragged",
        help="prompts of different lengths (--prompt 128,512,64): packed, or padded",
    )  # fmt: skip
    for action in estimate._actions:
        if action.dest == "prompt":  # estimate takes one prompt length per sequence too
            action.type, action.help = (
                _prompt_lengths,
                "prompt length, or one per sequence: 128,512",
            )
    estimate.set_defaults(func=cmd_estimate)
    compile_ = _model_command(commands, "compile", "compress and compile a model for a target")
    compile_.add_argument("-o", "--output", required=True, help="output folder")
    compile_.add_argument(
        "--force", action="store_true", help="replace an output folder of other files whole"
    )
    compile_.set_defaults(func=cmd_compile)
    run = _model_command(commands, "run", "run a request on the target's kernels, check logits")
    run.set_defaults(func=cmd_run)
    _add_eval(commands)
    _add_rtl(commands)
    _add_calibrate(commands)
    _add_explore(commands)
    bench = commands.add_parser("bench", help="kernel benchmarks").add_subparsers(
        dest="bench", required=True, metavar="BENCH"
    )
    spmm = bench.add_parser("spmm", help="CPU sparse kernels vs numpy dense and scipy CSR")
    spmm.add_argument("--json", action="store_true", help="print {'rows': [...]} as JSON")
    spmm.add_argument("--quick", action="store_true", help="a small subset of the cases")
    spmm.add_argument("--plot", metavar="FILE.png", help="write speedup vs sparsity plot")
    spmm.set_defaults(func=cmd_bench_spmm)
    est = bench.add_parser("estimate", help="cost of one design point vs the full path")
    est.add_argument("--json", action="store_true", help="print {'rows': [...]} as JSON")
    est.add_argument("--quick", action="store_true", help="three of the cases")
    est.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    est.set_defaults(func=cmd_bench_estimate)
    gpu = bench.add_parser("gpu", help="numba.cuda kernels vs the GPU model's peaks and cuBLAS")
    gpu.add_argument("--target", default="a100", help="GPU hardware model for the peaks")
    gpu.add_argument("--kernel", action="append", help="only this kernel (repeatable)")
    gpu.add_argument("--repeats", type=int, default=20, help="timed runs per kernel")
    gpu.add_argument("--json", action="store_true", help="print the record as JSON")
    gpu.set_defaults(func=cmd_bench_gpu)
    return parser


def _model_command(
    commands: argparse._SubParsersAction, name: str, help_text: str
) -> argparse.ArgumentParser:
    """Add a sub-command taking a model, a target, a recipe and a request shape."""
    sub = commands.add_parser(name, help=help_text)
    sub.add_argument("model", help="built-in name, config.json, model folder or graph file")
    sub.add_argument("--target", required=True, help="hardware model name or YAML path")
    sub.add_argument("--recipe", help="recipe name or YAML (default: the target's)")
    sub.add_argument("--sparsity", help="shorthand: 2:4, 8:16, 0.9, block4x1:0.9")
    sub.add_argument("--quant", help="shorthand: int8, llm.int8, int4[:g128], fp4, olive4")
    defaults = "run: 8 + 2 on a GPU target without a GPU" if name == "run" else None
    sub.add_argument("--prompt", type=int, default=None if defaults else 128, help="prompt length")
    sub.add_argument("--gen", type=int, default=None if defaults else 128, help="tokens generated")
    if defaults:
        sub.epilog = f"Request default: --prompt 128 --gen 128 ({defaults})."
    sub.add_argument("--batch", type=int, default=1, help="sequences per batch")
    sub.add_argument("--calibration", metavar="FILE", help="calibration token ids (one line each)")
    sub.add_argument("--seed", type=int, default=0, help="seed of prompts and calibration ids")
    sub.add_argument("--json", action="store_true", help="print the result as JSON")
    return sub


def _add_eval(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("eval", help="accuracy of a compressed model on real text")
    sub.add_argument("model", help="checkpoint folder (config.json, safetensors, tokenizer.json)")
    sub.add_argument("--recipe", help="recipe name or YAML (default: dense)")
    sub.add_argument("--sparsity", help="shorthand: 2:4, 8:16, 0.9, block4x1:0.9")
    sub.add_argument("--quant", help="shorthand: int8, llm.int8, int4[:g128], fp4, olive4")
    sub.add_argument("--text", metavar="FILE", help="UTF-8 evaluation text (default: built-in)")
    sub.add_argument("--calibration-text", metavar="FILE", help="UTF-8 calibration text")
    sub.add_argument("--target", help="run the compressed model on this target's backend")
    sub.add_argument("--window", type=int, default=128, help="decoder window (tokens)")
    sub.add_argument("--stride", type=int, default=64, help="decoder window stride (tokens)")
    sub.add_argument("--max-tokens", type=int, default=8192, help="decoder tokens at most")
    sub.add_argument("--max-sentences", type=int, default=256, help="encoder sentences at most")
    sub.add_argument("--seed", type=int, default=0, help="seed of randomised passes")
    sub.add_argument("--json", action="store_true", help="print the report as JSON")
    sub.set_defaults(func=cmd_eval)


def _add_calibrate(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("calibrate", help="fit device parameters to measured runs")
    sub.add_argument("target", help="hardware model name or YAML path to start from")
    sub.add_argument("measurements", help="CSV of measured runs (simulator/measurements.py)")
    sub.add_argument("-o", "--output", required=True, help="calibrated hardware-model YAML")
    sub.add_argument("--fit", action="append", metavar="FIELD", help="candidate field (repeat)")
    sub.add_argument("--json", action="store_true", help="print the fit as JSON")
    sub.set_defaults(func=cmd_calibrate)


def _add_explore(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("explore", help="co-design sweep of a design space -> Pareto front")
    sub.add_argument("space", help="design-space YAML (docs/explore.md)")
    sub.add_argument("-o", "--output", required=True, help="results folder (resumed if present)")
    sub.add_argument("--jobs", type=int, help="local worker processes (default: all cores)")
    sub.add_argument("--cluster", metavar="ADDRESS", help="Dask tcp://host:port or ray://...")
    sub.add_argument("--budget", type=int, help="points to evaluate (overrides search.budget)")
    sub.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_argument("--plot", metavar="FILE.png", help="write the pairwise objective scatter")
    sub.add_argument(
        "--force", action="store_true", help="discard the results of another space in -o"
    )
    sub.set_defaults(func=cmd_explore)


def _add_rtl(commands: argparse._SubParsersAction) -> None:
    rtl = commands.add_parser("rtl", help="generate and verify the accelerator's RTL")
    verbs = rtl.add_subparsers(dest="rtl", required=True, metavar="VERB")
    gen = verbs.add_parser("generate", help="write SystemVerilog for a target or parameter set")
    gen.add_argument("--target", help="fpga hardware model the RTL implements (flags override)")
    gen.add_argument("--chain-len", type=int, help="DSP48 slices per chain (default 16)")
    gen.add_argument("--nm", help="smallest sparse mode N:16, or 'dense' (default 2:16)")
    gen.add_argument("--wbits", type=int, help="weight bits, 8 or 4 (default 8)")
    gen.add_argument("-o", "--output", required=True, help="output folder")
    gen.add_argument("--force", action="store_true", help="replace a folder of other files")
    gen.set_defaults(func=cmd_rtl_generate)
    synth = verbs.add_parser("synth", help="resources from open synthesis (Yosys)")
    synth.add_argument("dir", nargs="?", help="folder of generated RTL (or use --target)")
    synth.add_argument("--target", help="fpga hardware model whose RTL to generate and synthesise")
    synth.add_argument("--json", action="store_true", help="print the record as JSON")
    synth.set_defaults(func=cmd_rtl_synth)
    test = verbs.add_parser("test", help="run the cocotb benches on Verilator")
    test.add_argument("--simulator", default="verilator", help="HDL simulator")
    test.add_argument("--waves", action="store_true", help="dump waveforms")
    test.set_defaults(func=cmd_rtl_test)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return 0 on success, 2 on bad input (130 after an interrupt)."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except InputError as err:
        print(f"sparseflow: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        sys.stderr.close()  # output piped into a reader that stopped early (e.g. `| head`)
        return 0
    except OSError as err:  # a path the user gave cannot be read or written
        where = f"{err.filename}: " if err.filename else ""
        print(f"sparseflow: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparseflow: interrupted", file=sys.stderr)
        return _exit_now(130)


def _exit_now(code: int) -> int:
    """Flush the output and end the process at once: after an interrupt (whose cleanup has
    run in `finally` blocks) no library's exit hook may turn exit status 130 into a signal."""
    import contextlib
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
