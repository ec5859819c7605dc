"""Run folders: their names, their creation, their lock, and the paths of the files inside one.

Every command writes one folder ``OUT/NAME/``; this module is the one place that knows its
layout (the commands, :mod:`metadqn_jax.deploy` and ``metadqn train --help`` ask it). A
``metadqn train`` run folder holds (:data:`TRAIN_LAYOUT`)::

    config.yaml              the resolved config and the family's definition (a family: block)
    metrics.csv              one row per chunk and algorithm (losses, returns, val_return)
    tb/<algorithm>/          TensorBoard event files (tensorboard --logdir OUT/NAME/tb)
    checkpoints/<algorithm>/ orbax checkpoints: every --checkpoint-every meta-steps + the end
    policy/<algorithm>/      exported meta-parameters (metadqn_jax.load_policy)
    few_shot.md/.png/.json   the comparison table, plot and numbers
    lock                     the PID and command of the process writing the folder

``metadqn dqn`` and ``metadqn regress`` folders hold ``config.yaml``, ``metrics.csv``, ``tb/``
and their own result files (:func:`output_path`).

**One writer at a time.** A process that writes a run folder (``train``, ``train --resume``,
``evaluate``) holds a :class:`RunLock` for its whole life: an exclusive ``fcntl.flock`` on
``RUN/lock``, which the operating system releases when the process ends in any way (a
``kill -9`` leaves no stale lock). A second writer is refused with a message naming the first
(its PID and command, written into the lock file). :func:`create_run_dir` makes a new folder
with ``mkdir`` (atomic: of two processes creating the same name, one fails) and then locks it;
:func:`open_run_dir` locks an existing one. Both check that the folder can be written before
any computation starts.

**config.yaml** (:func:`config_text`) records the resolved configuration: settings left unset
that resolve to a default (the algorithm's ``inner_lr`` / ``meta_lr`` / ``random_support``,
the family's ``gamma`` and its ``meta_defaults``) are written with the value used, and listed
under ``defaults_used`` (per algorithm where the trained algorithms' defaults differ; the field
then stays ``null``, or — a field whose default is a value, recommended by the family for one
algorithm, e.g. ``tau`` — holds ``meta.algorithm``'s value, which the record by algorithm includes).
Reading the file back (:func:`read_run_config`, :func:`config_layer`) turns a value still equal
to its recorded default into "not given" again, so a resumed run resolves every algorithm's
defaults exactly as the original did; a folder written before ``defaults_used`` existed reads
as before.

This module imports nothing heavy (no jax): ``metadqn --help`` reads :data:`TRAIN_LAYOUT`.
"""

from __future__ import annotations

import datetime
import errno
import os
import shlex
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TRAIN_LAYOUT", "RunLock", "new_run_dir", "create_run_dir", "open_run_dir", "check_writable",
           "config_path", "metrics_path", "tb_dir", "checkpoint_dir", "policy_dir", "output_path", "lock_path",
           "config_text", "config_layer", "write_config", "read_run_config"]

CONFIG = "config.yaml"
METRICS = "metrics.csv"
LOCK = "lock"
DEFAULTS_USED = "defaults_used"
MAX_NAME_BYTES = 255  # the longest file name of common file systems (ext4, xfs, apfs, ntfs)

# (path inside a train run folder, what it holds): the layout shown by 'metadqn train --help'
TRAIN_LAYOUT: tuple[tuple[str, str], ...] = (
    (CONFIG, "the resolved config + the family's definition (what --resume, evaluate read)"),
    (METRICS, "one row per chunk and algorithm (losses, returns, val_return)"),
    ("tb/<algorithm>/", "TensorBoard event files (tensorboard --logdir OUT/NAME/tb)"),
    ("checkpoints/<algorithm>/", "orbax checkpoints: every --checkpoint-every meta-steps + the end"),
    ("policy/<algorithm>/", "exported meta-parameters (metadqn_jax.load_policy)"),
    ("few_shot.md/.png/.json", "the comparison table, plot and numbers"),
    (LOCK, "PID and command of the process writing the folder (one writer at a time)"),
)


