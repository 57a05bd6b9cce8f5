"""Chrome / Perfetto trace-event JSON of simulated unit activity.

One process per core, one thread per unit (load, store, matrix, SFU) plus the dispatcher's
SYS instructions; every instruction is a complete event ("ph": "X") with its start and
duration in microseconds. Phases of a request (prefill, decode steps) follow each other on
the same tracks, shifted by the time of the phases before them. Open the file in
ui.perfetto.dev or chrome://tracing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.simulator.fpga_engine import SYS_UNIT, SimResult

US = 1e6
TRACKS = {int(q): q.name.lower() for q in isa.Queue} | {SYS_UNIT: "dispatcher (sys)"}


def trace_events(
    phases: list[tuple[str, SimResult, list[np.ndarray]]], mnemonics: dict[int, str]
) -> list[dict]:
    """Return trace events for consecutive `phases` (label, result, opcodes per core).

    `mnemonics` maps opcodes to the names shown on the events.
    """
    events: list[dict] = []
    cores = max((len(r.cores) for _, r, _ in phases), default=0)
    for core in range(cores):
        events.append(_meta("process_name", core, 0, f"core {core}"))
        for tid, name in TRACKS.items():
            events.append(_meta("thread_name", core, tid, name))
    offset = 0.0
    for label, result, opcodes in phases:
        for core, timeline in enumerate(result.cores):
            units = result.units[core]
            start = (offset + timeline.start_s) * US
            dur = (timeline.end_s - timeline.start_s) * US
            for i, (u, s, d, op) in enumerate(
                zip(
                    units.tolist(),
                    start.tolist(),
                    dur.tolist(),
                    opcodes[core].tolist(),
                    strict=True,
                )
            ):
                events.append(
                    {
                        "name": mnemonics[op],
                        "cat": label,
                        "ph": "X",
                        "ts": s,
                        "dur": d,
                        "pid": core,
                        "tid": u,
                        "args": {"index": i},
                    }
                )
        offset += result.time_s
    return events


def _meta(kind: str, pid: int, tid: int, name: str) -> dict:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def write_trace(path: str | Path, events: list[dict]) -> Path:
    """Write `events` as a trace-event JSON object; return the path."""
    path = Path(path)
    path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}))
    return path
