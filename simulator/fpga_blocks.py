"""Simulate a compiled FPGA bucket block by block, each distinct epoch once.

A compiled stream is a run of `columns.Block`s, one per lowered segment (prologue, layers,
epilogue, per prefill pass); the middle layers are blocks derived from a lowered one that
differ from it only in addresses. Barriers split the streams into epochs, and an epoch starts
with every queue empty and every transfer landed (`fpga_engine` module docstring), so its
timing depends only on its instructions' cost columns, their HBM channels relative to the
core's own, and the tokens left on entry. `BlockRunner` names each block by a digest of those
columns, each epoch by the blocks (and rows) it covers on every core, and runs each distinct
epoch once in the event loop.

Time is charged to op classes as `fpga_estimate.run_bucket` does over a whole bucket: each
instant goes to the instruction completing next on any core. Epochs follow each other, so
within an epoch the charges depend only on the epoch (cached with the classes of its
instructions), and the gap from the last completion of the previous epoch to the first of
this one goes to that first instruction. The result equals the full simulation (tests compare
every report key); the digests only decide what is simulated once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.columns import Block
from sparseflow.backends.fpga.program import Bucket
from sparseflow.simulator.fpga_costs import TIMING_COLUMNS, InstructionCost
from sparseflow.simulator.fpga_engine import (
    N_UNITS,
    NO_TOKENS,
    SYS_UNIT,
    PricedStream,
    ReuseCache,
    core_groups,
    events_of,
    relative_channels,
    simulate_epoch,
)

# Columns that decide a block's timing: costs, and the channel its transfers use.
KEY_COLUMNS = frozenset((*TIMING_COLUMNS, "channel"))


@dataclass(frozen=True)
class BlockInfo:
    """What the runner needs of one block on one core."""

    priced: PricedStream
    barriers: tuple[int, ...]  # rows of SYS BARRIER, up to the first SYS END
    end: int | None  # row of the first SYS END
    pieces: dict[int, bytes]  # first row of each run between barriers -> digest of its rows


@dataclass(frozen=True)
class EpochCharge:
    """An epoch's time by op class, from its start: its own completions only."""

    class_time_s: np.ndarray  # [classes]
    pair_time_s: np.ndarray  # [classes x N_UNITS]
    first: tuple[int, int] | None  # (class, unit) completing first; None: nothing completes
    last_end_s: float


@dataclass(frozen=True)
class BlockRun:
    """One bucket's simulated time, charges and events (no per-instruction timelines)."""

    time_s: float
    class_time_s: np.ndarray
    pair_time_s: np.ndarray
    counts: np.ndarray  # executions of each cost id
    class_dynamic_j: np.ndarray
    busy_s: np.ndarray  # [N_UNITS] seconds each unit had work in flight, all cores


