"""Few-shot results as a markdown table, a JSON-ready dict and a PNG plot with CI bands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from metadqn_jax.core.stats import mean_ci95
from metadqn_jax.fewshot import FewShotResult


def to_dict(results: Mapping[str, FewShotResult]) -> dict:
    """``{name: {"mean": [...], "ci95": [...], "returns": [[...] per run]}}`` plus ``"budgets"``
    (JSON-serialisable; ``returns`` only where the per-run returns are known)."""
    budgets = next(iter(results.values())).budgets
    out: dict = {"budgets": list(budgets)}
    for name, r in results.items():
        out[name] = {"mean": [float(x) for x in r.mean], "ci95": [float(x) for x in r.ci95]}
        if r.returns is not None:
            out[name]["returns"] = np.round(np.asarray(r.returns, np.float64), 4).tolist()
    return out


def paired_difference(a: FewShotResult, b: FewShotResult) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95 % CI half-width of ``a − b`` per budget, *paired* by run.

    Valid when both were evaluated on the same tasks with the same keys (as
    :func:`metadqn_jax.compare.compare` does): the variation between tasks, which both inits
    share, cancels, so the interval is much tighter than comparing two ``ci95`` bands.
    Returns ``(mean [B], ci95 [B])``.
    """
    if a.returns is None or b.returns is None:
        raise ValueError("paired_difference needs the per-run returns of both results")
    ra, rb = np.asarray(a.returns, np.float64), np.asarray(b.returns, np.float64)
    if ra.shape != rb.shape or tuple(a.budgets) != tuple(b.budgets):
        raise ValueError(f"paired_difference needs the same runs and budgets, got returns {ra.shape} with "
                         f"budgets {tuple(a.budgets)} and {rb.shape} with {tuple(b.budgets)}")
    return mean_ci95(ra - rb, axis=0)


def paired_table(results: Mapping[str, FewShotResult], baseline: str = "pretrained", *, title: str = "") -> str:
    """Markdown: every other init (the oracle and ``baseline`` excluded) minus ``baseline``,
    paired by run (:func:`paired_difference`), ``mean ± ci95`` per budget; bold where the
    interval excludes 0 (a difference the runs resolve)."""
    budgets = next(iter(results.values())).budgets
    lines = [f"**{title}**", ""] if title else []
    lines.append(f"| init − {baseline} | " + " | ".join(f"{b} steps" for b in budgets) + " |")
    lines.append("|---" * (len(budgets) + 1) + "|")
    for name, r in results.items():
        if name in (baseline, "oracle"):
            continue
        mean, ci = paired_difference(r, results[baseline])
        cells = [f"{m:+.2f} ± {c:.2f}" for m, c in zip(mean, ci)]
        cells = [f"**{cell}**" if abs(m) > c else cell for cell, m, c in zip(cells, mean, ci)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, r in results.items():
        x = np.asarray(r.budgets, float)
        style = dict(ls="--", color="black", lw=1) if name == "oracle" else dict(marker="o", ms=4)
        ax.plot(x, r.mean, label=name, **style)
        if name != "oracle":
            ax.fill_between(x, r.mean - r.ci95, r.mean + r.ci95, alpha=0.2)
    for label, (x, y) in (points or {}).items():
        ax.plot([x], [y], marker="*", ms=12, color="black", ls="none", label=label)
    if log_x:
        positive = [b for b in next(iter(results.values())).budgets if b > 0]
        ax.set_xscale("symlog", linthresh=float(min(positive)) if positive else 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
