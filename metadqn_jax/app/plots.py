"""The PNG plots of ``metadqn dqn`` and ``metadqn regress`` (matplotlib, Agg backend). The
few-shot plot of ``metadqn train`` is :func:`metadqn_jax.report.plot`."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_curves", "plot_regress"]


def plot_curves(path: Path, x, ys, title: str, xlabel: str, ylabel: str) -> None:
    """Writes a PNG of the curves ``ys [runs, points]`` over ``x [points]`` (thin lines) and
    their mean (thick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ys = np.asarray(ys)
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for y in ys:
        ax.plot(x, y, color="tab:blue", alpha=0.25, lw=1)
    ax.plot(x, ys.mean(0), color="tab:blue", lw=2, label=f"mean of {ys.shape[0]}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_regress(path: Path, results: dict, ev) -> None:
    """Writes a PNG of the held-out MSE (mean +- 95 % CI, log scale) against the SGD steps, one
    line per algorithm and support size.

    Args:
      path: the PNG file.
      results: ``{algorithm: {K: {steps: {"mean": float, "ci95": float}}}}``.
      ev: the ``eval`` settings (:class:`~metadqn_jax.app.settings.RegressEvalSettings`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for algo, by_k in results.items():
        for k in ev.shots:
            means = [by_k[k][s]["mean"] for s in ev.steps]
            cis = [by_k[k][s]["ci95"] for s in ev.steps]
            ax.errorbar(ev.steps, means, yerr=cis, marker="o", ms=4, capsize=3, label=f"{algo}, K={k}")
    ax.set_xlabel("SGD steps on the K support points")
    ax.set_ylabel("MSE on held-out sinusoids")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