def _config_error(msg: str) -> Exception:
    from metadqn_jax.core.validate import ConfigError

    return ConfigError(msg)


def _why(e: OSError) -> str:
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
        raise _config_error(f"--name must be a plain folder name, got {name!r}")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        raise _config_error(f"--name is too long for a folder name ({size} bytes; at most {MAX_NAME_BYTES})")
    run_dir = Path(out) / name
    if config_path(run_dir).exists():
        raise _already_exists(run_dir, command)
    return run_dir


def _already_exists(run_dir: Path, command: str) -> Exception:
    hint = f"continue it with 'metadqn train --resume {run_dir}' or " if command == "train" else ""
    return _config_error(f"run folder {str(run_dir)!r} already exists; {hint}choose another --name")


# --------------------------------------------------------------------------- layout
def config_path(run_dir: str | Path) -> Path:
    """``RUN/config.yaml``: the resolved configuration of the run."""
    return Path(run_dir) / CONFIG


def metrics_path(run_dir: str | Path) -> Path:
    """``RUN/metrics.csv``: the training log (one row per chunk, seed or iteration)."""
    return Path(run_dir) / METRICS


def lock_path(run_dir: str | Path) -> Path:
    """``RUN/lock``: the lock file of the run's writer (:class:`RunLock`)."""
    return Path(run_dir) / LOCK


def tb_dir(run_dir: str | Path, name: str | None = None) -> Path:
    """``RUN/tb`` (the TensorBoard log root), or ``RUN/tb/<name>`` (one writer: an algorithm,
    a seed, an evaluation tag)."""
    root = Path(run_dir) / "tb"
    return root if name is None else root / name


def checkpoint_dir(run_dir: str | Path, algorithm: str) -> Path:
    """``RUN/checkpoints/<algorithm>``: the meta-training checkpoints of one algorithm."""
    return Path(run_dir) / "checkpoints" / algorithm


def policy_dir(run_dir: str | Path, algorithm: str) -> Path:
    """``RUN/policy/<algorithm>``: the exported meta-parameters of one algorithm."""
    return Path(run_dir) / "policy" / algorithm


