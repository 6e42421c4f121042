"""Atomic, locked outputs: a killed or failing run never leaves a file that looks complete.

Pipelines write every file through :func:`atomic_path`, the ``atomic_write_*`` helpers or
:class:`AtomicOutputs` (the report last), and lock their folder with :class:`OutputLock`. How and why:
docs/outputs.md. Pure: standard library only (pyarrow/pandas imported by :func:`atomic_write_parquet`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from flamenco_core.errors import EXIT_IN_USE, FlamencoError

PathLike = Union[str, "os.PathLike[str]"]

#: The lock file of a locked output folder.
LOCK_NAME = ".flamenco.lock"

# Temporary names: ".NAME.tmp-PID-RANDOM". The PID lets a later run tell a dead writer's leftovers from
# a live writer's files in progress.
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")
# File names are limited to 255 bytes; the temporary name adds a dot, ".tmp-", a PID and 8 hex digits.
_MAX_STEM = 200


class OutputInUse(FlamencoError):
    """Another live process holds the output folder's lock (exit 3). ``folder`` and ``pid`` (the
    holder's, ``None`` when unknown) name it."""

    exit_code = EXIT_IN_USE

    def __init__(self, folder: PathLike, pid: Optional[int] = None) -> None:
        self.folder = Path(folder)
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"output folder {self.folder} is in use by {holder}; wait for that run to end "
                         "or choose another output folder")


def temp_name(name: str) -> str:
    """The temporary name for a file called ``name``: ``.NAME.tmp-PID-RANDOM``."""
    return f".{name[:_MAX_STEM]}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary name of this module."""
    return _TEMP_RE.match(name) is not None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # A rename is durable only once its folder is; some file systems refuse fsync on a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder to write one file to; when the block ends without
    error the file is fsynced and renamed over ``path`` (atomic), else it is removed and the error
    propagates. ``path``'s folder is created when missing. Writing nothing to the temporary path is an
    error (``FileNotFoundError``): a result that was asked for is never silently absent.

    >>> with atomic_path("out/data.parquet") as tmp:      # doctest: +SKIP
    ...     table.to_parquet(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temp_name(target.name))
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(errno.ENOENT, "nothing was written", str(target))
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, target)
        if fsync:
            _fsync_dir(target.parent)
    except BaseException:
        _remove(tmp)
        raise


def json_ready(obj: Any, *, root: Optional[PathLike] = None) -> Any:
    """Plain JSON data for a report: numpy scalars and arrays to Python, NaN and infinities to ``None``
    (an undefined score is ``null``, which strict parsers accept), tuples and sets to lists, keys and
    paths to strings, DataFrames dropped (``None``: a report holds their files' paths, not the frames),
    anything else as its ``str``. With ``root`` (an output folder), an absolute path inside it, as a
    ``Path`` or a string, becomes relative to it: the folder can be moved or shared and still reads."""
    if root is not None:
        base = os.path.realpath(root) + os.sep
        absolute = os.path.abspath(root) + os.sep

        def relative(s: str) -> str:
            for b in (absolute, base):
                if s.startswith(b):
                    return Path(s[len(b):]).as_posix()
            return s

        return _json_ready(obj, relative)
    return _json_ready(obj, None)


def _json_ready(obj: Any, relative) -> Any:
    import math

    import numpy as np
    import pandas as pd

    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v, relative) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_json_ready(v, relative) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist(), relative)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, pd.DataFrame):
        return None
    if isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, str):
        return relative(obj) if relative is not None and obj.startswith(os.sep) else obj
    if obj is None or isinstance(obj, (int, bool)):
        return obj
    return str(obj)


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "xb") as fh:
            fh.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "x", encoding=encoding) as fh:
            fh.write(text)
    return Path(path)


