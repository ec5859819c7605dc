"""``metadqn dqn``: single-task DQN on a gymnax environment or one task of a family, every
seed in one compiled program (:func:`metadqn_jax.dqn.make_train`, vmapped over seeds).

Writes ``config.yaml``, ``metrics.csv`` (one row per seed and evaluation), ``tb/seed_<s>/``,
``returns.png`` and ``dqn.md/.json`` into the run folder and prints the table of greedy
return (mean and 95 % interval over seeds: :func:`metadqn_jax.core.stats.summarize_runs`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import dqn, envs, tasks
from metadqn_jax.app import presets
from metadqn_jax.app.common import (
    apply_family_options,
    compiling,
    configure_jax,
    info,
    resolve_config,
)
from metadqn_jax.app.logs import CSVLog, TBLog
from metadqn_jax.core import stats
from metadqn_jax.core.compile import jit
from metadqn_jax.report import plot_curves
from metadqn_jax.runs import folder, layout
from metadqn_jax.runs.configs import DQNRunConfig
from metadqn_jax.runs.record import write_config

__all__ = ["cmd_dqn"]


def cmd_dqn(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """``metadqn dqn`` (``flags``: the config layer of the options given); returns 0, or 3 when a
    seed's training diverged (a non-finite TD loss or network parameter, flagged inside the
    compiled program): then it prints one ``error:`` line naming the env step, seed and quantity
    and writes no results (dqn.md/.json, returns.png, table), only config.yaml, metrics.csv and
    tb/; with ``args.keep_going_on_divergence`` it prints a warning line and writes them all."""
    flags = {k: dict(v) for k, v in flags.items()}
    apply_family_options(args, flags, "run.family")  # --family-file / --family-module: the family, unless --family
    cfg = resolve_config(DQNRunConfig, args, flags, presets.DEFAULT_DQN, presets.QUICK_DQN)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    run_dir = folder.new_run_dir(args.out, args.name, "dqn", cfg.run.family or cfg.dqn.env_id)
    with folder.create_run_dir(run_dir, "dqn", getattr(args, "argv", None)):  # the run folder's lock
        with compiling(cfg.run.fast_compile):
            return _dqn(args, cfg, run_dir)


def _dqn(args: argparse.Namespace, cfg, run_dir) -> int:
    """The body of :func:`cmd_dqn` once the run folder is created and locked."""
    configure_jax(args)
    write_config(run_dir, cfg)
    info(f"run folder: {run_dir}")
    if cfg.run.family is not None:
        fam = tasks.get_family(cfg.run.family)
        env_params = jax.tree.map(lambda x: x[cfg.run.task], fam.tasks(cfg.run.split))
        where = f"{cfg.run.family} {cfg.run.split} task {cfg.run.task}"
    else:
        env_params = envs.make_env(cfg.dqn.env_id)[1]
        where = cfg.dqn.env_id
    train = dqn.make_train(cfg.dqn, env_params)
    hp = cfg.dqn.hparams()
    keys = jax.vmap(jax.random.key)(jnp.arange(cfg.run.seed, cfg.run.seed + cfg.run.seeds))
    info(f"training DQN on {where}: {cfg.dqn.total_steps} env steps x {cfg.run.seeds} seed(s) as one "
         "compiled program (no progress bar: results appear when it finishes)")
    t0 = time.perf_counter()
    _, metrics = jit(jax.vmap(train, in_axes=(0, None)))(keys, hp)
    metrics = jax.tree.map(np.asarray, metrics)
    wall = time.perf_counter() - t0
    diverged = _divergence(metrics, cfg.run.seed)
    tb_warnings = logging.getLogger("tensorboardX.x2num")  # warns on each non-finite scalar logged
    tb_level = tb_warnings.level
    if diverged is not None:  # the one line below says it; metrics.csv and tb/ keep the values
        tb_warnings.setLevel(logging.ERROR)
    csv_log = CSVLog(layout.metrics_path(run_dir), ("seed", "env_steps", "eval_return", "train_return", "loss"))
    for i in range(cfg.run.seeds):
        tb = TBLog(layout.tb_dir(run_dir, f"seed_{cfg.run.seed + i}"))
        for j in range(metrics.env_steps.shape[1]):
            row = {"seed": cfg.run.seed + i, "env_steps": int(metrics.env_steps[i, j]),
                   "eval_return": float(metrics.eval_return[i, j]),
                   "train_return": float(metrics.train_return[i, j]), "loss": float(metrics.loss[i, j])}
            csv_log.write(row)
            tb.scalars({"eval/return": row["eval_return"], "train/return": row["train_return"],
                        "train/loss": row["loss"]}, row["env_steps"])
        tb.close()
    tb_warnings.setLevel(tb_level)
    if diverged is not None:
        if not getattr(args, "keep_going_on_divergence", False):
            print(f"error: {diverged}; the log is in {layout.metrics_path(run_dir)}; no results written "
                  "(--keep-going-on-divergence writes them anyway)", file=sys.stderr)
            return 3
        info(f"warning: {diverged}; results written anyway (--keep-going-on-divergence)")
    solved = np.asarray(dqn.first_solved_step(jax.tree.map(jnp.asarray, metrics), cfg.dqn.solve_threshold))
    ev = metrics.eval_return  # [seeds, evaluations]
    n = ev.shape[0]
    summary = stats.summarize_runs(stats.as_runs(ev, "mb"))  # each seed an independent training run
    lines = [f"**DQN on {where}: greedy return ({cfg.dqn.eval_episodes} episodes, mean and 95% CI over "
             f"{n} seed(s), bootstrap)**", "", "| env steps | eval return | 95% CI |", "|---|---|---|"]
    for j in range(ev.shape[1]):
        lines.append(f"| {int(metrics.env_steps[0, j])} | {summary.mean[j]:.2f} | "
                     f"[{summary.ci_low[j]:.2f}, {summary.ci_high[j]:.2f}] |")
    solved_txt = [int(s) if s >= 0 else None for s in solved]
    lines += ["", f"first evaluation >= {cfg.dqn.solve_threshold:g}: {solved_txt} (env steps per seed; "
                  f"None: never); wall time {wall:.0f} s (compile + train)"]
    text = "\n".join(lines) + "\n"
    layout.output_path(run_dir, "dqn", ".md").write_text(text)
    layout.output_path(run_dir, "dqn", ".json").write_text(json.dumps({
        "env_steps": metrics.env_steps[0].tolist(), "eval_return": ev.tolist(),
        "train_return": metrics.train_return.tolist(), "loss": metrics.loss.tolist(),
        "first_solved_step": solved_txt, "wall_s": wall, "config": cfg.to_dict()}, indent=1))
    plot_curves(layout.output_path(run_dir, "returns", ".png"), metrics.env_steps[0], ev, f"DQN on {where}",
                "env steps", "greedy return")
    print(text, end="")
    print(f"\nrun folder: {run_dir}")
    return 0


def _divergence(metrics, first_seed: int) -> str | None:
    """One line on the earliest divergence over the seeds (``metrics`` leaves ``[seeds, evals]``,
    from :func:`metadqn_jax.dqn.make_train`), or ``None`` when no seed diverged."""
    found = []
    for i in range(metrics.diverged_step.shape[0]):
        d = dqn.first_divergence(type(metrics)(*(x[i] for x in metrics)))
        if d is not None:
            found.append((d[0], first_seed + i, d[1], d[2]))
    if not found:
        return None
    step, seed, quantity, value = min(found)
    what = f"the TD loss is {value!r}" if quantity == "loss" else "a network parameter is not finite"
    others = f"; {len(found)} of {metrics.diverged_step.shape[0]} seeds diverged" if len(found) > 1 else ""
    return f"DQN diverged at env step {step} (seed {seed}{others}): {what}"
