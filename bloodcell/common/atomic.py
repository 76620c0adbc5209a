"""Atomic outputs: a stage writes to a temporary sibling and renames it when complete.

A killed or failed job therefore never leaves a half-written file or folder that looks whole.

Ownership of output folders (the one place of this rule): every folder written by
:func:`atomic_dir` carries a marker file, ``.bloodcell-output``, holding the name of the
command that made it (one line, e.g. ``synth``: no time or process id, so the folder's bytes
stay reproducible). A command replaces an existing output folder only when it carries that
same command's marker; it refuses, with a UserError naming the folder and the fix, before
anything is deleted:

- the current folder, or a folder holding it;
- one of its inputs, or a folder holding one (``inputs``), and likewise its other outputs
  (``outputs``: a metrics file, the second folder of ``evaluate``);
- a file or a symbolic link;
- a non-empty folder without the marker (not made by bloodcell, or made before the marker
  existed: delete such an old output yourself; Snakemake and DVC delete declared outputs
  before a job runs, so pipeline reruns are unaffected), or one made by another command.

Temporary folders (``.NAME.tmp-*`` beside the output) are locked while in use; those left by
a killed run are removed by the next run of the same output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from bloodcell.common.errors import UserError

MARKER = ".bloodcell-output"
"""Name of the marker file in every output folder; its content is the command's name."""


def made_by(folder: str | os.PathLike) -> str | None:
    """The command named by ``folder``'s marker, or None when it has none."""
    marker = Path(folder) / MARKER
    if not marker.is_file():  # a link into DVC's cache counts (read only, 200 bytes at most)
        return None
    try:
        with open(marker, "rb") as f:
            text = f.read(200).decode("utf-8", "replace")
    except OSError:
        return None
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else None


def _within(path: Path, folder: Path) -> bool:
    """Whether resolved ``path`` is ``folder`` or lies inside it."""
    return path == folder or folder in path.parents


def check_output(path: str | os.PathLike, command: str, inputs: Iterable = (),
                 outputs: Iterable = ()) -> None:
    """UserError unless ``command`` may write (or replace) the output folder ``path``.

    ``inputs``: paths the command reads; ``outputs``: its other outputs. See the module's
    docstring for the rule. Nothing is created or deleted here.
    """
    out = Path(path)
    who = f"`bloodcell {command}`"
    if out.is_symlink():
        raise UserError(f"{out}: is a symbolic link, not a folder {who} made; choose a new "
                        "output folder")
    res = out.resolve()
    if _within(Path.cwd().resolve(), res):
        raise UserError(f"{out}: is the current folder or holds it, and {who} replaces its "
                        "output folder as a whole; choose a new output folder")
    for kind, paths in (("input", inputs), ("output", outputs)):
        for other in paths:
            if other is None:
                continue
            if res == Path(other).resolve():
                raise UserError(f"{out}: is also an {kind} of {who}; choose a new output folder")
            if _within(Path(other).resolve(), res):
                raise UserError(f"{out}: holds {other}, an {kind} of {who}, and would be "
                                "replaced as a whole; choose an output folder outside it")
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: is a file, not a folder {who} made; choose a new output "
                        "folder, or delete the file yourself")
    owner = made_by(out)
    if owner == command:
        return
    if owner is not None:
        raise UserError(f"{out}: was made by `bloodcell {owner}`, not {who}; choose a new "
                        "output folder")
    if any(out.iterdir()):
        raise UserError(f"{out}: exists and was not made by {who} (no {MARKER} marker); choose "
                        "a new output folder, or delete it yourself if it is an old output")


def _lock(folder: Path) -> int:
    """An open descriptor holding an exclusive lock on ``folder`` (a temporary folder in use)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without locks: the folder is still ours
        pass
    return fd


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings ``.NAME.tmp-*`` of output ``path`` that no running job
    holds (left by a killed run); returns the removed paths."""
    final = Path(path)
    prefix = f".{final.name}.tmp-"
    removed = []
    if not final.parent.is_dir():
        return removed
    for p in sorted(final.parent.iterdir()):
        if not p.name.startswith(prefix) or p.is_symlink() or not p.is_dir():
            continue
        try:
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another job is writing it
            os.close(fd)
            continue
        except OSError:
            pass
        try:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        finally:
            os.close(fd)
    return removed


_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def _writing(err: OSError, tmp: Path) -> bool:
    """Whether ``err``, raised while an output was written to ``tmp``, is the output's
    storage failing (full, read-only, no permission there) rather than an input's problem."""
    if err.errno in (*_FULL, errno.EROFS):
        return True
    return err.errno in _DENIED and (err.filename is None
                                     or str(err.filename).startswith(str(tmp)))


def _make_parents(final: Path) -> list[Path]:
    """Create the missing folders above ``final``; return them, innermost first, so that a
    failed write can remove them again (:func:`_remove_made`)."""
    missing = [p for p in final.parents if not p.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_made(folders: list[Path]) -> None:
    """Remove the folders :func:`_make_parents` created, where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def write_error(err: OSError, final: Path) -> UserError:
    """The one-line error for an output that cannot be written (disk full, read-only, denied)."""
    if err.errno in _FULL:
        fix = "free disk space or choose an output folder on another disk"
    elif err.errno in _DENIED:
        fix = "choose a writable output folder or fix its permissions"
    else:
        fix = "check the output folder"
    return UserError(f"{final}: cannot write the output ({err.strerror or err}); {fix}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, command: str, inputs: Iterable = (),
               outputs: Iterable = ()) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``path`` when the block succeeds, with
    the marker of ``command`` added.

    :func:`check_output` runs first (and again just before the replacement): a folder the
    command may not replace is refused before anything is written. On any exception the
    temporary folder is removed and ``path`` is left untouched.
    """
    inputs, outputs = list(inputs), list(outputs)
    check_output(path, command, inputs, outputs)
    final = Path(path)
    made: list[Path] = []
    try:
        made = _make_parents(final)
        clean_stale(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as err:
        _remove_made(made)
        raise write_error(err, final) from None
    fd = _lock(tmp)
    try:
        try:
            yield tmp
            check_output(path, command, inputs, outputs)
            (tmp / MARKER).write_text(command + "\n")
            os.chmod(tmp, 0o755)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            _remove_made(made)
            if _writing(err, tmp):
                raise write_error(err, final) from None
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            _remove_made(made)
            raise
        old = None
        if final.is_dir() and not final.is_symlink():
            # moved aside first: a kill while deleting it never leaves a half folder at `path`
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-old-", dir=final.parent))
            os.replace(final, old / "old")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        os.close(fd)


def check_file(path: str | os.PathLike) -> None:
    """UserError when the output file ``path`` is an existing folder."""
    if Path(path).is_dir() and not Path(path).is_symlink():
        raise UserError(f"{path}: is a folder, not a file; give a file path for this output")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``path`` when the block succeeds.

    A folder at ``path`` is refused (UserError) before anything is written."""
    check_file(path)
    final = Path(path)
    made: list[Path] = []
    try:
        made = _make_parents(final)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    except OSError as err:
        _remove_made(made)
        raise write_error(err, final) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except OSError as err:
        tmp.unlink(missing_ok=True)
        _remove_made(made)
        if _writing(err, tmp):
            raise write_error(err, final) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_made(made)
        raise
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
