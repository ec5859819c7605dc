"""Plots :mod:`throughput`'s JSON: env-steps/s and the cost per task versus tasks per meta-step.

Usage::

    python benchmarks/plot_throughput.py throughput.json throughput.png
"""

from __future__ import annotations

import json
import sys


def plot(result: dict, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows = [r for r in result["rows"] if r.get("kind", "throughput") == "throughput" and r["inner_steps"] == 1
                and r.get("query_source", "adapted") == "adapted"]
    rows = [r for r in all_rows if not r.get("task_micro_batch")]
    micro = [r for r in all_rows if r.get("task_micro_batch")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    styles = {1: "-", 8: "--"}
    for E in sorted({r["envs_per_task"] for r in rows}):
        rs = sorted((r for r in rows if r["envs_per_task"] == E), key=lambda r: r["tasks"])
        T = [r["tasks"] for r in rs]
        ls = styles.get(E, ":")
        series = {
            "JAX meta-step (vmap over tasks)": ("env_steps_per_s", "C0"),
            "per-task loop (jit per task)": ("loop_env_steps_per_s", "C1"),
            "PyTorch torch.func (best of vmap/loop)": ("torch_env_steps_per_s", "C2"),
            "rollout limit (acting only)": ("rollout_env_steps_per_s", "C3"),
        }
        for label, (key, color) in series.items():
            pts = [(t, r.get(key)) for t, r in zip(T, rs) if r.get(key)]
            if pts:
                ax1.plot(*zip(*pts), ls, marker="o", color=color, label=f"{label}, {E} env/task")
        for label, (key, color) in series.items():
            pts = [(t, 1e3 * r["env_steps_per_meta_step"] / r[key] / t) for t, r in zip(T, rs) if r.get(key)]
            if pts:
                ax2.plot(*zip(*pts), ls, marker="o", color=color, label=f"{label}, {E} env/task")
        ms = sorted((r for r in micro if r["envs_per_task"] == E), key=lambda r: r["tasks"])
        if ms:
            ax1.plot([r["tasks"] for r in ms], [r["env_steps_per_s"] for r in ms], ls, marker="s", color="C4",
                     label=f"JAX meta-step, task_micro_batch {ms[0]['task_micro_batch']}, {E} env/task")
            ax2.plot([r["tasks"] for r in ms],
                     [1e3 * r["env_steps_per_meta_step"] / r["env_steps_per_s"] / r["tasks"] for r in ms], ls,
                     marker="s", color="C4", label=f"JAX meta-step, task_micro_batch {ms[0]['task_micro_batch']}, "
                                                   f"{E} env/task")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tasks per meta-step")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_ylabel("environment steps / s")
    ax1.set_title("Throughput (MAML, cartpole-physics, 32 steps, 1 inner step)\n"
                  "solid: 1 env per task, dashed: 8 envs per task", fontsize=10)
    ax2.set_ylabel("ms per task per meta-step")
    ax2.set_title("Cost per task")
    ax2.legend(fontsize=7, loc="best")
    m = result.get("machine", {})
    on = (f"{m['device']} (jax backend {m.get('jax_backend')}), host " if m.get("jax_backend") == "gpu" else "")
    fig.suptitle(f"{on}{m.get('cpu_model', 'CPU')} ({m.get('cpu_count', '?')} cores), jax {m.get('jax', '?')}, "
                 f"torch {m.get('torch') or 'n/a'}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        plot(json.load(f), sys.argv[2])
