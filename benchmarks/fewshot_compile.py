"""Lower + compile seconds of the few-shot evaluation program (BENCHMARKS.md §4, "Compile time").

For the default ``metadqn train`` family (pointnav-rotated) and one algorithm, builds
``fewshot.make_few_shot`` for the family's budgets and for only the smallest and largest
budget (10 tasks × 2 seeds) and prints the seconds ``jax.jit(run).lower(...)`` and
``.compile()`` take in this process (cold unless the persistent cache is on). To compare two
versions of the code back to back, run it from each checkout (``PYTHONPATH=OLD_TREE``)::

    python benchmarks/fewshot_compile.py [ALGORITHM] [--family F]
"""

from __future__ import annotations

import argparse
import time

import jax

from metadqn_jax import fewshot
from metadqn_jax.meta import MetaConfig


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("algorithm", nargs="?", default="context")
    p.add_argument("--family", default="pointnav-rotated")
    args = p.parse_args(argv)
    cfg = MetaConfig(family=args.family, algorithm=args.algorithm)
    budgets = cfg.task_family.few_shot_budgets
    print("| budgets | lower s | compile s |\n|---|---|---|")
    for bud in (budgets, (budgets[0], budgets[-1])):
        fs = fewshot.FewShotConfig(budgets=bud, num_tasks=10, seeds=2, support_size=cfg.support_size)
        run, learner = fewshot.make_few_shot(cfg, fs)
        params = learner.init(jax.random.key(0))
        tasks, keys = fewshot.few_shot_tasks(cfg.task_family, fs, jax.random.key(1))
        t0 = time.perf_counter()
        lowered = jax.jit(run).lower(params, params, tasks, keys, cfg.hparams())
        t1 = time.perf_counter()
        lowered.compile()
        t2 = time.perf_counter()
        print(f"| {list(bud)} | {t1 - t0:.1f} | {t2 - t1:.1f} |", flush=True)


if __name__ == "__main__":
    main()