class BlockRunner:
    """Run the buckets of one program on one machine, sharing blocks and epochs between them.

    `classify(columns)` returns each instruction's op class from the columns opcode, channel,
    hbm_addr, buffer and op of a whole core stream (classes may follow the stream); there are
    `n_classes`. `energy_j(cost)` prices one instruction's dynamic energy. Everything cached
    lives as long as the runner: one estimate.
    """

    def __init__(
        self,
        cache: ReuseCache,
        classify: Callable[[dict[str, np.ndarray]], np.ndarray],
        n_classes: int,
        energy_j: Callable[[InstructionCost], float],
    ) -> None:
        self.cache, self.classify, self.n_classes = cache, classify, n_classes
        self.energy_j = energy_j
        self.infos: dict[tuple[bytes, int], BlockInfo] = {}
        self.epochs: dict[tuple, tuple] = {}
        self.charges: dict[tuple, EpochCharge] = {}
        self.cost_j: list[float] = []  # dynamic joules of each priced cost, in order

    def run(self, bucket: Bucket) -> BlockRun | None:
        """Simulate `bucket`; None when its cores pass different numbers of barriers."""
        streams = bucket.streams
        infos = [self._stream_infos(core, s.blocks) for core, s in enumerate(streams)]
        epochs = [_epochs(i) for i in infos]
        if len({len(e) for e in epochs}) != 1:
            return None
        starts = [np.cumsum([0] + [len(i.priced) for i in core]) for core in infos]
        ids = [np.concatenate([i.priced.ids for i in core]) for core in infos]
        classes = [self._classes(s) for s in streams]
        channels = [np.concatenate([i.priced.channels for i in core]) for core in infos]
        groups = core_groups([set(np.unique(c).tolist()) - {-1} for c in channels])
        time_s, cls_t, pair_t, busy_s = self._walk(infos, epochs, starts, classes, groups)
        counts = sum(np.bincount(i, minlength=len(self.cache.costs)) for i in ids)
        costs = self.cache.costs
        self.cost_j += [self.energy_j(c) for c in costs[len(self.cost_j) :]]
        per_cost_j = np.array(self.cost_j)
        dyn = sum(
            np.bincount(c, weights=per_cost_j[i], minlength=self.n_classes)
            for c, i in zip(classes, ids, strict=True)
        )
        return BlockRun(time_s, cls_t, pair_t, counts, dyn, busy_s)

    def events(self, run: BlockRun):
        """Return the energy events of a run."""
        return events_of(self.cache.costs, run.counts)

    # ------------------------------------------------------------------ blocks
    def _stream_infos(self, core: int, blocks: tuple[Block, ...]) -> list[BlockInfo]:
        seen: dict[int, BlockInfo] = {}
        out = []
        for block in blocks:
            while block.base is not None and not block.changed & KEY_COLUMNS:
                block = block.base  # times exactly like its base
            if id(block) not in seen:
                seen[id(block)] = self._info(core, block)
            out.append(seen[id(block)])
        return out

    def _info(self, core: int, block: Block) -> BlockInfo:
        hbm = self.cache.machine.hbm
        cols = block.cols
        relative = relative_channels(hbm, core, np.where(_moves(cols), cols["channel"], -1))
        stacked = np.stack([cols[c] for c in TIMING_COLUMNS] + list(relative), axis=1)
        key = _digest(stacked)
        found = self.infos.get((key, core))
        if found is None:
            priced = self.cache.price_table(cols)
            costs = [self.cache.costs[i] for i in priced.ids.tolist()]
            end = [i for i, c in enumerate(costs) if c.end]
            stop = end[0] if end else None
            rows = [i for i, c in enumerate(costs[:stop]) if c.barrier]
            bounds = [0, *(r + 1 for r in rows), len(costs) if stop is None else stop + 1]
            spans = zip(bounds, bounds[1:], strict=False)
            pieces = {lo: _digest(stacked[lo:hi]) for lo, hi in spans}
            found = BlockInfo(priced, tuple(rows), stop, pieces)
            self.infos[(key, core)] = found
        return found

    def _classes(self, stream) -> np.ndarray:
        names = ("opcode", "channel", "hbm_addr", "buffer", "op")
        cols = {n: np.concatenate([b.cols[n] for b in stream.blocks]) for n in names}
        return self.classify(cols)

    # ------------------------------------------------------------------ epochs
    def _walk(self, infos, epochs, starts, classes, groups):
        n_cores = len(infos)
        offset = 0.0
        retire = [0.0] * n_cores
        sems = [NO_TOKENS] * n_cores
        total = ChargeSum(self.n_classes)
        busy_s = np.zeros((n_cores, N_UNITS))  # per core, added up as the full path does
        for k in range(len(epochs[0])):
            spans = [epochs[c][k] for c in range(n_cores)]
            resume, timelines, keys = 0.0, [None] * n_cores, []
            for group in groups:
                key = tuple(
                    (tuple(infos[c][b].pieces[lo] for b, lo, _ in spans[c]), sems[c]) for c in group
                )
                hit = self.epochs.get(key)
                if hit is None:
                    hit = self.epochs[key] = self._simulate(group, infos, spans, sems)
                keys.append(key)
                for c, t, sem in zip(group, *hit, strict=True):
                    timelines[c] = t
                    busy_s[c] += t.busy_s
                    retire[c] = max(retire[c], offset + t.retire_s)
                    sems[c] = sem
                    resume = max(resume, t.resume_s, t.retire_s)
            total.add(self._charge(tuple(keys), timelines, infos, spans, starts, classes), offset)
            offset += resume
        return max(retire + [0.0]), total.class_time_s, total.pair_time_s, busy_s.sum(axis=0)

    def _simulate(self, group, infos, spans, sems):
        streams = []
        for c in group:
            parts = [infos[c][b].priced for b, _, _ in spans[c]]
            cuts = [(lo, hi) for _, lo, hi in spans[c]]
            streams.append(
                PricedStream(
                    np.concatenate([p.ids[lo:hi] for p, (lo, hi) in zip(parts, cuts, strict=True)]),
                    np.concatenate(
                        [p.channels[lo:hi] for p, (lo, hi) in zip(parts, cuts, strict=True)]
                    ),
                )
            )
        return simulate_epoch(self.cache, streams, group, [sems[c] for c in group])

    def _charge(self, keys, timelines, infos, spans, starts, classes) -> EpochCharge:
        rows = [
            np.concatenate([np.arange(starts[c][b] + lo, starts[c][b] + hi) for b, lo, hi in s])
            for c, s in enumerate(spans)
        ]
        cls = [classes[c][r] for c, r in enumerate(rows)]
        key = (keys, tuple(x.tobytes() for x in cls))
        found = self.charges.get(key)
        if found is None:
            found = self.charges[key] = self._charge_epoch(timelines, infos, spans, cls)
        return found

    def _charge_epoch(self, timelines, infos, spans, cls) -> EpochCharge:
        unit_of = unit_ids(self.cache.costs)
        units = [
            unit_of[np.concatenate([infos[c][b].priced.ids[lo:hi] for b, lo, hi in s])]
            for c, s in enumerate(spans)
        ]
        return charge_epoch([t.end_s for t in timelines], units, cls, self.n_classes)


