"""The few-shot program's size does not grow with the number of budgets (issue 15, "a first
result fast").

:func:`metadqn_jax.fewshot.make_few_shot` once unrolled a Python loop over the budget points:
one scan body per segment and one greedy evaluation per budget, so its program (and its
compile time) grew with every budget. It now runs each phase (support collection,
fine-tuning) as one scan with the evaluations inside it. These tests lower (no XLA compile)
the program for 3 and for 7 budgets and compare sizes (the unrolled loop fails them), and run
the evaluations of both phases. That the returns are bit-identical to the unrolled loop's was
checked with ``scripts/behaviour_check.py`` (see the commit message).
"""

from __future__ import annotations

import jax
import numpy as np

from metadqn_jax.fewshot import FewShotConfig, few_shot_tasks, make_few_shot
from metadqn_jax.meta import MetaConfig

from _compile import fast_jit

CFG = MetaConfig(family="cartpole-physics", algorithm="maml", hidden=(8, 8), support_size=20, buffer_size=20,
                 num_tasks=2, envs_per_task=1, rollout_steps=5, query_batch=8)
FEW = (0, 25, 30)  # a budget in each phase (collection, fine-tuning) and the last one
MANY = (0, 5, 10, 25, 30, 35, 40)


def _setup(budgets, algorithm="maml", **kw):
    cfg = MetaConfig(**{**CFG.__dict__, "algorithm": algorithm}) if algorithm != CFG.algorithm else CFG
    fs = FewShotConfig(budgets=budgets, num_tasks=2, seeds=1, support_size=CFG.support_size, finetune_batch=8,
                       eval_episodes=2, **kw)
    run, learner = make_few_shot(cfg, fs)
    params = learner.init(jax.random.key(0))
    tasks, keys = few_shot_tasks(cfg.task_family, fs, jax.random.key(1))
    return run, (params, params, tasks, keys, cfg.hparams())


def _size(budgets, **kw) -> tuple[int, int]:
    """(StableHLO text length, number of while loops) of the lowered few-shot program."""
    run, args = _setup(budgets, **kw)
    text = jax.jit(run).lower(*args).as_text()
    return len(text), text.count("stablehlo.while")


def test_program_size_does_not_grow_with_budgets():
    few, many = _size(FEW), _size(MANY)
    # the unrolled loop: one scan per segment and one evaluation per budget (measured on the old
    # code with budgets (0, 30) vs these 7: 17 vs 29 while loops, 333k vs 467k characters)
    assert many[1] == few[1], (few, many)
    assert many[0] < 1.1 * few[0], (few, many)


def test_evaluations_run_in_both_phases_and_below_the_support():
    """Budgets before the support is full (evaluated inside the collection scan), after it
    (inside the fine-tuning scan) and a largest budget below ``support_size`` (no adaptation
    point at all) all give finite returns; budget 0 (the first point, so the same evaluation
    key whatever the other budgets) gives the same return in every program."""
    outs = []
    for budgets in (FEW, MANY, (0, 5, 12)):
        run, args = _setup(budgets)
        outs.append(np.asarray(fast_jit(run)(*args)))
    assert [o.shape for o in outs] == [(2, 3), (2, 7), (2, 3)]
    assert all(np.isfinite(o).all() for o in outs)
    np.testing.assert_array_equal(outs[0][:, 0], outs[1][:, 0])
    np.testing.assert_array_equal(outs[0][:, 0], outs[2][:, 0])
