"""Instruction tables: one numpy column per instruction field, packed to words only on demand.

A `Block` is a run of one core's instructions held as columns (the format of
`program.Stream.table()`): `opcode`, `wait`, `release`, every field name of every instruction
class (0 where an instruction lacks the field; choice fields as their values: n in 2..16,
wbits 8/4, buffer and op as their integer codes, bools as 0/1, act as its index in
("none", "relu", "silu", "gelu")), and the derived `nbytes` (HBM bytes a LOAD/STORE moves)
and `elements` (FP16 elements an SFU instruction processes).

The compiler builds blocks straight from its instruction lists (`block_of`); a simulator reads
columns and never needs the binary. `pack` turns a table into the 32-bit words of
`isa.encode`, validating every field as `isa.Field.encode` does, and is what `compile` runs
when it writes DIR/program. A block derived from others by a per-layer address step
(`Block.shifted`) shares every unchanged column with its base and remembers which columns
changed, so a simulator can tell that it times exactly like its base.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cache, cached_property

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.ir.errors import InputError

CLASSES = tuple(isa.INSTRUCTIONS.values())
FIELD_NAMES = tuple(dict.fromkeys(f.name for cls in CLASSES for f in cls.FIELDS))
FIELD_COLUMNS = ("opcode", "wait", "release", *FIELD_NAMES)
DERIVED = ("nbytes", "elements")
COLUMNS = (*FIELD_COLUMNS, *DERIVED)
N_WORDS = np.zeros(max(isa.Opcode) + 1, np.int64)
for _cls in CLASSES:
    N_WORDS[_cls.OPCODE] = _cls.n_words()
ACT_FIELD = "act"
DEFAULTS = {
    cls: {f.name: f.default for f in dataclasses.fields(cls) if f.name in FIELD_NAMES}
    for cls in CLASSES
}


@dataclass(frozen=True, eq=False)
class Block:
    """A run of one core's instructions as field columns (see the module docstring).

    `base` is the block this one was derived from by shifting `changed` columns (None for a
    block lowered instruction by instruction); every other column is its base's array.
    """

    cols: Mapping[str, np.ndarray]
    base: Block | None = None
    changed: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.cols["opcode"])

    @cached_property
    def n_words(self) -> int:
        return int(N_WORDS[self.cols["opcode"]].sum())

    def shifted(self, step: Mapping[str, np.ndarray] | None, steps: int) -> Block | None:
        """Return this block plus `steps` x `step` (`step_to` between two blocks), column by
        column; None when there is no step (the blocks do not repeat). Shifted fields are not
        checked here (`check` them before use: a candidate may be compared and dropped)."""
        if step is None or any(len(d) != len(self) for d in step.values()):
            return None
        cols, changed = dict(self.cols), set(step)
        for name, delta in step.items():
            cols[name] = self.cols[name] + steps * delta
        if changed:
            _derive(cols)
            changed |= {c for c in DERIVED if not np.array_equal(cols[c], self.cols[c])}
        return Block(cols, self, frozenset(changed))

    def step_to(self, later: Block) -> dict[str, np.ndarray] | None:
        """Return later - self for each field column that differs; None when the blocks
        differ in length or opcodes."""
        if len(self) != len(later) or not np.array_equal(self.cols["opcode"], later.cols["opcode"]):
            return None
        return {
            name: later.cols[name] - self.cols[name]
            for name in FIELD_COLUMNS
            if not np.array_equal(self.cols[name], later.cols[name])
        }

    def same(self, other: Block) -> bool:
        """Return whether both blocks hold the same instructions."""
        return len(self) == len(other) and all(
            np.array_equal(self.cols[c], other.cols[c]) for c in COLUMNS
        )


def block_of(
    classes: Sequence[type[isa.Instruction]],
    fields: Sequence[Mapping],
    waits: Sequence[int],
    releases: Sequence[int],
) -> Block:
    """Return the block of instructions given by class, non-default fields and token masks."""
    n = len(classes)
    cols = {name: np.zeros(n, np.int64) for name in COLUMNS}
    cols["opcode"] = np.array([c.OPCODE for c in classes] or [], np.int64)
    cols["wait"] = np.array(waits, np.int64)
    cols["release"] = np.array(releases, np.int64)
    groups: dict[tuple, list[int]] = {}  # rows of one class setting the same fields
    for row, (cls, f) in enumerate(zip(classes, fields, strict=True)):
        groups.setdefault((cls, *f), []).append(row)
    for (cls, *names), rows in groups.items():
        at = np.array(rows, np.int64)
        if names:
            table = [tuple(fields[r].values()) for r in rows]
            if ACT_FIELD in names:
                a = names.index(ACT_FIELD)
                table = [(*t[:a], _act_code(cls, t[a]), *t[a + 1 :]) for t in table]
            values = np.array(table, np.int64)
            for j, name in enumerate(names):
                cols[name][at] = values[:, j]
        for name, default in DEFAULTS[cls].items():
            if default and name not in names:
                cols[name][at] = default if name != ACT_FIELD else _act_code(cls, default)
    check(cols)
    _derive(cols)
    return Block(cols)


def table_of(program: Sequence[isa.Instruction]) -> Block:
    """Return the block of a list of instruction objects."""
    fields = [{name: getattr(i, name) for name in DEFAULTS[type(i)]} for i in program]
    return block_of(
        [type(i) for i in program], fields, [i.wait for i in program], [i.release for i in program]
    )


def _act_code(cls: type[isa.Instruction], value: object) -> int:
    field = next(f for f in cls.FIELDS if f.name == ACT_FIELD)
    return field.encode(cls.OPCODE.name, value)


def _derive(cols: dict[str, np.ndarray]) -> None:
    """Fill `nbytes` (HBM bytes of LOAD/STORE) and `elements` (FP16 elements of SFU)."""
    op = cols["opcode"]
    per_load = cols["length"] * cols["outer_count"] * cols["inner_count"]
    per_store = cols["length"] * cols["count"]
    store = np.where(op == isa.Opcode.STORE, per_store, 0)
    words = np.where(op == isa.Opcode.LOAD, per_load, store)
    cols["nbytes"] = words * isa.HBM_WORD_BYTES
    cols["elements"] = np.where(op == isa.Opcode.SFU, cols["rows"] * cols["length"], 0)


def concat(blocks: Sequence[Block]) -> dict[str, np.ndarray]:
    """Return the columns of consecutive blocks as one table."""
    return {name: np.concatenate([b.cols[name] for b in blocks]) for name in COLUMNS}


def check(cols: Mapping[str, np.ndarray], names: set[str] | None = None) -> None:
    """Raise InputError, as `isa` encoding would, for a field value (of `names`, by default
    all) that its instruction cannot encode: an estimate rejects what `compile` could not
    write."""
    opcode = cols["opcode"]
    if _encodable(cols, names):
        return
    for cls in CLASSES:  # find the first bad value class by class, as `pack` would
        rows = np.flatnonzero(opcode == cls.OPCODE)
        if not len(rows):
            continue
        for field in isa.HEADER + cls.FIELDS:
            if names is None or field.name in names:
                _field_code(cls, field, cols[field.name][rows])
        _check_own_queue(cls, cols, rows)


def _encodable(cols: Mapping[str, np.ndarray], names: set[str] | None) -> bool:
    """Return whether every field value (of `names`) encodes, whole columns at once."""
    opcode = cols["opcode"]
    if len(opcode) and (opcode.min() < 0 or opcode.max() >= len(N_WORDS)):
        return False
    lo, hi, member, own = _limits()
    for name, lowest in lo.items():
        if names is not None and name not in names:
            continue
        values = cols[name]
        bad = (values < lowest[opcode]) | (values > hi[name][opcode])
        if name in member:
            allowed = member[name]
            bad |= ~allowed[opcode, np.clip(values, 0, allowed.shape[1] - 1)]
        if bad.any():
            return False
    queue = own[opcode]
    return not ((cols["wait"] & queue).any() or (cols["release"] & queue).any())


@cache
def _limits() -> tuple[dict, dict, dict, np.ndarray]:
    """Return per field name the lowest and highest value each opcode's field takes (no
    limit where the opcode lacks the field), per choice field which values each opcode's
    field allows, and per opcode the bit of its own queue in wait/release masks."""
    unlimited = np.iinfo(np.int64)
    lo: dict[str, np.ndarray] = {}
    hi: dict[str, np.ndarray] = {}
    member: dict[str, np.ndarray] = {}
    own = np.zeros(len(N_WORDS), np.int64)
    for cls in CLASSES:
        op = int(cls.OPCODE)
        own[op] = 0 if cls.QUEUE is None else 1 << cls.QUEUE
        for field in isa.HEADER + cls.FIELDS:
            lo.setdefault(field.name, np.full(len(N_WORDS), unlimited.min))
            hi.setdefault(field.name, np.full(len(N_WORDS), unlimited.max))
            if field.name == ACT_FIELD:
                lo[field.name][op], hi[field.name][op] = 0, len(field.values) - 1
            elif field.values is not None:
                lookup = _codes_of(field)
                lo[field.name][op], hi[field.name][op] = 0, len(lookup) - 1
                allowed = member.get(field.name)
                if allowed is None or allowed.shape[1] < len(lookup):
                    wider = np.ones((len(N_WORDS), len(lookup)), bool)
                    if allowed is not None:
                        wider[:, : allowed.shape[1]] = allowed
                    member[field.name] = allowed = wider
                allowed[op] = False
                allowed[op, : len(lookup)] = lookup >= 0
            else:
                top = (1 << field.width) - 1 if field.hi is None else field.hi
                lo[field.name][op], hi[field.name][op] = field.lo, top
    return lo, hi, member, own


def pack(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """Return the uint32 words of a table's instructions; InputError names a bad field."""
    opcode = cols["opcode"]
    known = np.isin(opcode, [int(c.OPCODE) for c in CLASSES])
    if not known.all():
        raise InputError(f"instruction {int(np.argmin(known))}: unknown opcode")
    lengths = N_WORDS[opcode]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    words = np.zeros(int(lengths.sum()), np.int64)
    words[offsets] = opcode << 28
    for cls in CLASSES:
        rows = np.flatnonzero(opcode == cls.OPCODE)
        for field in isa.HEADER + cls.FIELDS:
            code = _field_code(cls, field, cols[field.name][rows])
            words[offsets[rows] + field.word] |= code << field.lsb
        _check_own_queue(cls, cols, rows)
    return words.astype(np.uint32)


