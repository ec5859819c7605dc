"""The few-shot results of a ``metadqn train`` run folder: ``<tag>.md`` (table and verdict),
``<tag>.png`` (plot), ``<tag>_profile.png`` (performance profiles), ``<tag>.json`` (numbers, per-run returns, config, the family's definition) and TensorBoard scalars
under ``tb/<tag>``, written by ``train`` (tag ``few_shot``) and ``evaluate``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from metadqn_jax import report
from metadqn_jax.app.logs import TBLog
from metadqn_jax.runs import layout
from metadqn_jax.tasks import family_spec

__all__ = ["write_few_shot", "verdict_line"]


def write_few_shot(run_dir: Path, tag: str, cfg, comp, *, trained: Sequence[str],
                   show: Callable[[str], None] | None = None) -> str:
    """Writes ``<tag>.md/.png/.json`` and the ``tb/<tag>`` scalars of a comparison.

    Args:
      run_dir: the run folder.
      tag: the file stem (``few_shot`` after training).
      cfg: the run's :class:`~metadqn_jax.runs.configs.TrainConfig`.
      comp: the :func:`metadqn_jax.compare.compare` result.
      trained: the inits whose training time is shown in the table (``()``: no time column).
      show: called with the text (table and verdict) before any file is written (e.g. to
        print it, so that a failing write loses no result).

    Returns:
      The printed text: the Markdown table and the verdict line(s).
    """
    results = comp.results
    fs = cfg.few_shot
    n = cfg.run.meta_seeds
    runs_ = f"{n} meta-seeds x {fs.num_tasks} tasks x {fs.seeds} adaptation seeds" if n > 1 else \
        f"{fs.num_tasks} tasks x {fs.seeds} seeds"
    title = (f"{cfg.meta.family}: greedy return after adapting on held-out test tasks "
             f"({runs_}, mean +- half-width of the 95% CI over {'meta-seeds and ' if n > 1 else ''}tasks)")
    times = {k: f"{comp.train_wall_s[k]:.0f} s" for k in comp.train_wall_s if k in trained}
    table = report.markdown_table(results, title=title, extra={"train time": times} if times else None)
    verdict = verdict_line(results, cfg.run.algorithms)
    guards = getattr(comp, "guards", {})
    text = table + ("\n\n" + verdict if verdict else "") + ("\n\n" + report.guard_line(guards) if guards else "") + "\n"
    if show is not None:
        show(text)
    layout.output_path(run_dir, tag, ".md").write_text(text)
    report.plot(results, layout.output_path(run_dir, tag, ".png"), title=f"{cfg.meta.family}: few-shot adaptation")
    report.plot_profile(results, layout.output_path(run_dir, tag + "_profile", ".png"),
                        title=f"{cfg.meta.family}: performance profiles on held-out tasks")
    data = {
        "results": report.to_dict(results, meta_seeds=list(range(cfg.run.seed, cfg.run.seed + cfg.run.meta_seeds))),
        "returns": {k: r.returns.tolist() for k, r in results.items()},
        "train_wall_s": dict(comp.train_wall_s),
        "verdict": verdict,
        "guard_adaptation": {k: g.to_dict() for k, g in guards.items()},
        "config": cfg.to_dict(),
        "family": family_spec(cfg.meta.family),  # the tasks' full definition (TaskFamily.to_spec)
    }
    layout.output_path(run_dir, tag, ".json").write_text(json.dumps(data, indent=1))
    tb = TBLog(layout.tb_dir(run_dir, tag), purge_step=0)  # a re-evaluation replaces the previous one
    for j, b in enumerate(fs.budgets):
        tb.scalars({f"{tag}/{name}": float(r.mean[j]) for name, r in results.items()}, b)
    tb.text(f"{tag}/table", table)
    tb.close()
    return text


def verdict_line(results, algorithms: Sequence[str]) -> str:
    """One line per meta-learned init: at how many budgets it beats every baseline.

    "Significantly" means the 95 % interval of the difference to every baseline, paired by task
    and resampling whole tasks (:func:`metadqn_jax.report.paired`; ``compare`` evaluates every
    init on the same tasks), lies above 0. Results without per-run returns fall back to
    non-overlapping intervals.

    Args:
      results: ``{init name: FewShotResult}`` (``mean``, ``ci95``, ``budgets``, ``returns``).
      algorithms: the meta-learned inits; every other name except ``oracle`` is a baseline.

    Returns:
      The lines joined by newlines; ``""`` when there is no baseline.
    """
    baselines = [n for n in results if n not in algorithms and n != "oracle"]
    if not baselines:
        return ""
    lines = []
    budgets = next(iter(results.values())).budgets
    for a in algorithms:
        if a not in results:
            continue
        ra = results[a]
        paired = ra.returns is not None and all(results[n].returns is not None for n in baselines)
        if paired:
            lower = np.min([report.paired(ra, results[n]).diff_low for n in baselines], axis=0)
        else:
            lower = np.min([(ra.mean - ra.ci95) - (results[n].mean + results[n].ci95) for n in baselines], axis=0)
        gains = np.asarray(ra.mean) - np.max([results[n].mean for n in baselines], axis=0)
        best = int(np.argmax(gains))
        how = "95% CI of the difference, paired by task, above 0" if paired else "95% CIs separated"
        lines.append(f"{a} vs. {', '.join(baselines)}: higher mean return at {int((gains > 0).sum())}/{len(budgets)} "
                     f"budgets (significantly, {how}, at {int((lower > 0).sum())}/{len(budgets)}); largest margin "
                     f"{gains[best]:+.2f} at {budgets[best]} env steps.")
    untrained = report.untrained_baselines(results, algorithms)
    if lines and untrained:
        lines.insert(0, report.void_line(untrained))
    return "\n".join(lines)
