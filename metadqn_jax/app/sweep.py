"""``metadqn sweep``: a grid over the traced meta-training hyper-parameters, every combination ×
meta-training seed trained as ONE vmapped program (:func:`metadqn_jax.sweep.run_sweep`), the
best combination chosen on validation tasks only.

The run folder (created atomically and locked, :mod:`metadqn_jax.runs.folder`) gets
``config.yaml`` first (the grid included: ``--config`` of a sweep's config.yaml reruns it), then
``sweep.json`` (one row per combination and seed, a summary per combination, ``best``),
``sweep.md`` (the table, best in bold) and ``sweep.png`` (validation return per combination).
The test split is never evaluated.

Configuration (:class:`~metadqn_jax.runs.configs.SweepConfig`; ``--config``, ``--set``,
``--print-config``): ``meta`` and ``hparams`` as in ``metadqn train`` (``hparams`` holds the
values of the fields the grid does not vary), ``validation``, and ``sweep``
(:class:`~metadqn_jax.runs.settings.SweepSettings`: ``algorithm``, ``grid``, ``seeds``, ``seed``,
``num_devices``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metadqn_jax import report
from metadqn_jax.app import presets
from metadqn_jax.app.common import (
    apply_family_options,
    compiling,
    configure_jax,
    info,
    resolve_config,
)
from metadqn_jax.core.errors import ConfigError
from metadqn_jax.progress import ChunkBar
from metadqn_jax.runs import folder, layout
from metadqn_jax.runs.configs import SweepConfig
from metadqn_jax.runs.record import write_config
from metadqn_jax.sharding import task_mesh
from metadqn_jax.sweep import run_sweep, to_dict

__all__ = ["EXIT_ALL_DIVERGED", "cmd_sweep", "resolve_sweep_config", "write_sweep"]

EXIT_ALL_DIVERGED = 3  # every run diverged: nothing to choose


def resolve_sweep_config(args: argparse.Namespace, flags: Mapping[str, Any]):
    """The sweep's configuration from its layers (:func:`metadqn_jax.app.common.resolve_config`:
    defaults < ``--quick`` < ``--config`` < flags < ``--set``). The family is resolved here, in
    this one call (``meta.family``: a registered family, or a user's family from ``--family-file`` /
    ``--family-module``, installed here before the layers are resolved).

    Raises:
      ConfigError: an unknown family, a bad ``--grid`` (unknown or static field, not a number,
        out of range, a field or value given twice), or any other invalid value.
    """
    flags = dict(flags)
    apply_family_options(args, flags, "meta.family")  # --family-file / --family-module: the family, unless --family
    return resolve_config(SweepConfig, args, flags, presets.DEFAULT_SWEEP, presets.QUICK_SWEEP)


def cmd_sweep(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """``metadqn sweep`` (``flags``: the config layer of the options given). Returns the exit
    status: 0, or :data:`EXIT_ALL_DIVERGED` when every run diverged (one ``error:`` line; the
    files are still written).

    Raises:
      ConfigError: a usage, config or run-folder error, before any computation.
    """
    cfg = resolve_sweep_config(args, flags)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    if not cfg.sweep.grid:
        raise ConfigError("--grid: a sweep needs at least one --grid FIELD=V1,V2,... (e.g. --grid "
                          "hparams.tau=0.9,0.99; fields: hparams.inner_lr, meta_lr, weight_decay, gamma, epsilon, tau)")
    run_dir = folder.new_run_dir(args.out, args.name, "sweep", cfg.meta.family)
    configure_jax(args)
    task_mesh(cfg.meta.num_tasks, cfg.sweep.num_devices, cfg.meta.task_micro_batch)  # fail before compute
    lock = folder.create_run_dir(run_dir, "sweep", getattr(args, "argv", None))
    try:
        with compiling(cfg.sweep.fast_compile):
            return _sweep(args, cfg, run_dir)
    finally:
        lock.release()


def _sweep(args: argparse.Namespace, cfg, run_dir: Path) -> int:
    """The body of :func:`cmd_sweep` once the run folder is locked."""
    write_config(run_dir, cfg)
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
        info(f"interrupted; nothing was written but {layout.config_path(run_dir)}")
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
    data = to_dict(result)
    data["config"] = cfg.to_dict()
    meta = cfg.meta_config
    title = (f"{meta.family}, {meta.algorithm}: validation return per combination "
             f"({len(result.seeds)} meta-training seeds x {data['validation']['tasks']} validation tasks, "
             f"{meta.num_meta_steps} meta-steps)")
    text = report.sweep_table(data, title=title) + "\n"
    if show is not None:
        show(text)
    layout.output_path(run_dir, "sweep", ".md").write_text(text)
    report.plot_sweep(data, layout.output_path(run_dir, "sweep", ".png"),
                      title=f"{meta.family}, {meta.algorithm}: sweep")
    layout.output_path(run_dir, "sweep", ".json").write_text(json.dumps(data, indent=1))
    return data


def _print(text: str) -> None:
    """Prints a result on stdout at once (before the files holding it are written)."""
    print(text, end="", flush=True)
