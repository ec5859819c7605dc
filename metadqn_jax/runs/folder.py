"""Run folders: their names, their creation, their lock, and the check that they can be written.

**One writer at a time.** A process that writes a run folder (``train``, ``train --resume``,
``evaluate``) holds a :class:`RunLock` for its whole life: an exclusive ``fcntl.flock`` on
``RUN/lock``, which the operating system releases when the process ends in any way (a
``kill -9`` leaves no stale lock). A second writer is refused with a message naming the first
(its PID and command, written into the lock file). :func:`create_run_dir` makes a new folder
with ``mkdir`` (atomic: of two processes creating the same name, one fails) and then locks it;
:func:`open_run_dir` locks an existing one. Both check that the folder can be written before
any computation starts. Every refusal is one :class:`~metadqn_jax.core.errors.ConfigError`.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import shlex
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from metadqn_jax.core.errors import ConfigError
from metadqn_jax.runs.layout import config_path, lock_path, metrics_path

__all__ = ["os_reason", "RunLock", "new_run_dir", "create_run_dir", "open_run_dir", "check_writable"]

MAX_NAME_BYTES = 255  # the longest file name of common file systems (ext4, xfs, apfs, ntfs)


def os_reason(e: OSError) -> str:
    """The operating system's reason of ``e`` (e.g. ``"Permission denied"``)."""
    return e.strerror or errno.errorcode.get(e.errno or 0, "") or type(e).__name__


# --------------------------------------------------------------------------- naming
def new_run_dir(out: str | Path, name: str | None, command: str, label: str) -> Path:
    """The folder of a new run: ``out/name``, by default ``out/<command>-<label>-<date>-<time>``.

    Nothing is created here (:func:`create_run_dir` creates and locks it).

    Raises:
      ConfigError: ``name`` is not a plain folder name (empty, ``.``/``..``, a ``/``, a NUL
        byte, longer than 255 bytes), or the folder already holds a run (a ``config.yaml``).
    """
    name = name or f"{command}-{label}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or "\0" in name or name in ("", ".", ".."):
        raise ConfigError(f"--name must be a plain folder name, got {name!r}")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        raise ConfigError(f"--name is too long for a folder name ({size} bytes; at most {MAX_NAME_BYTES})")
    run_dir = Path(out) / name
    if config_path(run_dir).exists():
        raise _already_exists(run_dir, command)
    return run_dir


def _already_exists(run_dir: Path, command: str) -> Exception:
    hint = f"continue it with 'metadqn train --resume {run_dir}' or " if command == "train" else ""
    return ConfigError(f"run folder {str(run_dir)!r} already exists; {hint}choose another --name")

# --------------------------------------------------------------------------- the lock
def _command_line(argv: Sequence[str] | None) -> str:
    if argv is None:
        return shlex.join(sys.argv)
    return shlex.join(["metadqn", *argv])