def unit_ids(costs: list[InstructionCost]) -> np.ndarray:
    """Return the unit (`isa.Queue`, SYS_UNIT for SYS) of each cost."""
    return np.array([SYS_UNIT if x.unit is None else int(x.unit) for x in costs], np.int64)


def charge_epoch(
    ends: list[np.ndarray], units: list[np.ndarray], classes: list[np.ndarray], n_classes: int
) -> EpochCharge:
    """Charge an epoch's time (from its start) to the op classes of its instructions: each
    instant to the instruction completing next on any core (per core: its instructions' end
    times in the epoch, units and classes; SYS instructions take no part)."""
    active = [u >= 0 for u in units]
    end = np.concatenate([e[a] for e, a in zip(ends, active, strict=True)])
    if not len(end):
        return EpochCharge(np.zeros(n_classes), np.zeros(n_classes * N_UNITS), None, 0.0)
    cls = np.concatenate([c[a] for c, a in zip(classes, active, strict=True)])
    unit = np.concatenate([u[a] for u, a in zip(units, active, strict=True)])
    order = np.argsort(end, kind="stable")
    spans = np.diff(np.concatenate([[0.0], end[order]]))
    c, u = cls[order], unit[order]
    return EpochCharge(
        np.bincount(c, weights=spans, minlength=n_classes),
        np.bincount(c * N_UNITS + u, weights=spans, minlength=n_classes * N_UNITS),
        (int(c[0]), int(u[0])),
        float(end[order[-1]]),
    )


class ChargeSum:
    """Add up the charges of consecutive epochs: the gap from one epoch's last completion to
    the next one's first goes to that first instruction."""

    def __init__(self, n_classes: int) -> None:
        self.class_time_s = np.zeros(n_classes)
        self.pair_time_s = np.zeros(n_classes * N_UNITS)
        self.last_end_s = 0.0

    def add(self, charge: EpochCharge, offset_s: float) -> None:
        """Add an epoch that starts at `offset_s`."""
        if charge.first is None:
            return
        self.class_time_s += charge.class_time_s
        self.pair_time_s += charge.pair_time_s
        lead = offset_s - self.last_end_s
        self.class_time_s[charge.first[0]] += lead
        self.pair_time_s[charge.first[0] * N_UNITS + charge.first[1]] += lead
        self.last_end_s = offset_s + charge.last_end_s


def _digest(rows: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(rows).tobytes(), digest_size=16).digest()


def _moves(cols: dict[str, np.ndarray]) -> np.ndarray:
    return (cols["opcode"] == isa.Opcode.LOAD) | (cols["opcode"] == isa.Opcode.STORE)


def _epochs(infos: list[BlockInfo]) -> list[list[tuple[int, int, int]]]:
    """Return the epochs of a stream: each a list of (block, first row, end row) spans,
    closed after each barrier, the last one at the first SYS END."""
    epochs: list[list[tuple[int, int, int]]] = [[]]
    for index, info in enumerate(infos):
        lo = 0
        for row in info.barriers:
            epochs[-1].append((index, lo, row + 1))
            epochs.append([])
            lo = row + 1
        hi = len(info.priced) if info.end is None else info.end + 1
        if lo < hi:
            epochs[-1].append((index, lo, hi))
        if info.end is not None:
            break
    return epochs if epochs[-1] else epochs[:-1]
