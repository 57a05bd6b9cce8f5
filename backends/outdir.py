"""Output folders and files: checked before long work, written whole or not at all.

`staged_dir(out, ours, force)` yields a fresh temporary folder beside `out`; when the block
finishes it replaces `out` whole, and on any error or interrupt it is removed, leaving `out`
as it was. `out` may be new, empty, or hold an earlier output of the same kind (`ours(out)`
says so); anything else (a file, a symbolic link, a folder of other files) is refused with
an InputError naming the path, unless `force`, which replaces a folder whole. Files are only
ever created inside the fresh folder, so no link inside `out` is followed.
`check_output_file(path, suffixes)` checks that a file can be written before the work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sparseflow.ir.errors import InputError


def check_output_dir(out: Path, ours: Callable[[Path], bool], force: bool, option: str) -> None:
    """Raise InputError unless `out` may be written (see the module doc)."""
    if out.is_symlink():
        raise InputError(f"{option} {out}: is a symbolic link; give a folder path")
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force and not ours(out):
        raise InputError(
            f"{option} {out}: the folder holds other files; give a new or empty folder, "
            "or --force to replace it whole"
        )


@contextmanager
def staged_dir(
    out: Path, ours: Callable[[Path], bool], force: bool, option: str = "-o"
) -> Iterator[Path]:
    """Yield a temporary folder that replaces `out` when the block completes."""
    check_output_dir(out, ours, force, option)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise InputError(f"{option} {out}: cannot write there ({exc.strerror})") from None
    try:
        yield staging
        _replace(out, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace(out: Path, staging: Path) -> None:
    """Move `staging` to `out`, removing what `out` held only once the new folder is there."""
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_output_file(path: str | Path, suffixes: tuple[str, ...], option: str) -> Path:
    """Return `path` if a file of one of `suffixes` can be written there; else InputError."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    if path.is_symlink() or path.is_dir():
        raise InputError(f"{option} {path}: is a folder or a link, not a file to write")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{option} {path}: not writable")
    return path