def output_path(run_dir: str | Path, stem: str, suffix: str) -> Path:
    """``RUN/<stem><suffix>``: a result file, e.g. ``output_path(run, "few_shot", ".md")``."""
    return Path(run_dir) / f"{stem}{suffix}"


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
        import fcntl

        if self._fd is not None:
            return self
        where = str(self.run_dir)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise _config_error(f"run folder {where!r} is not writable: cannot create its lock file "
                                f"({_why(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(_read_fd(fd))
            os.close(fd)
            raise _config_error(f"run folder {where!r} is in use by {holder}; wait for it to end (or stop it) "
                                "and try again") from None
        except OSError as e:
            os.close(fd)
            raise _config_error(f"cannot lock run folder {where!r} ({_why(e)})") from None
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
        raise _config_error(f"--out {str(out)!r} is not a folder (a file is in the way)") from None
    except OSError as e:
        raise _config_error(f"cannot create the output folder {str(out)!r} ({_why(e)})") from None
    created = True
    try:
        run_dir.mkdir()
    except FileExistsError:
        created = False
        if not run_dir.is_dir():
            raise _config_error(f"{str(run_dir)!r} exists and is not a folder; choose another --name") from None
    except OSError as e:
        raise _config_error(f"cannot create the run folder {str(run_dir)!r} ({_why(e)})") from None
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
        raise _config_error(f"run folder {where!r} is not writable ({_why(e)})") from None
    for root, dirs, _ in os.walk(run_dir):
        for d in dirs:
            path = Path(root) / d
            if not os.access(path, os.W_OK | os.X_OK):
                raise _config_error(f"run folder {where!r} is not writable: {str(path)!r} is read-only")
    metrics = metrics_path(run_dir)
    if metrics.exists() and not os.access(metrics, os.W_OK):
        raise _config_error(f"run folder {where!r} is not writable: {str(metrics)!r} is read-only")


# --------------------------------------------------------------------------- config.yaml
def _defaults_used(cfg: Any) -> dict[str, Any]:
    """``{"section.field": value | {algorithm: value}}``: the fields of a train configuration
    left unset (``None``) that resolve to a default, with the value each trained algorithm uses
    (one value where they all agree)."""
    if getattr(cfg, "COMMAND", None) != "train":
        return {}
    from metadqn_jax.app.yamlio import plain
    from metadqn_jax.meta.defaults import ALGORITHM_RESOLVED

    algorithms = tuple(dict.fromkeys((*cfg.run.trained, cfg.meta.algorithm)))
    configs = {a: cfg.meta.rebuilt(algorithm=a) for a in algorithms}  # each algorithm's resolution
    out: dict[str, Any] = {}

    def record(name: str, over: tuple[str, ...], value_of) -> None:
        # one value where the algorithms agree, else {algorithm: value}
        sections = cfg.field_section(name)
        if not sections or f"{sections[0]}.{name}" in out:
            return
        values = {a: plain(value_of(configs[a])) for a in over}
        distinct = {repr(v) for v in values.values()}
        out[f"{sections[0]}.{name}"] = next(iter(values.values())) if len(distinct) == 1 else values

    # the algorithm-dependent fields and gamma, left unset (resolved on use), by trained algorithm
    for name in (*ALGORITHM_RESOLVED, "gamma"):
        if getattr(cfg.meta, name) is None:
            record(name, cfg.run.trained, lambda c, n=name: c.setting(n))
    # the task family's recommendations (TaskFamily.meta_defaults_for each algorithm) that filled
    # unset fields; by algorithm (the base's included: the value the file holds) where they differ
    for name in dict.fromkeys(n for c in configs.values() for n in c.family_defaults_used):
        record(name, algorithms, lambda c, n=name: getattr(c, n))
    return out


class _Filled:
    """A configuration's ``to_dict()`` with other values, for its class's ``to_yaml`` (same format)."""

    def __init__(self, cfg: Any, data: dict[str, Any]):
        self.COMMAND, self.SECTIONS, self._data = cfg.COMMAND, cfg.SECTIONS, data

    def to_dict(self) -> dict[str, Any]:
        return self._data


def _family_name(cfg: Any) -> str | None:
    """The task family a configuration uses: ``meta.family`` (train), ``run.family`` (dqn)."""
    for attr in ("meta", "run"):
        name = getattr(getattr(cfg, attr, None), "family", None)
        if isinstance(name, str):
            return name
    return None


def config_text(cfg: Any) -> str:
    """The text of ``config.yaml`` for ``cfg``: ``cfg.to_yaml()`` with the defaults it used
    filled in and listed under ``defaults_used`` (train configurations; see the module doc),
    then the ``family:`` block: the full definition of the task family it uses
    (:func:`metadqn_jax.app.userfamily.family_block_text`)."""
    name = _family_name(cfg)
    if name is None:
        return _config_text(cfg)
    from metadqn_jax.app.userfamily import family_block_text

    return _config_text(cfg) + family_block_text(name)


def _config_text(cfg: Any) -> str:
    import yaml

    used = _defaults_used(cfg)
    if not used:
        return cfg.to_yaml()
    data = cfg.to_dict()
    for key, value in used.items():
        section, field = key.split(".")
        if not isinstance(value, dict):
            data[section][field] = value
    text = type(cfg).to_yaml(_Filled(cfg, data))
    block = yaml.safe_dump({DEFAULTS_USED: used}, sort_keys=False, default_flow_style=None, width=100).rstrip()
    return (text + "# defaults_used: the settings above that were not given and took a default (the algorithm's,\n"
            "# the family's), by algorithm where the trained algorithms' defaults differ (the field above\n"
            "# then stays null, or holds the value of meta's own algorithm, maml unless set, listed too).\n"
            "# Reading this file treats a field still equal to its default as not given.\n"
            + block + "\n")


def config_layer(data: Mapping[str, Any], source: str = CONFIG) -> dict[str, Any]:
    """A configuration layer from the mapping of a ``config.yaml`` (or a ``--config`` file
    made from one): without its ``defaults_used`` block, and without every field whose value
    still equals the default recorded there (not given: it resolves to that default again).

    Raises:
      ConfigError: ``defaults_used`` is not a mapping of ``section.field`` names.
    """
    if DEFAULTS_USED not in data:
        return dict(data)
    data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    used = data.pop(DEFAULTS_USED)
    if used is None:
        return data
    if not isinstance(used, Mapping) or not all(isinstance(k, str) and k.count(".") == 1 for k in used):
        raise _config_error(f"{source}: {DEFAULTS_USED} must be a mapping of section.field names to values, "
                            f"got {used!r}")
    meta = data.get("meta")
    algorithm = meta.get("algorithm") if isinstance(meta, Mapping) else None
    for key, default in used.items():
        section, field = key.split(".")
        values = data.get(section)
        if not isinstance(values, dict) or field not in values:
            continue
        if isinstance(default, Mapping):  # by algorithm: the file holds meta.algorithm's value
            if algorithm is None:
                from metadqn_jax.meta.defaults import DEFAULT_ALGORITHM  # (the train command has none)

                algorithm = DEFAULT_ALGORITHM
            if algorithm not in default:
                continue
            default = default[algorithm]
        value = values[field]
        if value is not None and type(value) is type(default) and value == default:
            del values[field]  # not given: resolves to the same default again
    return data


def write_config(run_dir: str | Path, cfg: Any) -> Path:
    """Writes ``config.yaml`` (:func:`config_text`) into ``run_dir`` atomically (temporary
    file + rename), creating the folder if needed; returns the file's path.

    Raises:
      ConfigError: the file cannot be written (naming it and why).
    """
    path = config_path(run_dir)
    tmp = path.with_name(path.name + ".tmp")
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        tmp.write_text(config_text(cfg))
        tmp.replace(path)
    except OSError as e:
        raise _config_error(f"cannot write {str(path)!r} ({_why(e)})") from None
    return path


def read_run_config(run_dir: str | Path, cls: Any = None):
    """The resolved configuration saved in ``run_dir/config.yaml`` (:func:`config_layer`: the
    defaults it recorded count as not given). Its ``family:`` block (the task family's full
    definition) is installed first (:func:`metadqn_jax.app.userfamily.take_family_block`), so a
    run of a user's family reads back in a fresh process; a folder written before the block
    existed needs its family registered.

    Args:
      run_dir: a run folder.
      cls: the command configuration class expected (default
        :class:`~metadqn_jax.app.runconfig.TrainConfig`).

    Raises:
      ConfigError: the folder does not exist, is not a metadqn run folder, or is a run of
        another command; or its config.yaml is invalid.
    """
    from metadqn_jax.app.yamlio import load_yaml

    if cls is None:
        from metadqn_jax.app.runconfig import TrainConfig as cls
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        if run_dir.exists():
            raise _config_error(f"{str(run_dir)!r} is not a run folder (it is a file)")
        raise _config_error(f"run directory {str(run_dir)!r} does not exist")
    path = config_path(run_dir)
    if not path.is_file():
        raise _config_error(f"{str(run_dir)!r} is not a metadqn run directory (no config.yaml)")
    data = load_yaml(path)
    command = data.get("command")
    if command != cls.COMMAND:
        raise _config_error(f"{str(run_dir)!r} is a 'metadqn {command}' run, not a 'metadqn {cls.COMMAND}' run")
    from metadqn_jax.app.userfamily import take_family_block

    data, _ = take_family_block(data, str(path))
    return cls.resolve(config_layer(data, str(path)))
