"""Run folders: their names, their creation, and the paths of the files inside one.

Every command writes one folder ``OUT/NAME/``; this module is the one place that knows its
layout (the commands, :mod:`metadqn_jax.deploy` and ``metadqn train --help`` ask it). A
``metadqn train`` run folder holds (:data:`TRAIN_LAYOUT`)::

    config.yaml              the resolved config (what --resume and 'metadqn evaluate' read)
    metrics.csv              one row per chunk and algorithm (losses, returns, val_return)
    tb/<algorithm>/          TensorBoard event files (tensorboard --logdir OUT/NAME/tb)
    checkpoints/<algorithm>/ orbax checkpoints: every --checkpoint-every meta-steps + the end
    policy/<algorithm>/      exported meta-parameters (metadqn_jax.load_policy)
    few_shot.md/.png/.json   the comparison table, plot and numbers

``metadqn dqn`` and ``metadqn regress`` folders hold ``config.yaml``, ``metrics.csv``, ``tb/``
and their own result files (:func:`output_path`).

This module imports nothing heavy (no jax): ``metadqn --help`` reads :data:`TRAIN_LAYOUT`.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

__all__ = ["TRAIN_LAYOUT", "new_run_dir", "config_path", "metrics_path", "tb_dir", "checkpoint_dir",
           "policy_dir", "output_path", "write_config", "read_run_config"]

CONFIG = "config.yaml"
METRICS = "metrics.csv"

# (path inside a train run folder, what it holds): the layout shown by 'metadqn train --help'
TRAIN_LAYOUT: tuple[tuple[str, str], ...] = (
    (CONFIG, "the resolved config (what --resume and 'metadqn evaluate' read)"),
    (METRICS, "one row per chunk and algorithm (losses, returns, val_return)"),
    ("tb/<algorithm>/", "TensorBoard event files (tensorboard --logdir OUT/NAME/tb)"),
    ("checkpoints/<algorithm>/", "orbax checkpoints: every --checkpoint-every meta-steps + the end"),
    ("policy/<algorithm>/", "exported meta-parameters (metadqn_jax.load_policy)"),
    ("few_shot.md/.png/.json", "the comparison table, plot and numbers"),
)


# --------------------------------------------------------------------------- naming
def new_run_dir(out: str | Path, name: str | None, command: str, label: str) -> Path:
    """The folder of a new run: ``out/name``, by default ``out/<command>-<label>-<date>-<time>``.

    Nothing is created here (see :func:`write_config`).

    Raises:
      ConfigError: ``name`` is not a plain folder name, or the folder already holds a run
        (a ``config.yaml``).
    """
    from metadqn_jax.core.validate import ConfigError

    name = name or f"{command}-{label}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name in ("", ".", ".."):
        raise ConfigError(f"--name must be a plain folder name, got {name!r}")
    run_dir = Path(out) / name
    if config_path(run_dir).exists():
        hint = f"continue it with 'metadqn train --resume {run_dir}' or " if command == "train" else ""
        raise ConfigError(f"run folder {str(run_dir)!r} already exists; {hint}choose another --name")
    return run_dir


# --------------------------------------------------------------------------- layout
def config_path(run_dir: str | Path) -> Path:
    """``RUN/config.yaml``: the resolved configuration of the run."""
    return Path(run_dir) / CONFIG


def metrics_path(run_dir: str | Path) -> Path:
    """``RUN/metrics.csv``: the training log (one row per chunk, seed or iteration)."""
    return Path(run_dir) / METRICS


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


# --------------------------------------------------------------------------- config.yaml
def write_config(run_dir: str | Path, cfg: Any) -> Path:
    """Creates ``run_dir`` (and its parents) if needed and writes ``cfg.to_yaml()`` to its
    ``config.yaml`` atomically; returns the file's path."""
    from metadqn_jax.app.yamlio import dump_yaml

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return dump_yaml(cfg, config_path(run_dir))


def read_run_config(run_dir: str | Path, cls: Any = None):
    """The resolved configuration saved in ``run_dir/config.yaml``.

    Args:
      run_dir: a run folder.
      cls: the command configuration class expected (default
        :class:`~metadqn_jax.app.runconfig.TrainConfig`).

    Raises:
      ConfigError: the folder does not exist, is not a metadqn run folder, or is a run of
        another command; or its config.yaml is invalid.
    """
    from metadqn_jax.app.yamlio import load_yaml
    from metadqn_jax.core.validate import ConfigError

    if cls is None:
        from metadqn_jax.app.runconfig import TrainConfig as cls
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    path = config_path(run_dir)
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a metadqn run directory (no config.yaml)")
    data = load_yaml(path)
    command = data.get("command")
    if command != cls.COMMAND:
        raise ConfigError(f"{str(run_dir)!r} is a 'metadqn {command}' run, not a 'metadqn {cls.COMMAND}' run")
    return cls.resolve(data)
