"""``metadqn sweep``: a grid over the traced meta-training hyper-parameters, every combination ×
meta-training seed trained as ONE vmapped program (:func:`metadqn_jax.sweep.run_sweep`), the
best combination chosen on validation tasks only.

The run folder (created atomically and locked, :mod:`metadqn_jax.app.runs`) gets
``config.yaml`` first (the grid included: ``--config`` of a sweep's config.yaml reruns it), then
``sweep.json`` (one row per combination and seed, a summary per combination, ``best``),
``sweep.md`` (the table, best in bold) and ``sweep.png`` (validation return per combination).
The test split is never evaluated.

Configuration sections (``--config``, ``--set``, ``--print-config``): ``meta`` and ``hparams``
as in ``metadqn train`` (``hparams`` holds the values of the fields the grid does not vary),
``validation``, and ``sweep`` (:data:`SWEEP_DEFAULTS`: ``algorithm``, ``grid``, ``seeds``,
``seed``, ``num_devices``).

Imports nothing heavy at module level (``metadqn --help`` imports it); :class:`SweepConfig` and
:class:`SweepSettings` are built on first use.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from metadqn_jax.app import presets, runs
from metadqn_jax.app.common import configure_jax, info

# (SweepConfig and SweepSettings are module attributes too, built on first use: __getattr__)
__all__ = ["DEFAULT_SWEEP", "EXIT_ALL_DIVERGED", "QUICK_SWEEP", "SWEEP_DEFAULTS", "SWEEP_LAYOUT", "cmd_sweep",
           "resolve_sweep_config", "write_sweep"]

EXIT_ALL_DIVERGED = 3  # every run diverged: nothing to choose

# the defaults of the ``sweep`` section (plain data: the parser's help reads them without jax)
SWEEP_DEFAULTS: dict[str, Any] = {
    "algorithm": "context",  # the meta-learning algorithm swept (one: it is static)
    "grid": [],  # "hparams.FIELD=V1,V2,..." items (metadqn_jax.sweep.parse_grid)
    "seeds": 3,  # meta-training seeds per combination
    "seed": 0,  # the first run seed (seed i trains from the key of 'metadqn train --seed seed+i')
    "num_devices": None,  # devices the task axis is sharded over (None: all; 1: no sharding)
}

# what a sweep run folder holds (shown by 'metadqn sweep --help')
SWEEP_LAYOUT: tuple[tuple[str, str], ...] = (
    ("config.yaml", "the resolved config, grid included (rerun it with --config)"),
    ("sweep.json", "one row per combination and seed, a summary per combination, best"),
    ("sweep.md", "validation return per combination (mean, 95% CI over seeds and tasks)"),
    ("sweep.png", "the same as a plot, each seed a dot"),
    ("lock", "PID and command of the process writing the folder"),
)

# the presets: metadqn train's meta / hparams / validation layers plus the sweep section
DEFAULT_SWEEP: dict[str, dict[str, Any]] = {
    "meta": dict(presets.DEFAULT_TRAIN["meta"]),
    "hparams": dict(presets.DEFAULT_TRAIN["hparams"]),
    "validation": dict(presets.DEFAULT_TRAIN["validation"]),
    "sweep": {},
}
QUICK_SWEEP: dict[str, dict[str, Any]] = {
    "meta": dict(presets.QUICK_TRAIN["meta"]),
    "validation": dict(presets.QUICK_TRAIN["validation"]),
    "sweep": {"seeds": 2},
}


@functools.cache
def _classes():
    """Builds :class:`SweepSettings` and :class:`SweepConfig` (they import jax)."""
    import dataclasses

    from metadqn_jax.app.runconfig import (
        _META_HPARAMS,
        _META_STATIC,
        Section,
        _Composite,
        _fields,
    )
    from metadqn_jax.core.validate import nonneg_int, positive_int, require
    from metadqn_jax.driver import ValidationConfig
    from metadqn_jax.meta import ALGORITHMS, MetaConfig
    from metadqn_jax.sweep import parse_grid

    @dataclasses.dataclass(frozen=True)
    class SweepSettings:
        """The ``sweep`` section: what is swept and how many meta-training seeds per combination."""

        algorithm: str = SWEEP_DEFAULTS["algorithm"]
        grid: tuple[str, ...] = tuple(SWEEP_DEFAULTS["grid"])
        seeds: int = SWEEP_DEFAULTS["seeds"]
        seed: int = SWEEP_DEFAULTS["seed"]
        num_devices: int | None = SWEEP_DEFAULTS["num_devices"]

        def __post_init__(self):
            require(self.algorithm in ALGORITHMS, "sweep.algorithm", f"one of {ALGORITHMS}", self.algorithm)
            if self.grid:  # checked (one message) and written canonically: hparams.FIELD=V1,V2
                object.__setattr__(self, "grid", parse_grid(self.grid).items)
            positive_int("sweep.seeds", self.seeds)
            nonneg_int("sweep.seed", self.seed)
            if self.num_devices is not None:
                positive_int("sweep.num_devices", self.num_devices)

        @property
        def parsed_grid(self):
            """The :class:`metadqn_jax.sweep.Grid` of ``grid``."""
            return parse_grid(self.grid)

    @dataclasses.dataclass(frozen=True)
    class SweepConfig(_Composite):
        """Everything ``metadqn sweep`` needs. Sections: ``meta`` (static), ``hparams`` (traced
        base values; the grid overrides its fields), ``validation``, ``sweep``."""

        meta: MetaConfig
        validation: ValidationConfig
        sweep: SweepSettings

        COMMAND: ClassVar[str] = "sweep"
        FAMILY_SECTION: ClassVar[str | None] = "meta"  # a --config file's family: block is installed as meta.family
        SECTIONS: ClassVar[tuple] = (
            Section("meta", "meta", MetaConfig, tuple(f for f in _META_STATIC if f != "algorithm"),
                    "meta: static meta-training settings (shapes, loop lengths; changing one recompiles); "
                    "the algorithm is sweep.algorithm"),
            Section("hparams", "meta", MetaConfig, _META_HPARAMS,
                    "hparams: traced hyper-parameters: the values of the fields sweep.grid does not vary "
                    "(gamma null = the family's, inner_lr / meta_lr null = the algorithm's)"),
            Section("validation", "validation", ValidationConfig, _fields(ValidationConfig),
                    "validation: validation / early stopping during meta-training (meta-steps); every != 0"),
            Section("sweep", "sweep", SweepSettings, _fields(SweepSettings),
                    "sweep: the algorithm, the grid (hparams.FIELD=V1,V2,...), meta-training seeds per combination"),
        )

        @classmethod
        def _build(cls, merged):
            cfg = super()._build(merged)
            require(cfg.validation.every != 0, "validation.every",
                    "> 0 for a sweep (it chooses the best combination on validation returns)", cfg.validation.every)
            return cfg

        @property
        def meta_config(self) -> MetaConfig:
            """``meta`` re-targeted to ``sweep.algorithm`` (:func:`metadqn_jax.compare.config_for`)."""
            return self.meta.rebuilt(algorithm=self.sweep.algorithm)

    return SweepSettings, SweepConfig


def __getattr__(name: str):  # PEP 562: SweepConfig / SweepSettings built on first use
    if name == "SweepSettings":
        return _classes()[0]
    if name == "SweepConfig":
        return _classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_sweep_config(args: argparse.Namespace, flags: Mapping[str, Any]):
    """The sweep's configuration from its layers (:func:`metadqn_jax.app.common.resolve_config`:
    defaults < ``--quick`` < ``--config`` < flags < ``--set``). The family is resolved here, in
    this one call (``meta.family``: a registered family, or a user's family from ``--family-file`` /
    ``--family-module``, installed here before the layers are resolved).

    Raises:
      ConfigError: an unknown family, a bad ``--grid`` (unknown or static field, not a number,
        out of range, a field or value given twice), or any other invalid value.
    """
    from metadqn_jax.app.common import resolve_config
    from metadqn_jax.app.userfamily import apply_family_options

    flags = dict(flags)
    apply_family_options(args, flags, "meta.family")  # --family-file / --family-module: the family, unless --family
    return resolve_config(_classes()[1], args, flags, DEFAULT_SWEEP, QUICK_SWEEP)


def cmd_sweep(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """``metadqn sweep`` (``flags``: the config layer of the options given). Returns the exit
    status: 0, or :data:`EXIT_ALL_DIVERGED` when every run diverged (one ``error:`` line; the
    files are still written).

    Raises:
      ConfigError: a usage, config or run-folder error, before any computation.
    """
    from metadqn_jax.core.validate import ConfigError

    cfg = resolve_sweep_config(args, flags)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    if not cfg.sweep.grid:
        raise ConfigError("--grid: a sweep needs at least one --grid FIELD=V1,V2,... (e.g. --grid "
                          "hparams.tau=0.9,0.99; fields: hparams.inner_lr, meta_lr, weight_decay, gamma, epsilon, tau)")
    run_dir = runs.new_run_dir(args.out, args.name, "sweep", cfg.meta.family)
    configure_jax(args)
    from metadqn_jax.sharding import task_mesh

    task_mesh(cfg.meta.num_tasks, cfg.sweep.num_devices, cfg.meta.task_micro_batch)  # fail before compute
    lock = runs.create_run_dir(run_dir, "sweep", getattr(args, "argv", None))
    try:
        return _sweep(args, cfg, run_dir)
    finally:
        lock.release()


def _sweep(args: argparse.Namespace, cfg, run_dir: Path) -> int:
    """The body of :func:`cmd_sweep` once the run folder is locked."""
    from metadqn_jax.sweep import run_sweep

    runs.write_config(run_dir, cfg)
    grid = cfg.sweep.parsed_grid
    meta = cfg.meta_config
    C, N = len(grid.combinations), cfg.sweep.seeds
    sequential = bool(getattr(args, "sequential", False))
    info(f"run folder: {run_dir}")
    how = "one program per combination (--sequential)" if sequential else "one program"
    info(f"sweep: {meta.algorithm} on {meta.family}, {C} combination(s) x {N} meta-training seed(s) = {C * N} runs "
         f"in {how}; {meta.num_meta_steps} meta-steps each; grid {' '.join(grid.items)}")
    bar = callback = None
    if not args.no_progress:
        from metadqn_jax.progress import ChunkBar

        parts = C if sequential else 1  # sequential: the bar counts the meta-steps of every combination
        bar = ChunkBar(f"meta-train {meta.algorithm} x {C * N} runs", parts * meta.num_meta_steps, 0)
        done = {"offset": 0, "last": 0}

        def callback(state, early_stop, row):
            step = int(row["meta_step"])
            if step <= done["last"]:  # the next combination started
                done["offset"] += meta.num_meta_steps
            done["last"] = step
            bar.chunk({**row, "meta_step": done["offset"] + step})
    t0 = time.perf_counter()
    try:
        result = run_sweep(meta, grid, seeds=N, seed=cfg.sweep.seed, validation=cfg.validation, progress=False,
                           callback=callback, num_devices=cfg.sweep.num_devices, log=info, sequential=sequential)
    except KeyboardInterrupt:
        info(f"interrupted; nothing was written but {runs.config_path(run_dir)}")
        return 130
    finally:
        if bar is not None:
            bar.close()
    data = write_sweep(run_dir, cfg, result, show=_print)
    print(f"\nrun folder: {run_dir} (sweep.md/.png/.json); total {time.perf_counter() - t0:.0f} s")
    if data["best"] is None:
        print("error: every run diverged or never validated with finite parameters; nothing to choose "
              "(lower the learning rates in the grid)", file=sys.stderr)
        return EXIT_ALL_DIVERGED
    return 0


def write_sweep(run_dir: Path, cfg, result, *, show=None) -> dict:
    """Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` of a :func:`~metadqn_jax.sweep.run_sweep`
    result into ``run_dir`` (``show``: called with the Markdown text first). Returns the JSON data."""
    from metadqn_jax import report
    from metadqn_jax.sweep import to_dict

    data = to_dict(result)
    data["config"] = cfg.to_dict()
    meta = cfg.meta_config
    title = (f"{meta.family}, {meta.algorithm}: validation return per combination "
             f"({len(result.seeds)} meta-training seeds x {data['validation']['tasks']} validation tasks, "
             f"{meta.num_meta_steps} meta-steps)")
    text = report.sweep_table(data, title=title) + "\n"
    if show is not None:
        show(text)
    runs.output_path(run_dir, "sweep", ".md").write_text(text)
    report.plot_sweep(data, runs.output_path(run_dir, "sweep", ".png"), title=f"{meta.family}, {meta.algorithm}: sweep")
    runs.output_path(run_dir, "sweep", ".json").write_text(json.dumps(data, indent=1))
    return data


def _print(text: str) -> None:
    print(text, end="", flush=True)
