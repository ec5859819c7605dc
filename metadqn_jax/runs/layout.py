"""The layout of a run folder: the names of the files inside one (the one place that knows them).

Every command writes one folder ``OUT/NAME/`` (:mod:`.folder` creates and locks it). A
``metadqn train`` run folder holds (:data:`TRAIN_LAYOUT`)::

    config.yaml              the resolved config and the family's definition (a family: block)
    metrics.csv              one row per chunk and algorithm (losses, returns, val_return)
    tb/<algorithm>/          TensorBoard event files (tensorboard --logdir OUT/NAME/tb)
    checkpoints/<algorithm>/ orbax checkpoints: every --checkpoint-every meta-steps + the end
    policy/<algorithm>/      exported meta-parameters (metadqn_jax.load_policy)
    few_shot.md/.png/.json   the comparison table, plot and numbers
    lock                     the PID and command of the process writing the folder

``metadqn dqn`` and ``metadqn regress`` folders hold ``config.yaml``, ``metrics.csv``, ``tb/``
and their own result files (:func:`output_path`); ``metadqn sweep`` folders :data:`SWEEP_LAYOUT`.

Plain data and path arithmetic: ``metadqn --help`` shows the layouts without importing anything else.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG", "METRICS", "LOCK", "TRAIN_LAYOUT", "SWEEP_LAYOUT", "config_path", "metrics_path", "lock_path",
           "tb_dir", "checkpoint_dir", "policy_dir", "output_path"]

CONFIG = "config.yaml"
METRICS = "metrics.csv"
LOCK = "lock"

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


# what a 'metadqn sweep' run folder holds (shown by 'metadqn sweep --help')
SWEEP_LAYOUT: tuple[tuple[str, str], ...] = (
    (CONFIG, "the resolved config, grid included (rerun it with --config)"),
    ("sweep.json", "one row per combination and seed, a summary per combination, best"),
    ("sweep.md", "validation return per combination (mean, 95% CI over seeds and tasks)"),
    ("sweep.png", "the same as a plot, each seed a dot"),
    (LOCK, "PID and command of the process writing the folder"),
)


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
