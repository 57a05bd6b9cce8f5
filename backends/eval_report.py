"""The human-readable form of an `evaluate` report (the `--json` form is the dict itself)."""

from __future__ import annotations


def format_eval(report: dict) -> str:
    """Return the lines `sparseflow eval` prints for one report."""
    lines = [
        f"{report['model']} on {report['target']} with recipe {report['recipe']} "
        f"({report['kind']}; text {report['text']}, calibration {report['calibration_text']})"
    ]
    if report["kind"] == "decoder":
        lines += _decoder_lines(report)
    else:
        lines += _encoder_lines(report)
    layers = " ".join(f"{row['rel_error']:.3g}" for row in report["layer_errors"])
    lines += [
        f"  output rel. error     {report['output_rel_error_vs_dense']:.3e} vs dense"
        + _kernel_error(report),
        f"  per-layer rel. error  {layers}",
        f"  weight bytes          {report['weight_bytes']:,} "
        f"({report['compression_ratio']:.2f}x smaller than {report['dense_weight_bytes']:,})",
    ]
    return "\n".join(lines + [f"  note: {note}" for note in report["notes"]])


def _decoder_lines(r: dict) -> list[str]:
    change = r["perplexity"] / r["perplexity_dense"] - 1
    return [
        f"  tokens scored         {r['scored_tokens']:,} ({r['windows']} windows of {r['window']}, "
        f"stride {r['stride']})",
        f"  perplexity            {r['perplexity']:.3f} vs {r['perplexity_dense']:.3f} dense "
        f"({change:+.2%}; uniform over the vocabulary: {r['uniform_perplexity']})",
        f"  top-1 agreement       {r['top1_agreement']:.2%} (next-token accuracy "
        f"{r['top1_accuracy']:.2%} vs {r['top1_accuracy_dense']:.2%} dense)",
    ]


def _encoder_lines(r: dict) -> list[str]:
    return [
        f"  sentences             {r['sentences']} ({r['pooling']} pooling"
        f"{', normalized' if r['normalized'] else ''})",
        f"  embedding cosine      mean {r['cosine_mean']:.4f}, min {r['cosine_min']:.4f}",
        f"  retrieval agreement   {r['retrieval_agreement']:.2%} (same nearest neighbour)",
    ]


def _kernel_error(r: dict) -> str:
    kernel = r.get("output_rel_error_vs_reference")
    return "" if kernel is None else f", {kernel:.3e} vs the reference (target kernels)"
