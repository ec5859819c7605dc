"""One context-learner variant on one family: few-shot returns and the first-episode return.

    python benchmarks/context_variants.py --family pointnav-goal --meta-steps 5000 \
        --set online_context=False --set envs_per_task=1 --set rollout_steps=100

Meta-trains ``context`` (the ``--set`` fields of :class:`~metadqn_jax.meta.config.MetaConfig`,
values as Python literals, over its algorithm defaults ``metadqn_jax.meta.defaults.ALGORITHM_DEFAULTS``),
evaluates it on 20 held-out tasks × 5 seeds at budgets 0, 25, 100, 250 (support ε = the
meta-training ε) and prints one line: train seconds, mean ± 95 % CI per budget and the greedy
first-episode return while inferring the task (the online context, or with ``context_refine``
the refined one; ``--out FILE.json``: the same figures, and the returns of every run, as JSON). BENCHMARKS.md §1 lists the variants it ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from metadqn_jax.compare import compare
from metadqn_jax.fewshot import FewShotConfig, first_episode_curve, first_episode_explore
from metadqn_jax.meta import MetaConfig
from metadqn_jax.tasks import list_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from few_shot import parse_sets, quick_settings, validation_config  # noqa: E402  (the sibling benchmark)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=list_families(), default="pointnav-goal")
    p.add_argument("--meta-steps", type=int, default=2000)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a MetaConfig field (a Python literal or a bare word), e.g. encoder_post=(64,)")
    p.add_argument("--seed", type=int, default=0, help="master seed of training and evaluation (default: %(default)s)")
    p.add_argument("--val-budgets", default="", metavar="B1,B2",
                   help="env-step budgets whose returns on the validation tasks select the checkpoint "
                        "(default: the support size)")
    p.add_argument("--out", metavar="FILE.json", help="also write the line's figures (and per-run returns) as JSON")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    sets = parse_sets(p, args.set)
    base = MetaConfig(family=args.family, algorithm="context", num_meta_steps=args.meta_steps, chunk_size=250)
    fs = FewShotConfig(budgets=(0, 25, 100, 250), num_tasks=20, seeds=5, support_size=base.support_size)
    validation = validation_config(args.val_budgets)
    if args.quick:
        base, fs, validation = quick_settings(base, inner_steps=None)
    base = base.rebuilt(**sets)
    fs = dataclasses.replace(fs, support_epsilon=base.epsilon, support_size=base.support_size)
    t0 = time.perf_counter()
    cmp = compare(base, ["context"], fs, seed=args.seed, validation=validation, scratch=False, oracle=False,
                  progress=False, log=lambda s: None)
    r = cmp.results["context"]
    best = cmp.trained["context"].early_stop
    first = first_episode_curve(cmp.configs["context"], best.best_params, fs, jax.random.key(1),
                                meta_target=best.best_target)
    explore = first_episode_explore(cmp.configs["context"])
    cells = "  ".join(f"{b}: {m:.2f} ± {c:.2f}" for b, m, c in zip(r.budgets, r.mean, r.ci95))
    chosen = f" (checkpoint chosen at {list(validation.budgets)} steps)" if validation.budgets else ""
    print(f"{args.family} context {sets or '(defaults)'}{chosen}: train {cmp.train_wall_s['context']:.0f}s | {cells} | "
          f"first episode ({explore}) {first.mean[-1]:.2f} ± {first.ci95[-1]:.2f} | total {time.perf_counter() - t0:.0f}s")
    if args.out:
        row = {"command": " ".join(["python", *sys.argv]), "family": args.family, "meta_steps": args.meta_steps,
               "seed": args.seed, "sets": {k: repr(v) for k, v in sets.items()},
               "validation_budgets": list(validation.budgets) or [fs.support_size],
               "train_s": cmp.train_wall_s["context"], "budgets": list(r.budgets), "mean": r.mean.tolist(),
               "ci95": r.ci95.tolist(), "returns": r.returns.tolist(),
               "first_episode": {"explore": explore, "mean": float(first.mean[-1]), "ci95": float(first.ci95[-1])}}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(row, indent=1))
    assert np.all(np.isfinite(r.mean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