def _field_code(cls: type[isa.Instruction], field: isa.Field, values: np.ndarray) -> np.ndarray:
    """Return the bit codes of one field's values; raise as `isa.Field.encode` on a bad one."""
    if not len(values):
        return values
    if field.name == ACT_FIELD:  # held as its code already (checked when the block was built)
        lo, hi, codes = 0, len(field.values) - 1, values
    elif field.values is not None:
        lookup = _codes_of(field)
        inside = (values >= 0) & (values < len(lookup))
        codes = np.where(inside, lookup[np.where(inside, values, 0)], -1)
        if codes.min() < 0:
            field.encode(cls.OPCODE.name, int(values[np.argmax(codes < 0)]))  # raises
        return codes
    else:
        lo, hi, codes = field.lo, (1 << field.width) - 1 if field.hi is None else field.hi, values
    if values.min() < lo or values.max() > hi:
        value = int(values[np.argmax((values < lo) | (values > hi))])
        if field.name != ACT_FIELD:
            field.encode(cls.OPCODE.name, value)  # raises, naming instruction and field
        raise InputError(f"{cls.OPCODE.name}.{field.name}: code {value} is not defined")
    return codes


@cache
def _codes_of(field: isa.Field) -> np.ndarray:
    """Return value -> bit code of a choice field (-1 for values it cannot hold)."""
    allowed = [int(v) for v in field.values]
    lookup = np.full(max(allowed) + 1, -1, np.int64)
    lookup[allowed] = np.arange(len(allowed))
    return lookup


