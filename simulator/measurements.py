"""Measured runs of a device, read from a CSV file, to calibrate and validate its model.

One row per measured request. Columns (header on the first line that is not a comment; lines
starting with `#` are comments and keep their line numbers):

    model, recipe, batch, prompt, gen        the request (required)
    decode_tokens_per_s, ttft_s, e2e_s,      what was measured: any of them, at least one per
    avg_power_w                              row; empty cells are "not measured"
    role                                     `fit` (default: the calibration fits the row) or
                                             `check` (predicted and compared, never fitted)
    framework, source, note                  free text carried into reports

`model` is a built-in name or a Hugging Face config.json (a path relative to the CSV's
folder); `recipe` a built-in recipe name or YAML. The metrics compare with the report keys
in `METRIC_REPORT_KEYS`; `e2e_s` with the end-to-end latency (prefill + every decode step).
Any bad cell raises InputError naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from sparseflow.ir.errors import InputError
from sparseflow.ir.models.zoo import load_config
from sparseflow.passes.recipe import load_recipe

REQUEST_COLUMNS = ("model", "recipe", "batch", "prompt", "gen")
METRIC_REPORT_KEYS = {
    "decode_tokens_per_s": "decode_tokens_per_s",
    "ttft_s": "prefill_latency_s",
    "e2e_s": "e2e_latency_s",
    "avg_power_w": "avg_power_w",
}
TEXT_COLUMNS = ("role", "framework", "source", "note")
ROLES = ("fit", "check")


@dataclass(frozen=True)
class Measurement:
    """One measured request: where it is in its file, the request, and what was measured."""

    file: str
    line: int
    model: str
    recipe: str
    batch: int
    prompt: int
    gen: int
    metrics: tuple[tuple[str, float], ...]
    role: str = "fit"
    framework: str = ""
    source: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        """Return a short description: model, batch, prompt/gen and framework."""
        framework = f" {self.framework}" if self.framework else ""
        model = Path(self.model).stem if self.model.endswith(".json") else self.model
        return f"{model} b{self.batch} {self.prompt}/{self.gen}{framework}"


def read_measurements(path: str | Path) -> list[Measurement]:
    """Read and check every row of a measurements CSV (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read measurements: {exc.strerror}") from None
    numbered = [(i, line) for i, line in enumerate(text.splitlines(), 1) if _is_data(line)]
    if not numbered:
        raise InputError(f"{path}: no header line (and no rows)")
    (header_line, header_text), *rows = numbered
    header = [h.strip() for h in next(csv.reader([header_text]))]
    _check_header(path, header_line, header)
    cells = csv.reader([line for _, line in rows])
    measured = [_row(path, line, header, row) for (line, _), row in zip(rows, cells, strict=True)]
    if not measured:
        raise InputError(f"{path}: no measurement rows after the header")
    return measured


def _is_data(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _check_header(path: Path, line: int, header: list[str]) -> None:
    known = (*REQUEST_COLUMNS, *METRIC_REPORT_KEYS, *TEXT_COLUMNS)
    for column in header:
        if column not in known:
            raise InputError(
                f"{path}: line {line}, column '{column}': unknown column (known: "
                f"{', '.join(known)})"
            )
    for column in REQUEST_COLUMNS:
        if column not in header:
            raise InputError(f"{path}: line {line}, column '{column}': missing column")
    if len(set(header)) != len(header):
        raise InputError(f"{path}: line {line}: a column appears twice")
    if not any(m in header for m in METRIC_REPORT_KEYS):
        raise InputError(
            f"{path}: line {line}: no measured column (one of {', '.join(METRIC_REPORT_KEYS)})"
        )


def _row(path: Path, line: int, header: list[str], row: list[str]) -> Measurement:
    if len(row) != len(header):
        raise InputError(f"{path}: line {line}: {len(row)} cells, the header has {len(header)}")
    cell = dict(zip(header, (c.strip() for c in row), strict=True))

    def fail(column: str, problem: str) -> InputError:
        return InputError(f"{path}: line {line}, column '{column}': {problem}")

    model = _model(path, cell["model"], fail)
    recipe = cell["recipe"]
    try:
        load_recipe(recipe)
    except InputError as err:
        raise fail("recipe", str(err)) from None
    ints = {c: _positive_int(cell[c], c, fail) for c in ("batch", "prompt", "gen")}
    metrics = tuple(
        (m, _positive_float(cell[m], m, fail)) for m in METRIC_REPORT_KEYS if cell.get(m, "")
    )
    if not metrics:
        raise fail(next(m for m in METRIC_REPORT_KEYS if m in header), "no measured value")
    role = cell.get("role", "") or "fit"
    if role not in ROLES:
        raise fail("role", f"expected one of {list(ROLES)}, got {role!r}")
    texts = {c: cell.get(c, "") for c in ("framework", "source", "note")}
    return Measurement(str(path), line, model, recipe, **ints, metrics=metrics, role=role, **texts)


def _model(path: Path, name: str, fail) -> str:
    """Return the model source of a cell: a built-in name or a config path (CSV-relative)."""
    if not name:
        raise fail("model", "empty")
    candidate = path.parent / name
    source = str(candidate) if name.endswith(".json") and candidate.is_file() else name
    try:
        load_config(source)
    except InputError as err:
        raise fail("model", str(err)) from None
    return source


def _positive_int(text: str, column: str, fail) -> int:
    try:
        value = int(text)
    except ValueError:
        raise fail(column, f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise fail(column, f"must be >= 1, got {value}")
    return value


def _positive_float(text: str, column: str, fail) -> float:
    try:
        value = float(text)
    except ValueError:
        raise fail(column, f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise fail(column, f"must be a finite number > 0, got {text}")
    return value
