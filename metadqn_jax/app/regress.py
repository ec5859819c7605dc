"""``metadqn regress``: sinusoid few-shot regression (Finn et al. 2017, section 5.1) on the
meta-gradient core: meta-train each algorithm, then report the MSE on held-out sinusoids
after K-shot SGD fine-tuning (:func:`metadqn_jax.regression.evaluate`).

Writes ``config.yaml``, ``metrics.csv`` (one row per chunk and algorithm), ``tb/<algorithm>/``
and ``regress.md/.json/.png`` into the run folder and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import tqdm.auto

from metadqn_jax import regression
from metadqn_jax.app import presets
from metadqn_jax.app.common import compiling, configure_jax, info, resolve_config
from metadqn_jax.app.logs import CSVLog, TBLog
from metadqn_jax.core.divergence import DivergenceError, first_divergence
from metadqn_jax.report import plot_regress
from metadqn_jax.runs import folder, layout
from metadqn_jax.runs.configs import RegressRunConfig
from metadqn_jax.runs.record import write_config

__all__ = ["cmd_regress"]


def cmd_regress(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """``metadqn regress`` (``flags``: the config layer of the options given); returns 0, or 3 when
    an algorithm's meta-training diverged (a non-finite query loss or meta-parameter, found at a
    chunk edge): then it prints one ``error:`` line naming the algorithm, iteration and quantity
    and writes no results (regress.md/.json/.png, table); metrics.csv and tb/ keep the chunks
    before it. With ``args.keep_going_on_divergence`` it trains on and reports what it gets."""
    cfg = resolve_config(RegressRunConfig, args, flags, presets.DEFAULT_REGRESS, presets.QUICK_REGRESS)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    run_dir = folder.new_run_dir(args.out, args.name, "regress", "sinusoid")
    with folder.create_run_dir(run_dir, "regress", getattr(args, "argv", None)):  # the run folder's lock
        with compiling(cfg.run.fast_compile):
            return _regress(args, cfg, run_dir)


def _regress(args: argparse.Namespace, cfg, run_dir) -> int:
    """The body of :func:`cmd_regress` once the run folder is created and locked."""
    configure_jax(args)
    write_config(run_dir, cfg)
    info(f"run folder: {run_dir}")
    family = regression.SinusoidTasks()
    ev = cfg.eval
    tasks = family.eval_tasks(seed=ev.seed, n=ev.num_tasks)
    eval_key = jax.random.fold_in(jax.random.key(ev.seed), 7)
    csv_log = CSVLog(layout.metrics_path(run_dir), ("algorithm", "iteration", "pre_adapt_loss", "post_adapt_loss",
                                                  "query_loss", "wall_s"))
    keep_going = bool(getattr(args, "keep_going_on_divergence", False))
    results: dict[str, dict] = {}
    walls: dict[str, float] = {}
    for algo in cfg.run.algorithms:
        rc = cfg.for_algorithm(algo)
        trainer = regression.make_meta_train(rc)
        tb = TBLog(layout.tb_dir(run_dir, algo))
        bar = None
        if not args.no_progress:
            bar = tqdm.auto.tqdm(total=rc.num_iterations, desc=f"regress {algo}", unit="it", dynamic_ncols=True)
        t0 = time.perf_counter()

        def callback(step, m, algo=algo, tb=tb, bar=bar, t0=t0):
            row = {k: float(np.mean(np.asarray(v))) for k, v in m._asdict().items() if k != "params_finite"}
            csv_log.write({"algorithm": algo, "iteration": step, **row, "wall_s": time.perf_counter() - t0})
            tb.scalars({f"train/{k}": v for k, v in row.items()}, step)
            if bar is not None:
                bar.set_postfix({"query_mse": f"{row['query_loss']:.3f}"})
                bar.update(step - bar.n)

        diverged = None
        try:
            state, train_metrics = trainer.run(callback=callback, allow_divergence=keep_going)
        except DivergenceError as e:
            diverged = e
        finally:
            if bar is not None:
                bar.close()
            tb.close()
        if diverged is not None:
            log = layout.metrics_path(run_dir)
            where = f"; the chunks before it are logged in {log}" if log.exists() else ""
            print(f"error: {diverged.detail}{where}; no results written (--keep-going-on-divergence trains on)",
                  file=sys.stderr)
            return 3
        bad = first_divergence({"query_loss": train_metrics.query_loss,
                                "meta_params_finite": train_metrics.params_finite}, 0) if keep_going else None
        if bad is not None:
            e = DivergenceError(*bad, what=f"{algo} meta-training", unit="iteration")
            info(f"warning: {e.detail}; trained on (--keep-going-on-divergence)")
        walls[algo] = time.perf_counter() - t0
        results[algo] = regression.evaluate(state.params, tasks, eval_key, shots=ev.shots, steps=ev.steps,
                                            inner_lr=ev.inner_lr)
        info(f"{algo}: trained and evaluated in {time.perf_counter() - t0:.0f} s")
    lines = [f"**Sinusoid regression: MSE on held-out tasks after K-shot SGD fine-tuning (lr {ev.inner_lr:g}; "
             f"{ev.num_tasks} tasks, mean +- 95% CI)**", "",
             "| algorithm | K | " + " | ".join(f"{s} steps" for s in ev.steps) + " | train time |",
             "|---|---:|" + "---:|" * len(ev.steps) + "---:|"]
    for algo, by_k in results.items():
        for k in ev.shots:
            cells = [f"{by_k[k][s]['mean']:.3f} ± {by_k[k][s]['ci95']:.3f}" for s in ev.steps]
            lines.append(f"| {algo} | {k} | " + " | ".join(cells) + f" | {walls[algo]:.0f} s |")
    text = "\n".join(lines) + "\n"
    layout.output_path(run_dir, "regress", ".md").write_text(text)
    layout.output_path(run_dir, "regress", ".json").write_text(json.dumps({
        "mse": {a: {str(k): {str(s): v for s, v in by_s.items()} for k, by_s in by_k.items()}
                for a, by_k in results.items()},
        "train_wall_s": walls, "config": cfg.to_dict()}, indent=1))
    plot_regress(layout.output_path(run_dir, "regress", ".png"), results, ev)
    print(text, end="")
    print(f"\nrun folder: {run_dir}")
    return 0
