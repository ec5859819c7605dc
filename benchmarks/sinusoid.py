"""Few-shot sinusoid regression benchmark (Finn et al. 2017, section 5.1 / Table 2).

Meta-trains MAML, first-order MAML, Reptile and the "pretrained on all tasks" baseline with
:mod:`metadqn_jax.regression` (which runs on the generic core :mod:`metadqn_jax.meta.gradient`), then
evaluates every method on the same held-out tasks and support sets: MSE on a 100-point grid
over [-5, 5] after 1, 5 and 10 inner SGD steps (α = 0.01) for K = 5 and K = 10 shots,
mean ± 95% CI over the tasks.

Usage::

    python benchmarks/sinusoid.py --out sinusoid.json --png sinusoid.png
    python benchmarks/sinusoid.py --out /tmp/s.json --quick          # smoke run (seconds)

The reported wall time is ``time.perf_counter`` around the whole script (imports, every
compilation, training, evaluation and the plot).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from metadqn_jax.regression import (  # noqa: E402
    DIVERGED_MSE,
    RegressionConfig,
    SinusoidTasks,
    adapt_and_predict,
    evaluate,
    make_meta_train,
)

# Finn et al. 2017, Table 2 (5-shot sinusoid MSE after 1 / 5 / 10 gradient steps).
PAPER_5SHOT = {
    "maml": {"1": 0.67, "5": 0.38, "10": 0.35},
    "pretrained": {"1": 2.41, "5": 2.23, "10": 2.19},
}

METHODS = ("maml", "fomaml", "reptile", "pretrained")
SHOTS = (5, 10)
STEPS = (1, 5, 10)
EVAL_INNER_LR = 0.01


def method_configs(
    iterations: int, chunk: int, seed: int, extra_maml_seeds: tuple[int, ...] = ()
) -> dict[str, RegressionConfig]:
    """The per-method training settings.

    MAML / FOMAML / pretrained: the paper's (K = 10 support + 10 query points, 1 inner SGD step
    α = 0.01, Adam 1e-3, 25 tasks per meta-batch). The pretrained baseline fits the pooled
    20 points of each task with plain MSE. Reptile (not in the MAML paper): 5 inner SGD
    steps at 0.01 on the pooled 20 points of each task, Adam 1e-3 on the averaged θ − θ'
    (chosen from a 70k-iteration sweep: 5 steps at 0.01 beat 3, 5 or 10 steps at 0.02,
    Adam as the inner optimiser, and plain SGD with ε = 1 as the outer rule).
    ``extra_maml_seeds`` adds rows ``maml_seed{s}``: MAML again with other training seeds.
    """
    common = dict(num_iterations=iterations, chunk_size=chunk)
    configs = {
        "maml": RegressionConfig(algorithm="maml", seed=seed, **common),
        "fomaml": RegressionConfig(algorithm="fomaml", seed=seed, **common),
        "reptile": RegressionConfig(
            algorithm="reptile", inner_steps=5, inner_lr=0.01, seed=seed, **common
        ),
        "pretrained": RegressionConfig(algorithm="pretrained", seed=seed, **common),
    }
    for s in extra_maml_seeds:
        configs[f"maml_seed{s}"] = RegressionConfig(algorithm="maml", seed=s, **common)
    return configs


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a (non-finite)" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def markdown_table(mse: dict) -> str:
    """Rows: method × K; columns: MSE after 1 / 5 / 10 steps (mean ± 95% CI over tasks).

    A cell with tasks whose fine-tuning diverged also shows ``[d diverged, median m]``.
    """
    lines = [
        "| method | K | 1 step | 5 steps | 10 steps |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, by_k in mse.items():
        for k, by_s in by_k.items():
            cells = []
            for s in STEPS:
                c = by_s[str(s)]
                if c["mean"] is None or c["ci95"] is None:
                    cell = _fmt(c["mean"])
                else:
                    cell = f"{_fmt(c['mean'])} ± {_fmt(c['ci95'])}"
                if c["n_diverged"]:
                    cell += f" [{c['n_diverged']} diverged, median {_fmt(c['median'])}]"
                cells.append(cell)
            lines.append(f"| {method} | {k} | " + " | ".join(cells) + " |")
    for method, by_s in PAPER_5SHOT.items():
        cells = [f"{by_s[str(s)]:.2f}" for s in STEPS]
        lines.append(f"| paper: {method} (Finn et al. 2017) | 5 | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_safe(x):
    """Non-finite floats -> None (strict JSON); recurses through dicts and lists."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def plot(path: str, params_by_method: dict, family: SinusoidTasks, tasks, key, shots: int) -> None:
    """Held-out tasks: truth, support points, prediction before / after 1 and 10 SGD steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_tasks = int(tasks[0].shape[0])
    methods = list(params_by_method)
    fig, axes = plt.subplots(
        len(methods), n_tasks, figsize=(4 * n_tasks, 3 * len(methods)), squeeze=False
    )
    for row, method in enumerate(methods):
        support, grid, preds = adapt_and_predict(
            params_by_method[method], tasks, key, shots, steps=(0, 1, 10), inner_lr=EVAL_INNER_LR
        )
        truth = family.function(tasks, grid[None])[..., 0]
        g = np.asarray(grid[:, 0])
        for col in range(n_tasks):
            ax = axes[row, col]
            ax.plot(g, np.asarray(truth[col]), "k-", lw=2, label="ground truth")
            ax.plot(g, np.asarray(preds[0, col]), ":", color="tab:gray", label="pre-update")
            ax.plot(g, np.asarray(preds[1, col]), "--", color="tab:blue", label="1 grad step")
            ax.plot(g, np.asarray(preds[2, col]), "-", color="tab:red", label="10 grad steps")
            ax.plot(
                np.asarray(support.x[col, :, 0]), np.asarray(support.y[col, :, 0]),
                "o", color="tab:purple", label=f"{shots} support points",
            )
            ax.set_ylim(-6, 6)
            ax.set_title(
                f"{method}: A={float(tasks[0][col]):.2f}, φ={float(tasks[1][col]):.2f}",
                fontsize=9,
            )
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--iterations", type=int, default=70_000, help="meta-iterations per method")
    ap.add_argument("--png", default=None, help="optional plot of a few held-out tasks")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (200 its, 100 tasks)")
    ap.add_argument("--eval-tasks", type=int, default=1000, help="held-out tasks")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--eval-seed", type=int, default=1234, help="held-out task seed")
    ap.add_argument("--chunk", type=int, default=10_000, help="iterations per jitted scan call")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument(
        "--extra-maml-seeds", default="",
        help="comma-separated training seeds for additional MAML runs (rows maml_seed{s})",
    )
    args = ap.parse_args(argv)

    iterations, eval_tasks, chunk = args.iterations, args.eval_tasks, args.chunk
    if args.quick:
        iterations, eval_tasks, chunk = 200, 100, 100
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: unknown method {m!r}; choose from {METHODS}")
    if eval_tasks < 2:
        raise ValueError(f"eval_tasks must be >= 2, got {eval_tasks}")
    chunk = min(chunk, iterations)
    try:
        extra = tuple(int(v) for v in args.extra_maml_seeds.split(",") if v.strip())
    except ValueError as e:
        raise ValueError(f"extra_maml_seeds: expected comma-separated ints ({e})") from None
    configs = method_configs(iterations, chunk, args.seed, extra)  # validates before compute
    methods += [f"maml_seed{s}" for s in extra]

    family = SinusoidTasks()
    tasks = family.eval_tasks(seed=args.eval_seed, n=eval_tasks)
    eval_key = jax.random.fold_in(jax.random.key(args.eval_seed), 7)

    mse: dict = {}
    mse_prior: dict = {}
    per_method: dict = {}
    params_by_method: dict = {}
    for method in methods:
        cfg = configs[method]
        t0 = time.perf_counter()

        def progress(step: int, m, method=method, t0=t0) -> None:
            q = float(np.mean(np.asarray(m.query_loss)))
            print(
                f"[{method}] {step:>6}/{cfg.num_iterations}  query MSE (last chunk) {q:.3f}"
                f"  {time.perf_counter() - t0:6.1f}s",
                flush=True,
            )

        state, metrics = make_meta_train(cfg).run(callback=progress)
        jax.block_until_ready(state.params)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = evaluate(
            state.params, tasks, eval_key, shots=SHOTS, steps=(0,) + STEPS, inner_lr=EVAL_INNER_LR
        )
        eval_s = time.perf_counter() - t1
        keep = ("mean", "ci95", "median", "n_diverged")
        mse[method] = _json_safe(
            {str(k): {str(s): {f: res[k][s][f] for f in keep} for s in STEPS} for k in SHOTS}
        )
        mse_prior[method] = _json_safe(
            {str(k): {f: res[k][0][f] for f in keep} for k in SHOTS}
        )
        tail = max(1, min(1000, iterations // 10))
        per_method[method] = {
            "config": {
                f: (list(v) if isinstance(v, tuple) else v)
                for f, v in vars(cfg).items()
            },
            "train_s": train_s,
            "eval_s": eval_s,
            # query MSE after adaptation over the last iterations (Reptile adapts on the
            # query points too, so its value is a training fit, not a generalisation number)
            "final_train_query_mse": float(np.mean(np.asarray(metrics.query_loss)[-tail:])),
        }
        params_by_method[method] = state.params
        print(
            f"[{method}] trained in {train_s:.1f}s, evaluated in {eval_s:.1f}s: 5-shot "
            + " / ".join(_fmt(mse[method]["5"][str(s)]["mean"]) for s in STEPS),
            flush=True,
        )

    if args.png:
        shown = [m for m in ("maml", "pretrained") if m in params_by_method] or methods[:1]
        plot_tasks = jax.tree.map(lambda a: a[:3], tasks)
        plot(
            args.png, {m: params_by_method[m] for m in shown}, family, plot_tasks,
            jax.random.fold_in(eval_key, 5), shots=5,
        )

    wall_s = time.perf_counter() - _T0
    table = markdown_table(mse)
    print()
    print(table)
    print(f"\nmeta-iterations per method: {iterations}; wall time {wall_s:.1f}s")
    result = {
        "mse": mse,
        "mse_before_adaptation": mse_prior,
        "paper_5shot": PAPER_5SHOT,
        "meta_iterations": iterations,
        "eval_tasks": eval_tasks,
        "eval_inner_lr": EVAL_INNER_LR,
        "eval_grid_points": 100,
        "diverged_definition": f"grid MSE non-finite or > {DIVERGED_MSE}",
        "seed": args.seed,
        "eval_seed": args.eval_seed,
        "quick": bool(args.quick),
        "methods": per_method,
        "wall_s": wall_s,
        "command": "python benchmarks/sinusoid.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        },
        "table_markdown": table,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(_json_safe(result), f, indent=2, allow_nan=False)
    return result


if __name__ == "__main__":
    main()
