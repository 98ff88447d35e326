"""Files that are never half-written: every checkpoint, result, manifest and model zip of the lab goes here.

``path`` always holds either its previous content or the complete new one: the data goes to a temporary file in
the same directory (``os.replace`` is atomic only within one filesystem), is flushed and fsynced, then renamed
over ``path``. On any failure the temporary file is removed and the exception propagates; a failure of the
operating system (a full disk, no permission, ...) as :class:`WriteError`, which names the file and the errno
however deep the library that was writing buried it (``torch.save`` reports a full disk as a RuntimeError).
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch

E = TypeVar("E", bound=BaseException)

TMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<random>.tmp" beside their target


class WriteError(OSError):
    """The operating system refused to write ``filename`` (``errno``: ENOSPC for a full disk, EACCES, ...); the
    file keeps its previous content (or does not exist), nothing half-written is left."""

    advice = ""  # what the user can do, set by whoever knows (e.g. the command that continues the run)

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno or 0, "?")
        return (f"could not write {self.filename}: {self.strerror} ({code}, errno {self.errno}); nothing half-written "
                "was left" + (f"; {self.advice}" if self.advice else ""))


def _first_in_chain(error: BaseException | None, kind: type[E]) -> E | None:
    """``error`` itself if it is a ``kind``, or the first one in its chain of causes and contexts."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind ``error``: itself, or the first one in its chain of causes and contexts."""
    return _first_in_chain(error, OSError)


# What only a write can fail with: a full disk or quota, a read-only filesystem, a file-size limit.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def write_failure(error: BaseException) -> WriteError | None:
    """``error`` as the :class:`WriteError` it is, or wraps (a full disk under a library's own exception, e.g. a
    log writer's), or None: what a command line reports with ``lab.exit_codes.IO_ERROR``."""
    if isinstance(error, WriteError):
        return error
    cause = os_error_in(error)
    if isinstance(cause, WriteError):
        return cause
    if cause is None or cause.errno not in DISK_ERRNOS:
        return None
    return WriteError(cause.errno, cause.strerror or str(cause), cause.filename or "a file of the run")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(file)`` on a temporary binary file and rename it over ``path`` once complete."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        interrupt = _first_in_chain(error, KeyboardInterrupt)
        if interrupt is not None and interrupt is not error:
            # Ctrl-C / SIGTERM inside one of torch.save's writes: its zip writer, closing the archive, turns the
            # interrupt into "RuntimeError: unexpected pos"; the interrupt is what happened, and the caller's
            # handler (exit 130 / 143 naming the checkpoint) must see it.
            raise interrupt from None
        cause = os_error_in(error)
        if cause is None or isinstance(error, WriteError):
            raise
        raise WriteError(cause.errno, cause.strerror or str(cause), str(path)) from error
    _fsync_directory(path.parent)  # make the rename itself durable
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)``, atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Pretty-printed JSON, atomically; values JSON cannot encode (paths, numpy scalars) become strings."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (e.g. Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
