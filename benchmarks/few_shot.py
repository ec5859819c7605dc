"""Few-shot benchmark: meta-learned inits vs. pretrained, scratch and oracle on held-out tasks.

    python benchmarks/few_shot.py --family pointnav-goal --out few_shot_goal.json
    python benchmarks/few_shot.py --family-file acrobot.yaml --out few_shot_acrobot.json   # a user's family

A user's family comes from a YAML file's ``family:`` block (``--family-file``) or from a module
that registers it (``--family-module``; metadqn_jax.runs.families). The budgets default to the
family's (``TaskFamily.budgets``: by default 0, 1/20, 1/5, 1/2, 1, 2 and 4 episodes); the JSON
records the family's full definition (``family_spec``).

Meta-trains every algorithm with the same environment-step budget, adapts each init on the
same held-out test tasks × seeds with the same protocol (metadqn_jax.fewshot), and writes
JSON (``budgets``, ``axes``, ``ci_method``, ``meta_seeds``; per init ``mean`` / ``ci95`` /
``ci_low`` / ``ci_high`` / ``iqm`` (with its interval) per budget and every run's ``returns``
``[meta_seed][task][adapt_seed][budget]``; ``oracle``, wall times, ``paired_vs_pretrained``:
each init minus pretrained and P(init > pretrained), paired by task, with intervals that
resample whole tasks), markdown tables (the returns; the paired differences), a PNG of return
vs. environment steps with 95 % bands and a PNG of performance profiles (``*_profile.png``).
``--quick`` runs a small version (used by the test suite).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
import time
import typing
from pathlib import Path

import jax
import numpy as np

from metadqn_jax import report, tasks
from metadqn_jax.core import stats
from metadqn_jax.core.validate import ConfigError
from metadqn_jax.app.common import apply_family_options
from metadqn_jax.app.options import add_family_arguments
from metadqn_jax.runs.yamlio import coerce, plain
from metadqn_jax.core.compile import compile_options, fast_options
from metadqn_jax.compare import compare
from metadqn_jax.fewshot import (
    FewShotConfig,
    FewShotResult,
    default_oracle_cache,
    first_episode_curve,
    first_episode_explore,
)
from metadqn_jax.meta import ALGORITHMS, MetaConfig
from metadqn_jax.driver import ValidationConfig

DEFAULT_FAMILY = "pointnav-goal"


def steps_to_fraction(result, oracle_mean: float, budgets, fraction: float = 0.9):
    """Smallest budget whose mean return reaches ``fraction`` of the oracle's (returns are
    negative for PointNav, so "reach" is measured on the regret scale: the gap to the oracle
    must be at most ``(1 - fraction) × |oracle|``). None if never reached."""
    for b, m in zip(budgets, result.mean):
        if m >= oracle_mean - (1.0 - fraction) * abs(oracle_mean):
            return int(b)
    return None


def quick_settings(base: MetaConfig, inner_steps: int | None = 1):
    """The tiny ``--quick`` (smoke-test) versions of ``base``, the few-shot and validation configs."""
    base = base.rebuilt(num_tasks=4, envs_per_task=2, rollout_steps=10, support_size=20, buffer_size=20, task_lifetime=1,
                        query_batch=16, hidden=(16, 16), encoder_hidden=(16,), encoder_post=(), num_meta_steps=20,
                        chunk_size=10, **({} if inner_steps is None else {"inner_steps": inner_steps}))
    fs = FewShotConfig(budgets=(0, 10, 30), num_tasks=2, seeds=2, support_size=20, eval_episodes=1)
    return base, fs, ValidationConfig(every=10, num_tasks=2)


def validation_config(val_budgets: str) -> ValidationConfig:
    """The benchmarks' validation (32 tasks, every tenth of the run), selecting the checkpoint at
    the comma-separated ``--val-budgets`` (empty: the support size)."""
    return ValidationConfig(num_tasks=32, budgets=tuple(int(b) for b in val_budgets.split(",") if b.strip()))


def parse_sets(parser: argparse.ArgumentParser, items) -> dict:
    """``["FIELD=VALUE", ...]`` -> ``{field: value}`` for :class:`MetaConfig` fields (Python
    literals; a bare word is converted to the field's type as ``metadqn --set`` does,
    :func:`metadqn_jax.runs.yamlio.coerce`: ``adapt=head`` a string, ``double=false`` a bool); a
    bad item is a ``parser.error`` naming it."""
    fields = MetaConfig.__dataclass_fields__
    hints = typing.get_type_hints(MetaConfig)
    sets = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in fields or not value:
            parser.error(f"--set expects a MetaConfig field=value, got {item!r}")
        try:
            sets[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            if not value.isidentifier():
                parser.error(f"--set {name}: {value!r} is neither a Python literal nor a bare word")
            try:
                sets[name] = coerce(value, hints[name], f"--set {name}")
            except ConfigError as e:
                parser.error(str(e))
    return sets


def write_plots(out: dict, path: Path) -> None:
    """The two figures, from the JSON dict: return vs. budget (``path.png``) and the first-episode
    curves (``path_first_episode.png``, with the oracle's episode return as a reference point)."""
    def result(budgets, d):
        return FewShotResult(tuple(budgets), None, np.asarray(d["mean"]), np.asarray(d["ci95"]))

    names = [k for k in out if isinstance(out[k], dict) and "mean" in out[k]]
    results = {k: result(out["budgets"], out[k]) for k in names}
    report.plot(results, path.with_suffix(".png"), title=f"few-shot adaptation: {out['family']}")
    first = out.get("first_episode") or {}
    curves = {k: result(first["steps"], v) for k, v in first.items() if k != "steps"}
    if curves:
        points = {}
        if "oracle" in results:
            points["oracle DQN: episode return"] = (first["steps"][-1], float(results["oracle"].mean[0]))
        report.plot(curves, path.with_name(path.stem + "_first_episode.png"), log_x=False, points=points,
                    title=f"first episode on a new task: {out['family']} (context: inference while acting)",
                    xlabel="step of the first episode on the new task",
                    ylabel="cumulative return (mean, 95% CI)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default=None, metavar="NAME",
                   help=f"task family: a registered one ({', '.join(tasks.list_families())}) or one of "
                        f"--family-file / --family-module (default: theirs, else {DEFAULT_FAMILY})")
    add_family_arguments(p)
    p.add_argument("--out", type=Path, default=Path("few_shot.json"), help="JSON output file (default: %(default)s)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS),
                   help=f"comma list from {ALGORITHMS} (default: %(default)s)")
    p.add_argument("--meta-steps", type=int, default=None,
                   help="meta-steps per algorithm (default: the family's meta_defaults, else 2000)")
    p.add_argument("--budgets", default=None,
                   help="comma list of adaptation budgets in env steps (default: the family's, TaskFamily.budgets)")
    p.add_argument("--test-tasks", type=int, default=20, help="held-out test tasks (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="adaptation runs per test task (default: %(default)s)")
    p.add_argument("--select-episodes", type=int, default=FewShotConfig.select_episodes, metavar="N",
                   help="episodes of each of the deployed and the fine-tuned parameters before the fine-tuned "
                        "ones may replace them (FewShotConfig.select_episodes; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default: %(default)s)")
    p.add_argument("--meta-seeds", type=int, default=3,
                   help="meta-training seeds per algorithm (seed, seed+1, ...), vmapped into one program; every "
                        "interval resamples them and the tasks (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a MetaConfig field for every algorithm (a Python literal or a bare word), e.g. task_lifetime=20, adapt=head; "
                        "applied after --quick")
    p.add_argument("--no-oracle", action="store_true", help="skip the per-task DQN oracle")
    p.add_argument("--no-oracle-cache", action="store_true",
                   help="train the oracle even when its returns for this family, protocol and seed are in the "
                        "cache (metadqn_jax.fewshot.default_oracle_cache())")
    p.add_argument("--workers", type=int, default=None,
                   help="parts of the comparison run at once (default: compare.default_workers)")
    p.add_argument("--val-budgets", default="", metavar="B1,B2",
                   help="env-step budgets whose returns on the validation tasks select the checkpoint "
                        "(default: the support size)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    p.add_argument("--plot-only", action="store_true", help="only redraw the figures from an existing --out JSON")
    args = p.parse_args(argv)
    if args.plot_only:
        write_plots(json.loads(args.out.read_text()), args.out)
        return 0

    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        p.error(f"unknown algorithm(s) {unknown}; choose from {ALGORITHMS}")
    try:
        chosen = apply_family_options(args, {"meta": {"family": args.family}})
        family = tasks.get_family(chosen or DEFAULT_FAMILY)
    except ValueError as e:  # ConfigError included: a bad family file / module, an unknown name
        p.error(" ".join(str(e).split()))
    args.family = family.name
    try:
        budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else family.few_shot_budgets
    except ValueError:
        p.error(f"--budgets expects comma-separated integers, got {args.budgets!r}")
    base = MetaConfig(family=args.family, num_meta_steps=args.meta_steps)
    try:
        fs = FewShotConfig(budgets=budgets, num_tasks=args.test_tasks, seeds=args.seeds,
                           support_size=base.support_size, select_episodes=args.select_episodes)
    except ValueError as e:
        p.error(str(e))
    validation = validation_config(args.val_budgets)
    sets = parse_sets(p, args.set)
    if args.quick:
        base, fs, validation = quick_settings(base)
    base = base.rebuilt(**sets)  # given, like the constructor's arguments: each algorithm's defaults stay its own
    fs = dataclasses.replace(fs, support_size=base.support_size, support_epsilon=base.epsilon)  # as meta-training
    t0 = time.perf_counter()
    if args.meta_seeds < 1:
        p.error(f"--meta-seeds must be >= 1, got {args.meta_seeds}")
    with compile_options(fast_options() if args.quick else None):  # --quick: tiny programs, compile-bound
        cmp = compare(base, algorithms, fs, seed=args.seed, validation=validation, oracle=not args.no_oracle,
                      progress=not args.quick, log=lambda s: print(s, file=sys.stderr, flush=True),
                      meta_seeds=args.meta_seeds, workers=args.workers,
                      oracle_cache=None if args.no_oracle_cache else default_oracle_cache())
    wall = time.perf_counter() - t0
    results = cmp.results
    out = report.to_dict(results, meta_seeds=list(range(args.seed, args.seed + args.meta_seeds)))
    out.update(
        family=args.family,
        family_spec=tasks.family_spec(args.family),
        meta_steps=base.num_meta_steps,
        meta_config_set=sets,
        # per algorithm, the settings the family's recommendations filled (TaskFamily.meta_defaults_for)
        family_defaults_used={a: {k: plain(v) for k, v in c.family_defaults_used.items()}
                              for a, c in cmp.configs.items()},
        validation_budgets=list(validation.budgets),
        env_steps_per_init=base.num_meta_steps * base.env_steps_per_meta_step,
        gradient_updates_per_init=base.gradient_updates,
        test_tasks=fs.num_tasks,
        seeds=fs.seeds,
        select_episodes=fs.select_episodes,
        guard_adaptation={k: g.to_dict() for k, g in cmp.guards.items()},
        train_wall_s={k: round(v, 1) for k, v in cmp.train_wall_s.items()},
        wall_s=round(wall, 1),
        command=" ".join(["python", "benchmarks/few_shot.py"] + (argv if argv is not None else sys.argv[1:])),
    )
    extra = {"train s": {k: f"{v:.0f}" for k, v in cmp.train_wall_s.items()}}
    extra["env steps / updates"] = {a: f"{c.env_steps:,} / {c.gradient_updates:,}" for a, c in cmp.configs.items()}
    if "oracle" in results:
        oracle_mean = float(results["oracle"].mean[0])
        to90 = {k: steps_to_fraction(r, oracle_mean, budgets) for k, r in results.items() if k != "oracle"}
        out["steps_to_90pct_oracle"] = to90
        extra["steps to 90% oracle"] = {k: ("-" if v is None else str(v)) for k, v in to90.items()}
    # the zero-shot setting: return during the very first episode on each test task (greedy;
    # the context learner infers the task while acting (online or refined context), the others
    # act with their unadapted params)
    first, modes = {}, {}
    for algo in algorithms:
        res = cmp.trained[algo]
        modes[algo] = first_episode_explore(cmp.configs[algo])
        first[algo] = first_episode_curve(cmp.configs[algo], res.early_stop.best_params, fs,
                                          jax.random.fold_in(jax.random.key(args.seed), 7),
                                          meta_target=res.early_stop.best_target,
                                          meta_seeds=None if args.meta_seeds == 1 else args.meta_seeds)
    out["first_episode"] = {
        "steps": list(first[algorithms[0]].budgets) if first else [],
        **{k: {"online": modes[k] != "unadapted", "explore": modes[k], "mean": [float(x) for x in r.mean],
               "ci95": [float(x) for x in r.ci95]} for k, r in first.items()},
    }
    extra["first episode"] = {k: f"{r.mean[-1]:.2f} ± {r.ci95[-1]:.2f}" for k, r in first.items()}
    table = report.markdown_table(results, title=f"{args.family}: greedy return after N env steps on held-out tasks "
                                  f"({args.meta_seeds} meta-training seeds x {fs.num_tasks} tasks x {fs.seeds} adaptation seeds; "
                                  "mean ± half-width of the 95% CI over meta-seeds and tasks)", extra=extra)
    if "pretrained" in results and len(results) > 1:  # same tasks and keys for every init: paired
        paired = report.paired_table(results, "pretrained", title=f"{args.family}: difference to pretrained, "
                                     "paired by task, 95% CI and P(improvement) (bold: the CI excludes 0)")
        table += "\n\n" + paired
        out["paired_vs_pretrained"] = {
            k: {f: getattr(pr, f).tolist() for f in ("diff", "diff_low", "diff_high", "p_improve", "p_low", "p_high")}
            for k, r in results.items() if k not in ("pretrained", "oracle")
            for pr in [report.paired(r, results["pretrained"])]}
    # no init should fall below an earlier budget by more than the intervals (paired by task)
    drops = {k: stats.largest_drop(r.returns) for k, r in results.items() if k != "oracle" and r.returns is not None}
    bs = fs.budgets
    out["largest_drop"] = {k: None if d is None else {"from": bs[d.earlier], "to": bs[d.later], **{
        f: getattr(d, f) for f in ("diff", "diff_low", "diff_high", "beyond_intervals")}, "significant": d.significant}
        for k, d in drops.items()}
    table += ("\n\nLargest drop from an earlier budget (paired by task; 95% interval simultaneous over the budget "
              "pairs; SIGNIFICANT: the interval is below 0; BEYOND THE INTERVALS: the two means' 95% intervals do not "
              "overlap): ") + "; ".join(
        f"{k} {bs[d.earlier]}->{bs[d.later]} {d.diff:+.2f} [{d.diff_low:+.2f}, {d.diff_high:+.2f}]"
        f"{' SIGNIFICANT' if d.significant else ''}{' BEYOND THE INTERVALS' if d.beyond_intervals else ''}"
        for k, d in drops.items() if d is not None)
    if cmp.guards:
        table += "\n\n" + report.guard_line(cmp.guards)
    out["untrained_baselines"] = report.untrained_baselines(results, algorithms)
    if out["untrained_baselines"]:
        table = report.void_line(out["untrained_baselines"]) + "\n\n" + table
    print(table)
    print(f"\nwall time {wall:.0f}s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    write_plots(out, args.out)
    report.plot_profile(results, args.out.with_name(args.out.stem + "_profile.png"),
                        title=f"{args.family}: performance profiles on held-out tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
