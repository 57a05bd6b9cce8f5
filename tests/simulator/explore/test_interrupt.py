"""Ctrl-C: `sparseflow explore` stops, keeps every finished point, ends its workers and exits
130 with one line; the next run evaluates exactly the rest. A worker killed mid-run loses no
stored point either."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from sparseflow.simulator.explore import load_space
from sparseflow.simulator.explore.points import planned_points
from sparseflow.simulator.explore.store import RESULTS_FILE

from .conftest import write_space

LONGER_AXES = {
    "hbm.channels": [16, 32],
    "clock_hz": {"range": [150.0e6, 375.0e6], "step": 25.0e6},
    "recipe.sparsify_flightllm.density": [0.25, 0.5],
}


def start(space: Path, out: Path, jobs: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "sparseflow", "explore", str(space), "-o", str(out), "--json"]
    return subprocess.Popen(
        [*argv, "--jobs", str(jobs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, limit_s: float = 60) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end and proc.poll() is None:
        if path.is_file() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} results did not appear (exit {proc.poll()})")


def stored_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_sigint_keeps_finished_points_and_the_next_run_finishes(tmp_path):
    space_path = write_space(tmp_path, axes=LONGER_AXES)
    expected = {p.id for p in planned_points(load_space(space_path), None, 0)}
    out = tmp_path / "out"
    proc = start(space_path, out, jobs=2)
    wait_for_lines(out / RESULTS_FILE, 4, proc)
    workers = psutil.Process(proc.pid).children()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.count("\n") == 1 and "interrupted" in err, err
    assert workers and not any(w.is_running() and w.status() != "zombie" for w in workers)
    kept = stored_ids(out / RESULTS_FILE)  # every line whole and readable
    assert 4 <= len(kept) < len(expected) and set(kept) <= expected
    rest = start(space_path, out, jobs=2)
    result = json.loads(rest.communicate(timeout=120)[0])
    assert rest.returncode == 0 and result["new"] == len(expected) - len(kept)
    assert set(stored_ids(out / RESULTS_FILE)) == expected


def test_a_killed_worker_loses_no_stored_point(tmp_path):
    space_path = write_space(tmp_path, axes=LONGER_AXES)
    out = tmp_path / "out"
    proc = start(space_path, out, jobs=2)
    wait_for_lines(out / RESULTS_FILE, 3, proc)
    os.kill(psutil.Process(proc.pid).children()[0].pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    kept = stored_ids(out / RESULTS_FILE)
    assert proc.returncode == 1 and "worker" in err and err.count("\n") == 1, err
    assert len(kept) >= 3
    again = start(space_path, out, jobs=2)
    result = json.loads(again.communicate(timeout=120)[0])
    assert again.returncode == 0 and result["new"] == result["evaluated"] - len(kept)