def write_json(path: PathLike, obj: Any, *, indent: Optional[int] = 2, fsync: bool = True,
               root: Optional[PathLike] = None) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically, through :func:`json_ready` (NaN and infinities are
    ``null``; with ``root``, paths inside that output folder relative to it); the one JSON writer of
    reports, records and trees. Strict JSON: a bare NaN can never be written. Returns the path."""
    import json

    return atomic_write_text(path, json.dumps(json_ready(obj, root=root), indent=indent, allow_nan=False), fsync=fsync)


def atomic_write_parquet(data: Any, path: PathLike, *, fsync: bool = True, **kwargs: Any) -> Path:
    """Write a pandas DataFrame or a pyarrow Table to ``path`` as Parquet, atomically. ``kwargs`` go to
    ``DataFrame.to_parquet`` (e.g. ``index=False``) or ``pyarrow.parquet.write_table``."""
    with atomic_path(path, fsync=fsync) as tmp:
        if hasattr(data, "to_parquet"):
            data.to_parquet(tmp, **kwargs)
        else:
            import pyarrow.parquet as pq

            pq.write_table(data, tmp, **kwargs)
    return Path(path)


class AtomicOutputs:
    """Files of one result, committed together with the report last.

    ``path(name)`` gives the temporary path to write ``folder/name`` to (``name`` may hold subfolders).
    :meth:`commit` fsyncs every file, removes the previous ``report`` (so that no report describes
    files being replaced), renames every other file over its final name in the order they were asked
    for, and the report last. Used as a context manager it commits when the block succeeds and removes
    the temporaries when it fails. A run killed before the commit leaves the previous outputs intact; one
    killed during the commit leaves no report: the folder is then recognisably incomplete.
    """

    def __init__(self, folder: PathLike, *, report: Optional[str] = None, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.report = report
        self.fsync = fsync
        self._files: dict[str, Path] = {}
        self.committed = False

    def path(self, name: str) -> Path:
        """The temporary path of ``folder/name`` (the same path for repeated calls)."""
        if name not in self._files:
            target = self.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self._files[name] = target.with_name(temp_name(target.name))
        return self._files[name]

    def discard(self) -> None:
        """Remove every temporary file (nothing replaced)."""
        for tmp in self._files.values():
            _remove(tmp)

    def commit(self) -> dict[str, Path]:
        """Rename every file over its final name, the report last; returns ``{name: final path}``."""
        missing = [n for n, tmp in self._files.items() if not tmp.exists()]
        if missing:
            raise FileNotFoundError(errno.ENOENT, f"nothing was written for {', '.join(missing)}", str(self.folder))
        if self.fsync:
            for tmp in self._files.values():
                _fsync_file(tmp)
        order = [n for n in self._files if n != self.report]
        if self.report in self._files:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / self.report).unlink()
            order.append(self.report)
        done: dict[str, Path] = {}
        for name in order:
            target = self.folder / name
            os.replace(self._files[name], target)
            done[name] = target
        if self.fsync:
            for folder in {p.parent for p in done.values()}:
                _fsync_dir(folder)
        self.committed = True
        return done

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_temporaries(folder: PathLike, *, recursive: bool = True) -> list[Path]:
    """Remove temporaries (:func:`temp_name`) under ``folder`` whose writer process is gone; returns
    what was removed. A live writer's files in progress are left alone, whoever holds which lock."""
    root = Path(folder)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    walker = os.walk(root) if recursive else [(str(root), [d.name for d in root.iterdir() if d.is_dir()],
                                                  [f.name for f in root.iterdir() if not f.is_dir()])]
    for here, dirs, files in walker:
        for name in [*files, *dirs]:
            m = _TEMP_RE.match(name)
            if m and not _alive(int(m.group(1))):
                p = Path(here) / name
                _remove(p)
                removed.append(p)
        dirs[:] = [d for d in dirs if not _TEMP_RE.match(d)]
    return removed


# Folders this process holds, with a hold count: a flow that locks its output folder may call the core
# ingest, which locks the same folder; both belong to the same run.
_HELD: dict[str, list] = {}
_HELD_GUARD = threading.Lock()


class OutputLock:
    """An exclusive lock on an output folder for one run: ``with OutputLock(folder): ...``.

    The lock is ``fcntl.flock`` on ``folder/.flamenco.lock`` (created, then left in place: removing it
    would race with the next run opening it); the holder's PID is written into it so that
    :class:`OutputInUse` can name the holder. The kernel releases it when the holder exits in any way,
    SIGKILL included. Re-entrant within one process (any thread): nested locks of the same folder are
    counted, and the folder is released by the outermost exit. Taking the lock also sweeps temporaries
    left under the folder by dead processes (:func:`sweep_temporaries`), unless ``sweep=False``.
    """

    def __init__(self, folder: PathLike, *, sweep: bool = True) -> None:
        self.folder = Path(folder)
        self.sweep = sweep
        self._key: Optional[str] = None

    @property
    def lock_path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise :class:`OutputInUse` at once (never waits)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.folder))
        self.folder.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.folder)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                held[1] += 1
                self._key = key
                return self
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise OutputInUse(self.folder, pid) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the PID is a courtesy for error messages; the lock itself holds
            _HELD[key] = [fd, 1]
            self._key = key
        if self.sweep:
            sweep_temporaries(self.folder)
        return self

    def release(self) -> None:
        """Release one hold; the outermost release unlocks the folder."""
        if self._key is None:
            return
        with _HELD_GUARD:
            held = _HELD.get(self._key)
            if held is not None:
                held[1] -= 1
                if held[1] <= 0:
                    del _HELD[self._key]
                    os.close(held[0])  # closing the descriptor releases the flock
            self._key = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._key is not None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


__all__ = [
    "LOCK_NAME", "AtomicOutputs", "OutputInUse", "OutputLock", "atomic_path", "atomic_write_bytes",
    "atomic_write_parquet", "atomic_write_text", "is_temporary", "sweep_temporaries", "temp_name",
]
