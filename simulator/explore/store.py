"""The results store of a sweep: OUT/space.json and OUT/results.jsonl.

space.json records the normalised space (`Space.identity`: model, targets and recipes as
plain data, workload, axes, objectives, constraints) and the search settings of the last
run. results.jsonl holds one JSON record per evaluated point, appended, flushed and synced
as each point finishes, so an interrupt, a killed worker or a crash loses no finished point.

Opening a store resumes it: the records already there are kept and only missing points are
evaluated. A last line cut short by a crash is dropped (that point is evaluated again); any
other unreadable line is an error naming the file and line. A store of a different space
is refused unless `force`, which starts it afresh.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from sparseflow.backends.outdir import check_output_dir
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import dumps_strict

SPACE_FILE = "space.json"
RESULTS_FILE = "results.jsonl"
FORMAT = 1  # bump when a record's meaning changes; older stores are then refused


class Store:
    """An open results store: the records so far, and appending new ones."""

    def __init__(self, out: Path, records: dict[str, dict[str, Any]], handle: IO[str]) -> None:
        self.out = out
        self.records = records
        self._handle = handle

    def append(self, record: dict[str, Any]) -> None:
        """Add a finished point's record and make it durable at once."""
        self._handle.write(json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.records[record["id"]] = record

    def close(self) -> None:
        """Close the results file."""
        self._handle.close()


def open_store(out: Path, identity: dict[str, Any], search: dict[str, Any], force: bool) -> Store:
    """Open (or create) the store for this space in folder `out` (see the module doc)."""
    check_output_dir(out, lambda d: (d / SPACE_FILE).is_file(), force, "-o")
    stored = read_identity(out)
    wanted = json.loads(json.dumps({"format": FORMAT, "space": identity}))
    if stored is not None and stored != wanted and not force:
        raise InputError(
            f"-o {out}: holds the results of a different design space ({out / SPACE_FILE}); "
            "give another folder, or --force to discard them"
        )
    results = out / RESULTS_FILE
    fresh = stored != wanted
    try:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:
            results.unlink(missing_ok=True)
        _write_json(out / SPACE_FILE, {**wanted, "search": search})
        records = {} if fresh else read_records(results)
        return Store(out, records, results.open("a", encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"-o {out}: cannot write the results there ({exc.strerror})") from None


def read_identity(out: Path) -> dict[str, Any] | None:
    """Return the {format, space} recorded in `out`, or None when there is none."""
    path = out / SPACE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); use --force to start afresh") from None
    return {"format": data.get("format"), "space": data.get("space")}


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Return the records of a results file by id (a later record of an id wins).

    A last line without its newline was cut short: it is dropped and the file truncated
    to its last complete line, so appends start on a line of their own.
    """
    if not path.is_file():
        return {}
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(complete.decode("utf-8", "replace").splitlines(), 1):
        try:
            record = json.loads(line)
            records[record["id"]] = record
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}: line {number} is not a result record") from None
    return records


def _write_json(path: Path, value: Any) -> None:
    """Write JSON whole: to a temporary file, then renamed over `path`."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(dumps_strict(value, str(path)) + "\n", encoding="utf-8")
    staging.replace(path)