def listing_of(cols: Mapping[str, np.ndarray]) -> str:
    """Return `isa.listing` of a table's instructions, formatted straight from the columns."""
    rows = {name: cols[name].tolist() for name in FIELD_COLUMNS}
    lines, pos = [], 0
    for i, code in enumerate(rows["opcode"]):
        cls = isa.INSTRUCTIONS[isa.Opcode(code)]
        parts = [f"{cls.OPCODE.name:<5}"]
        parts += [f"{f.name}={_text(f, rows[f.name][i])}" for f in cls.FIELDS]
        wait, release = isa.mask_letters(rows["wait"][i]), isa.mask_letters(rows["release"][i])
        lines.append(f"{pos:06d}  {' '.join(parts)} wait={wait} release={release}\n")
        pos += int(N_WORDS[code])
    return "".join(lines)


def _text(field: isa.Field, value: int) -> str:
    """Return a field's value as `isa.Instruction.listing` prints it."""
    if field.name == "n":
        return f"{value}:16"
    if field.name == ACT_FIELD or field.values is isa.BOOL:
        return str(field.values[value])
    if field.values is not None and isinstance(field.values[0], IntEnum):
        return type(field.values[0])(value).name.lower()
    return str(value)


def _check_own_queue(cls: type[isa.Instruction], cols: Mapping, rows: np.ndarray) -> None:
    if cls.QUEUE is None:
        return
    for name in ("wait", "release"):
        if (cols[name][rows] >> cls.QUEUE & 1).any():
            raise InputError(f"{cls.OPCODE.name}.{name}: names the instruction's own queue")
