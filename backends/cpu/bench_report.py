"""Provide the text table and the speedup plot of a `run_spmm_bench` result."""

from __future__ import annotations

from pathlib import Path

from sparseflow.ir.errors import InputError

_HEADER = (
    f"{'m':>6} {'k':>5} {'n':>4} {'pattern':<12} {'spars':>5} {'dtype':<5} "
    f"{'dense_ms':>9} {'sparse_ms':>9} {'scipy_ms':>9} {'x_dense':>7} {'x_scipy':>7}"
)


def _ms(seconds: float | None) -> str:
    """Format seconds as milliseconds, or '-' for None."""
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def _ratio(value: float | None) -> str:
    """Format a speedup, or '-' for None."""
    return "-" if value is None else f"{value:.2f}"


def format_spmm_table(result: dict) -> str:
    """Return the benchmark rows as a fixed-width text table (times in ms)."""
    lines = [_HEADER]
    for r in result["rows"]:
        lines.append(
            f"{r['m']:>6} {r['k']:>5} {r['n']:>4} {r['pattern']:<12} {r['sparsity']:>5.2f} "
            f"{r['dtype']:<5} {_ms(r['dense_s']):>9} {_ms(r['sparse_s']):>9} "
            f"{_ms(r['scipy_s']):>9} {_ratio(r['speedup_vs_dense']):>7} "
            f"{_ratio(r['speedup_vs_scipy']):>7}"
        )
    return "\n".join(lines)


def _series(rows: list[dict], n: int) -> dict[str, tuple[list[float], list[float]]]:
    """Group rows with n tokens by 'pattern dtype'; median speedup per sparsity."""
    import numpy as np

    grouped: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        if r["n"] == n and r["pattern"] != "dense":
            label = f"{r['pattern']} {r['dtype']}"
            grouped.setdefault(label, {}).setdefault(r["sparsity"], []).append(
                r["speedup_vs_dense"]
            )
    return {
        label: (sorted(by_s), [float(np.median(by_s[s])) for s in sorted(by_s)])
        for label, by_s in grouped.items()
    }


def plot_spmm(result: dict, path: str | Path) -> Path:
    """Write a PNG of speedup over dense BLAS vs sparsity, one line per pattern and dtype.

    One panel per token count (n = 1 decode, n = 128 prefill); each point is the median over
    the layer shapes. Return the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.get("rows", [])
    token_counts = sorted({r["n"] for r in rows})
    if not token_counts:
        raise InputError("plot_spmm: the benchmark result has no rows")
    fig, axes = plt.subplots(1, len(token_counts), figsize=(5.5 * len(token_counts), 4),
                             squeeze=False)  # fmt: skip
    for ax, n in zip(axes[0], token_counts, strict=True):
        for label, (xs, ys) in sorted(_series(rows, n).items()):
            ax.plot(xs, ys, marker="o", label=label)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_xlabel("sparsity")
        ax.set_ylabel("speedup vs dense numpy (median over shapes)")
        ax.set_title(f"n = {n} token{'s' if n != 1 else ''}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