class RunLock:
    """The exclusive lock of one run folder: ``fcntl.flock`` on ``RUN/lock``, held from
    :meth:`acquire` to :meth:`release` (or the end of the process: the operating system
    releases it however the process ends, so a killed writer leaves no stale lock).

    The lock file holds the holder's PID, command, host and start time (what a refused writer
    is told); it is left in place when released. Use as a context manager or call
    :meth:`release`.

    Args:
      run_dir: the run folder (must exist).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, argv: Sequence[str] | None = None) -> RunLock:
        """Takes the lock without waiting and records this process in the lock file.

        Args:
          argv: the command's arguments (recorded as ``metadqn ARGV``; default ``sys.argv``).

        Raises:
          ConfigError: another process holds it (naming its PID and command), or the lock file
            cannot be created or locked (e.g. a read-only folder).
        """
        if self._fd is not None:
            return self
        where = str(self.run_dir)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise ConfigError(f"run folder {where!r} is not writable: cannot create its lock file "
                                f"({os_reason(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(_read_fd(fd))
            os.close(fd)
            raise ConfigError(f"run folder {where!r} is in use by {holder}; wait for it to end (or stop it) "
                                "and try again") from None
        except OSError as e:
            os.close(fd)
            raise ConfigError(f"cannot lock run folder {where!r} ({os_reason(e)})") from None
        started = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
        text = (f"pid: {os.getpid()}\ncommand: {_command_line(argv)}\nhost: {socket.gethostname()}\n"
                f"started: {started}\n")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode("utf-8", "replace"), 0)
        except OSError:
            pass  # a read-only lock file still locks; the holder's details are then unknown
        self._fd = fd
        return self

    def release(self) -> None:
        """Releases the lock (a no-op when not held)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)  # no holder any more (a killed holder's details stay, unlocked)
            except OSError:
                pass
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_fd(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def _describe_holder(text: str) -> str:
    """``"process 123 (metadqn train ..., started ...)"`` from a lock file's text."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        fields[key.strip()] = value.strip()
    pid = fields.get("pid")
    if not pid:
        return "another process"
    details = [d for d in (fields.get("command"), f"started {fields['started']}" if fields.get("started") else "",
                           f"on {fields['host']}" if fields.get("host") and fields["host"] != socket.gethostname()
                           else "") if d]
    return f"process {pid}" + (f" ({', '.join(details)})" if details else "")


# --------------------------------------------------------------------------- creation
def create_run_dir(run_dir: str | Path, command: str, argv: Sequence[str] | None = None) -> RunLock:
    """Creates the new run folder ``run_dir`` (from :func:`new_run_dir`) and locks it.

    ``mkdir`` without ``exist_ok`` is the atomic step: of two processes creating the same
    folder, one gets "already exists". An existing folder without a ``config.yaml`` (e.g. made
    by hand, or by a run that failed before writing anything) is taken over once locked.

    Returns:
      The held :class:`RunLock` (release it when the command ends).

    Raises:
      ConfigError: ``OUT`` is not a folder or cannot be created; the run folder cannot be
        created or written; another process holds it; it already holds a run.
    """
    run_dir = Path(run_dir)
    out = run_dir.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"--out {str(out)!r} is not a folder (a file is in the way)") from None
    except OSError as e:
        raise ConfigError(f"cannot create the output folder {str(out)!r} ({os_reason(e)})") from None
    created = True
    try:
        run_dir.mkdir()
    except FileExistsError:
        created = False
        if not run_dir.is_dir():
            raise ConfigError(f"{str(run_dir)!r} exists and is not a folder; choose another --name") from None
    except OSError as e:
        raise ConfigError(f"cannot create the run folder {str(run_dir)!r} ({os_reason(e)})") from None
    lock = RunLock(run_dir).acquire(argv)
    try:
        if not created:
            if config_path(run_dir).exists():
                raise _already_exists(run_dir, command)
        check_writable(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def open_run_dir(run_dir: str | Path, argv: Sequence[str] | None = None) -> RunLock:
    """Locks the existing run folder ``run_dir`` for writing and checks that it can be written.

    Returns:
      The held :class:`RunLock`.

    Raises:
      ConfigError: another process holds it (naming it), or it cannot be written.
    """
    lock = RunLock(run_dir).acquire(argv)
    try:
        check_writable(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def check_writable(run_dir: str | Path) -> None:
    """Checks that files can be created in ``run_dir`` (by creating and deleting one) and that
    every folder below it and ``metrics.csv`` allow writing (``os.access``).

    Raises:
      ConfigError: naming the first path that cannot be written and why.
    """
    run_dir = Path(run_dir)
    where = str(run_dir)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=run_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"run folder {where!r} is not writable ({os_reason(e)})") from None
    for root, dirs, _ in os.walk(run_dir):
        for d in dirs:
            path = Path(root) / d
            if not os.access(path, os.W_OK | os.X_OK):
                raise ConfigError(f"run folder {where!r} is not writable: {str(path)!r} is read-only")
    metrics = metrics_path(run_dir)
    if metrics.exists() and not os.access(metrics, os.W_OK):
        raise ConfigError(f"run folder {where!r} is not writable: {str(metrics)!r} is read-only")
