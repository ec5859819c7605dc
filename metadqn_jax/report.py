"""Results as Markdown tables, JSON-ready dicts and PNG plots: the few-shot comparison (a
return-vs-budget plot with 95 % bands, performance profiles), hyper-parameter sweeps, and the
curves of ``metadqn dqn`` and ``metadqn regress``. Every number comes from
:mod:`metadqn_jax.core.stats`; plots are drawn on a :class:`matplotlib.figure.Figure` (the Agg
canvas, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from metadqn_jax.core import stats
from metadqn_jax.fewshot import FewShotResult

SUMMARY_FIELDS = ("ci_low", "ci_high", "iqm", "iqm_low", "iqm_high")


def to_dict(results: Mapping[str, FewShotResult], *, meta_seeds: Sequence[int] | None = None) -> dict:
    """JSON-ready: ``"budgets"``, ``"axes"`` of the returns (:data:`metadqn_jax.core.stats.AXES`),
    ``"ci_method"``, ``"meta_seeds"`` (when given) and per init ``{"mean", "ci95", "ci_low",
    "ci_high", "iqm", "iqm_low", "iqm_high": [B], "returns": [meta_seed][task][adapt_seed][budget]}``
    (fields a result lacks, e.g. one read back from JSON, are left out)."""
    budgets = next(iter(results.values())).budgets
    out: dict = {"budgets": list(budgets), "axes": list(stats.AXES), "ci_method": stats.CI_METHOD}
    if meta_seeds is not None:
        out["meta_seeds"] = [int(m) for m in meta_seeds]
    for name, r in results.items():
        out[name] = {"mean": [float(x) for x in r.mean], "ci95": [float(x) for x in r.ci95]}
        for field in SUMMARY_FIELDS:
            if getattr(r, field) is not None:
                out[name][field] = [float(x) for x in getattr(r, field)]
        if r.returns is not None:
            out[name]["returns"] = np.round(np.asarray(r.returns, np.float64), 4).tolist()
    return out


def paired(a: FewShotResult, b: FewShotResult) -> stats.Paired:
    """``a − b`` per budget and the probability that ``a`` beats ``b``, paired by (meta seed,
    task), with 95 % intervals that resample whole tasks (:func:`metadqn_jax.core.stats.paired_compare`).

    Valid when both were evaluated on the same tasks (as :func:`metadqn_jax.compare.compare`
    does): the variation between tasks, which both inits share, cancels.

    Raises:
      ValueError: a result lacks its per-run returns, or the runs or budgets differ.
    """
    if a.returns is None or b.returns is None:
        raise ValueError("paired needs the per-run returns of both results")
    ra, rb = np.asarray(a.returns, np.float64), np.asarray(b.returns, np.float64)
    if ra.shape != rb.shape or tuple(a.budgets) != tuple(b.budgets):
        raise ValueError(f"paired needs the same runs and budgets, got returns {ra.shape} with "
                         f"budgets {tuple(a.budgets)} and {rb.shape} with {tuple(b.budgets)}")
    return stats.paired_compare(ra, rb)


def untrained_baselines(results: Mapping[str, FewShotResult], algorithms: Sequence[str]) -> list[str]:
    """The trained baselines (every init but ``algorithms``, ``scratch`` and ``oracle``) whose
    return is not above ``scratch``'s at any budget (the lower end of the paired 95 % interval,
    resampling whole tasks, never above 0): a comparison with one of them is void. ``[]``
    without a ``scratch`` result or per-run returns."""
    scratch = results.get("scratch")
    if scratch is None or scratch.returns is None:
        return []
    out = []
    for name, r in results.items():
        if name in algorithms or name in ("scratch", "oracle") or r.returns is None:
            continue
        if not np.any(np.asarray(paired(r, scratch).diff_low) > 0):
            out.append(name)
    return out


def void_line(untrained: Sequence[str]) -> str:
    """The one line that voids a comparison with the baselines :func:`untrained_baselines` names."""
    return (f"VOID comparison: {', '.join(untrained)} did not train (never above scratch, paired 95% CI, at any "
            "budget): a win over it says nothing; fix its training first.")


def paired_table(results: Mapping[str, FewShotResult], baseline: str = "pretrained", *, title: str = "") -> str:
    """Markdown: every other init (the oracle and ``baseline`` excluded) minus ``baseline``,
    paired by task (:func:`paired`): the mean difference, its 95 % interval ``[low, high]`` (a
    bootstrap interval: it may be asymmetric) and the probability of improvement per budget;
    bold where the interval excludes 0."""
    budgets = next(iter(results.values())).budgets
    lines = [f"**{title}**", ""] if title else []
    lines.append(f"| init − {baseline} | " + " | ".join(f"{b} steps" for b in budgets) + " |")
    lines.append("|---" * (len(budgets) + 1) + "|")
    for name, r in results.items():
        if name in (baseline, "oracle"):
            continue
        pr = paired(r, results[baseline])
        cells = [f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}] (P {p:.2f})"
                 for m, lo, hi, p in zip(pr.diff, pr.diff_low, pr.diff_high, pr.p_improve)]
        cells = [f"**{cell}**" if sig else cell for cell, sig in zip(cells, pr.significant)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def guard_line(guards: Mapping) -> str:
    """One line: which baselines' one-shot adaptation is guarded, with the validation returns
    that decided it (``{init: metadqn_jax.fewshot.GuardChoice}``)."""
    parts = [f"{name} {'guarded' if g.guard else 'not guarded'} ({g.unadapted:.2f} unadapted, {g.adapted:.2f} "
             "adapted)" for name, g in guards.items()]
    n = next(iter(guards.values())).num_tasks
    return (f"Adaptation guard, chosen on {n} validation tasks (guarded unless adapting raised the validation "
            "return; guarded: the unadapted parameters are deployed until the adapted ones win a contest): "
            + "; ".join(parts) + ".")


def markdown_table(
    results: Mapping[str, FewShotResult], *, title: str = "", extra: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """One row per initialisation, one column per budget: ``mean ± ci95``; the best mean per
    budget is bold (the oracle, a reference, is excluded from the bolding). ``extra`` adds
    columns: ``{column: {init name: text}}`` (e.g. training wall time)."""
    budgets = next(iter(results.values())).budgets
    names = list(results)
    contenders = [n for n in names if n != "oracle"]
    best = {j: max(contenders, key=lambda n: results[n].mean[j]) for j in range(len(budgets))} if contenders else {}
    lines = [f"**{title}**", ""] if title else []
    extra_cols = list(extra) if extra else []
    lines.append("| init | " + " | ".join(f"{b} steps" for b in budgets) + " |"
                 + "".join(f" {c} |" for c in extra_cols))
    lines.append("|---" * (len(budgets) + 1 + len(extra_cols)) + "|")
    for n in names:
        r = results[n]
        cells = []
        for j in range(len(budgets)):
            cell = f"{r.mean[j]:.2f} ± {r.ci95[j]:.2f}"
            cells.append(f"**{cell}**" if best.get(j) == n else cell)
        row = f"| {n} | " + " | ".join(cells) + " |"
        for c in extra_cols:
            row += f" {extra[c].get(n, '')} |"
        lines.append(row)
    return "\n".join(lines)


def plot(
    results: Mapping[str, FewShotResult],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "environment steps on the new task (adaptation budget)",
    ylabel: str = "greedy return (mean, 95% CI)",
    log_x: bool = True,
    points: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Return vs. environment steps with 95 % CI bands (``log_x``: symlog x-axis so 0 is
    shown). An entry named ``"oracle"`` is drawn as a dashed reference line; ``points`` adds
    labelled reference points ``{label: (x, y)}``."""
    path = Path(path)
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    for name, r in results.items():
        x = np.asarray(r.budgets, float)
        style = dict(ls="--", color="black", lw=1) if name == "oracle" else dict(marker="o", ms=4)
        ax.plot(x, r.mean, label=name, **style)
        if name != "oracle":
            lo, hi = (r.ci_low, r.ci_high) if r.ci_low is not None else (r.mean - r.ci95, r.mean + r.ci95)
            ax.fill_between(x, lo, hi, alpha=0.2)
    for label, (x, y) in (points or {}).items():
        ax.plot([x], [y], marker="*", ms=12, color="black", ls="none", label=label)
    if log_x:
        positive = [b for b in next(iter(results.values())).budgets if b > 0]
        ax.set_xscale("symlog", linthresh=float(min(positive)) if positive else 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save_axes(fig, ax, path, title)


def plot_profile(
    results: Mapping[str, FewShotResult],
    path: str | Path,
    *,
    budgets: Sequence[int] | None = None,
    title: str = "",
    num_thresholds: int = 101,
) -> Path:
    """Performance profiles (Agarwal et al. 2021): for each init, the fraction of held-out tasks
    whose mean return exceeds a threshold ``τ``, against ``τ`` — one panel per budget (default:
    the smallest non-zero budget and the largest). Inits without per-run returns (e.g. read back
    from JSON) and the oracle's reference line are skipped."""
    path = Path(path)
    runs = {n: r for n, r in results.items() if r.returns is not None}
    all_budgets = list(next(iter(results.values())).budgets)
    if budgets is None:
        positive = [b for b in all_budgets if b > 0] or all_budgets
        budgets = sorted({positive[0], all_budgets[-1]})
    cols = [all_budgets.index(b) for b in budgets]
    per_task = {n: stats.task_means(r.returns).reshape(-1, len(all_budgets)) for n, r in runs.items()}
    fig = Figure(figsize=(4.2 * len(cols), 3.8), dpi=120)
    axes = fig.subplots(1, len(cols), squeeze=False)
    for ax, j, b in zip(axes[0], cols, budgets):
        values = np.concatenate([v[:, j] for v in per_task.values()]) if per_task else np.zeros(1)
        finite = values[np.isfinite(values)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        tau = np.linspace(lo - 1e-9, hi, num_thresholds)
        for name, r in runs.items():
            frac = stats.performance_profile(r.returns[..., j:j + 1], tau)[:, 0]
            ax.plot(tau, frac, label=name, ls="--" if name == "oracle" else "-")
        ax.set_title(f"after {b} env steps", fontsize=9)
        ax.set_xlabel("return threshold τ")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of tasks with return > τ")
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ------------------------------------------------------------------------ hyper-parameter sweeps
def sweep_table(data: Mapping, *, title: str = "") -> str:
    """Markdown of a sweep (:func:`metadqn_jax.sweep.to_dict`): one row per combination, its grid
    values and its validation return (mean ± half-width of the 95 % interval, the interval
    ``[low, high]``, the IQM), the best combination in bold; then the chosen hyper-parameters,
    its difference from the runner-up (paired by seed and task) and the selection rule."""
    combos = data["combinations"]
    fields = list(data["grid"])
    best = (data.get("best") or {}).get("combination", -1)
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"
    lines = [f"**{title}**", ""] if title else []
    lines.append("| # | " + " | ".join(f"hparams.{f}" for f in fields)
                 + " | val return (mean ± 95% CI) | 95% CI | IQM | runs diverged |")
    lines.append("|---" * (len(fields) + 5) + "|")
    for c in combos:
        m, lo, hi = c["val_return"], c["ci_low"], c["ci_high"]
        half = None if None in (lo, hi) else (hi - lo) / 2
        cell = f"{fmt(m)} ± {fmt(half)}"
        cell = f"**{cell}**" if c["combination"] == best else cell
        lines.append(f"| {c['combination']} | " + " | ".join(f"{c['grid'][f]:g}" for f in fields)
                     + f" | {cell} | [{fmt(lo)}, {fmt(hi)}] | {fmt(c['iqm'])} | {c['diverged_runs']} |")
    lines.append("")
    b = data.get("best")
    if b is None:
        lines.append("No combination has a finite validation return: nothing was chosen.")
    else:
        flags = " ".join(f"--set hparams.{f}={b['grid'][f]:g}" for f in fields)
        lines.append(f"Best: combination {b['combination']} ({b['label']}), validation return {fmt(b['val_return'])} "
                     f"[{fmt(b['ci_low'])}, {fmt(b['ci_high'])}]; as flags: `{flags}`.")
        r = b.get("vs_runner_up")
        if r is not None:
            sig = r["diff_low"] is not None and r["diff_low"] > 0
            lines.append(f"Against the runner-up ({r['label']}): {r['diff']:+.2f} [{r['diff_low']:+.2f}, "
                         f"{r['diff_high']:+.2f}], P(better) {r['p_improve']:.2f} (paired by meta-training seed and "
                         f"task; {'the interval excludes 0' if sig else 'the interval includes 0: not a clear winner'}).")
    v = data["validation"]
    lines.append("")
    lines.append(f"Validation return: {v['val_return']}; {v['tasks']} tasks of the validation split, budgets "
                 f"{v['budgets']} env steps, evaluated once more after training with the kept (early-stopping) "
                 f"parameters. Selection: {data['selection']}. Intervals: {data['ci_method']}.")
    return "\n".join(lines)


def plot_sweep(data: Mapping, path: str | Path, *, title: str = "") -> Path:
    """The validation return of every combination of a sweep (:func:`metadqn_jax.sweep.to_dict`):
    the mean with its 95 % interval, each meta-training seed as a dot, the best in red."""
    path = Path(path)
    combos = data["combinations"]
    best = (data.get("best") or {}).get("combination", -1)
    x = np.arange(len(combos))
    nan = lambda v: np.nan if v is None else v
    mean = np.array([nan(c["val_return"]) for c in combos], float)
    lo = np.array([nan(c["ci_low"]) for c in combos], float)
    hi = np.array([nan(c["ci_high"]) for c in combos], float)
    fig = Figure(figsize=(max(5.0, 0.9 * len(combos) + 2), 4.5), dpi=120)
    ax = fig.subplots()
    colors = ["tab:red" if c["combination"] == best else "tab:blue" for c in combos]
    ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor="gray", capsize=4)
    ax.scatter(x, mean, c=colors, s=50, zorder=3, label="mean, 95% CI (red: best)")
    for c in combos:
        vals = [nan(r["val_return"]) for r in data["rows"] if r["combination"] == c["combination"]]
        ax.scatter(np.full(len(vals), c["combination"]) + 0.15, vals, s=12, color="black", alpha=0.5, zorder=2,
                   label="one meta-training seed" if c["combination"] == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([c["label"].replace(", ", "\n") for c in combos], fontsize=7)
    ax.set_ylabel("validation return")
    return _save_axes(fig, ax, path, title)


def _save(fig: Figure, path: Path) -> Path:
    """Lays ``fig`` out and writes it to ``path`` (making its folder)."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _save_axes(fig, ax, path: Path, title: str | None) -> Path:
    """The common finish of a one-axes plot: ``title``, a light grid, the legend, then :func:`_save`."""
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


# ------------------------------------------------------------------------ dqn and regress
def plot_curves(path: str | Path, x, ys, title: str, xlabel: str, ylabel: str) -> Path:
    """Writes a PNG of the curves ``ys [runs, points]`` over ``x [points]`` (thin lines) and
    their mean (thick): ``metadqn dqn``'s return per seed."""
    ys = np.asarray(ys)
    fig = Figure(figsize=(6.5, 4), dpi=110)
    ax = fig.subplots()
    for y in ys:
        ax.plot(x, y, color="tab:blue", alpha=0.25, lw=1)
    ax.plot(x, ys.mean(0), color="tab:blue", lw=2, label=f"mean of {ys.shape[0]}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save_axes(fig, ax, Path(path), title)


def plot_regress(path: str | Path, results: Mapping, ev) -> Path:
    """Writes a PNG of ``metadqn regress``'s held-out MSE (mean ± 95 % CI, log scale) against
    the SGD steps, one line per algorithm and support size.

    Args:
      path: the PNG file.
      results: ``{algorithm: {K: {steps: {"mean": float, "ci95": float}}}}``.
      ev: the ``eval`` settings (:class:`~metadqn_jax.runs.settings.RegressEvalSettings`).
    """
    fig = Figure(figsize=(6.5, 4), dpi=110)
    ax = fig.subplots()
    for algo, by_k in results.items():
        for k in ev.shots:
            means = [by_k[k][s]["mean"] for s in ev.steps]
            cis = [by_k[k][s]["ci95"] for s in ev.steps]
            ax.errorbar(ev.steps, means, yerr=cis, marker="o", ms=4, capsize=3, label=f"{algo}, K={k}")
    ax.set_xlabel("SGD steps on the K support points")
    ax.set_ylabel("MSE on held-out sinusoids")
    ax.set_yscale("log")
    return _save_axes(fig, ax, Path(path), None)
