"""One adaptation run of the few-shot protocol (:mod:`metadqn_jax.fewshot`, steps 1-5), compiled
once for any number of budgets, and vmapped over runs by :func:`make_few_shot`.

Read top to bottom, :func:`one_run` is the protocol: the keys of every step and evaluation
(:func:`run_keys`), the support collection (phase 1, :func:`collect_step`), the one-shot
adaptation, fine-tuning with the guard (phase 2, :func:`finetune_step`), and the deployed
parameters' greedy return at every budget (:func:`phase` evaluates the budgets inside each phase).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import dqn, envs
from metadqn_jax.core import policies, replay, rollout
from metadqn_jax.core.optim import clipped_adam, polyak_update
from metadqn_jax.core.tree import tree_where
from metadqn_jax.core.types import example_transition
from metadqn_jax.dqn import DQNHParams
from metadqn_jax.fewshot.config import FewShotConfig, explore_mode, guards_adaptation
from metadqn_jax.fewshot.selection import init_selection, selection_step
from metadqn_jax.meta import Learner, MetaConfig, MetaHParams, make_learner, online_no_data_stats, online_step

__all__ = ["FewShotRun", "make_few_shot", "one_run", "explore_step"]


class FewShotRun(Protocol):
    def __call__(self, meta_params, meta_target, task_params, keys: jax.Array, hp: MetaHParams):
        """``R`` runs (``task_params`` leaves ``[R, ...]``, ``keys [R]``) -> greedy returns ``[R, B]``
        (with ``return_params``: and the deployed task parameters, leaves ``[R, ...]``)."""


class Setup(NamedTuple):
    """The static side of a few-shot program (what :func:`make_few_shot` binds)."""

    fs: FewShotConfig
    env: Any
    learner: Learner
    obs_shape: tuple[int, ...]
    mode: str  # what the learner acts on while it collects the support (explore_mode)
    episode_length: int  # the greedy evaluation's horizon
    guard: bool  # the one-shot adaptation must earn its deployment (guards_adaptation)
    select: bool  # whole contest episodes decide what is deployed (the guard, or finetune_select)
    explore: bool  # an exploration episode of the candidate follows each pair of contest episodes
    points: tuple[int, ...]  # segment boundaries: every budget, and the adaptation point
    finetune_hp: DQNHParams  # fine-tuning's hyper-parameters (the discount: each init's, Init.hp_ft)


class Init(NamedTuple):
    """What one run adapts: the initialisation, its task and its hyper-parameters."""

    meta_params: Any
    meta_target: Any
    hp: MetaHParams
    env_params: Any  # the task, leaves [1] (one environment)
    eval_params: Any  # the task, leaves [eval_episodes]
    hp_ft: DQNHParams  # fine-tuning's (its discount: the init's)


def make_few_shot(
    meta_cfg: MetaConfig, fs: FewShotConfig, learner: Learner | None = None, *, return_params: bool = False,
    meta_learned: bool | None = None,
) -> tuple[FewShotRun, Learner]:
    """Builds ``run(meta_params, meta_target, task_params [R], keys [R], hp) -> returns [R, B]``.

    ``R`` independent adaptation runs (one task and one key each) are vmapped. ``learner``
    defaults to the one of ``meta_cfg.algorithm``. ``meta_learned``: whether the init's
    adaptation rule was meta-learned (default: unless ``meta_cfg.algorithm`` is
    ``"pretrained"``; pass ``False`` for a fresh init), which decides
    :func:`~metadqn_jax.fewshot.config.guards_adaptation`. With ``return_params=True`` ``run``
    returns ``(returns [R, B], task_params [R])``: each run's deployed parameters after the
    largest budget (what :func:`metadqn_jax.deploy.adapt_to_task` hands out).

    Returns:
      ``(run, learner)``.

    The program's size does not grow with the number of budgets: support collection and
    fine-tuning are each one scan whose body evaluates the budgets inside it (a ``lax.cond``),
    so one copy of the step, of the adaptation and of the greedy evaluation is compiled per phase
    (an unrolled loop over the budgets held one scan and one evaluation per budget and compiled
    several times longer). The keys are those of that loop (one ``split(key, 3)`` per point).
    """
    family = meta_cfg.task_family
    env, base_params = family.env()
    obs_shape = envs.obs_shape(env, base_params)
    learner = learner or make_learner(meta_cfg, envs.num_actions(env, base_params), obs_shape)
    guard = guards_adaptation(meta_cfg, fs, meta_learned)
    select = (fs.finetune and fs.finetune_select) or guard
    S = fs.support_size
    setup = Setup(fs, env, learner, obs_shape, explore_mode(meta_cfg, learner, fs.explore), family.episode_length,
                  guard, select, select and fs.finetune and fs.select_epsilon != fs.finetune_epsilon,
                  tuple(sorted(set(fs.budgets) | ({S} if S <= fs.max_budget else set()))),
                  DQNHParams(*[jnp.float32(x) for x in (fs.finetune_lr, 0.0, 0.0, 0.0, 1.0, fs.finetune_tau)]))
    runs = jax.vmap(functools.partial(one_run, setup, return_params), in_axes=(None, None, 0, 0, None))
    return runs, learner


def one_run(setup: Setup, return_params: bool, meta_params, meta_target, task, key: jax.Array, hp: MetaHParams):
    """One run of the protocol on one task: the greedy return ``[B]`` at every budget (and, with
    ``return_params``, the parameters deployed after the largest)."""
    fs, S = setup.fs, setup.fs.support_size
    init = Init(meta_params, meta_target, hp, rollout.broadcast_params(task, 1),
                rollout.broadcast_params(task, fs.eval_episodes), setup.finetune_hp._replace(gamma=hp.gamma))
    k_reset, key = jax.random.split(key)
    carry = rollout.init_carry(setup.env, k_reset, init.env_params)
    buffer = replay.init(example_transition(setup.obs_shape), max(fs.max_budget, S, 1))
    tp0 = setup.learner.unadapted(meta_params)
    stats = online_no_data_stats(setup.learner, meta_params, setup.obs_shape, (1,)) if setup.mode == "online" else None
    step_keys, eval_keys = run_keys(setup, key)
    slot = {b: i for i, b in enumerate(fs.budgets)}
    greedy = functools.partial(greedy_return, setup, init)
    results = jnp.zeros(len(fs.budgets), jax.eval_shape(greedy, tp0, eval_keys[0]).dtype)
    evaluate = (setup, greedy, step_keys, eval_keys)

    # 1. collect the support (steps 0 .. min(S, max_budget) - 1); a budget below S reports the
    #    adaptation rule on the transitions seen so far (the unadapted parameters when guarded)
    (carry, buffer, stats), results = phase(
        *evaluate, lambda c, x: collect_step(setup, init, c, x[0]), (carry, buffer, stats), results, 0,
        min(S, fs.max_budget), (lambda c: tp0) if setup.guard else (lambda c: adapt_on(setup, init, c[1])))
    if S > fs.max_budget:  # every budget was below the support size
        final = tp0 if setup.guard else adapt_on(setup, init, buffer)
    else:  # 2. adapt once, then fine-tune (steps S .. max_budget - 1) with the guard deciding what is deployed
        tp = adapt_on(setup, init, buffer)
        target = {"net": meta_target["net"], "ctx": tp["ctx"]}
        opt_state = clipped_adam(fs.finetune_lr, 10.0).init(tp)
        sel = init_selection(tp0 if setup.guard else tp) if setup.select else None
        (carry, buffer, tp, target, opt_state, sel), results = phase(
            *evaluate, functools.partial(finetune_step, setup, init), (carry, buffer, tp, target, opt_state, sel),
            results, S, fs.max_budget, lambda c: c[5].deployed if setup.select else c[2])
        final = sel.deployed if setup.select else tp
    returns = results.at[slot[fs.max_budget]].set(greedy(final, eval_keys[slot[fs.max_budget]]))
    return (returns, final) if return_params else returns


def run_keys(setup: Setup, key: jax.Array) -> tuple[jax.Array | None, jax.Array]:
    """``(step_keys [max_budget], eval_keys [B])``, derived exactly as a loop over the segments
    between consecutive points would: ``(key, k_seg, k_eval) = split(key, 3)`` per point, and the
    segment's steps take ``split(k_seg, n)``."""
    seg_keys, point_keys = [], {}
    done = 0
    for point in setup.points:
        key, k_seg, k_eval = jax.random.split(key, 3)
        if point > done:
            seg_keys.append(jax.random.split(k_seg, point - done))
        point_keys[point] = k_eval
        done = point
    step_keys = jnp.concatenate(seg_keys) if seg_keys else None
    return step_keys, jnp.stack([point_keys[b] for b in setup.fs.budgets])


def adapt_on(setup: Setup, init: Init, buf: replay.ReplayState):
    """The learner's adaptation on the ``support_size`` most recent transitions of ``buf``."""
    tr, mask = replay.recent(buf, setup.fs.support_size)
    return setup.learner.adapt(init.meta_params, init.meta_target, (tr, mask), init.hp)


def greedy_return(setup: Setup, init: Init, params, key: jax.Array) -> jax.Array:
    """The mean greedy return of ``params`` over ``eval_episodes`` fresh episodes of the task."""
    act = lambda obs: jnp.argmax(setup.learner.q_values(params, obs), axis=-1)
    return rollout.greedy_returns(setup.env, act, key, init.eval_params, setup.episode_length).mean()


def collect_step(setup: Setup, init: Init, c, k: jax.Array):
    """Phase 1: one ε-greedy step (``support_epsilon``) acting as :func:`explore_mode` says;
    ``c = (EnvCarry [1], buffer, online stats or None)``."""
    carry, buf, stats = c
    (carry, stats), tr = explore_step(setup.env, setup.learner, setup.mode, init.meta_params, init.meta_target,
                                      init.hp, (carry, stats), buf, setup.fs.support_size, k, init.env_params,
                                      setup.fs.support_epsilon)
    return (carry, replay.add(buf, tr), stats), None


def finetune_step(setup: Setup, init: Init, c, xs):
    """Phase 2: one step of this episode's actor (the deployed parameters, the challenger, or the
    live candidate), then a DQN update of the candidate every ``finetune_every`` steps and the
    guard's bookkeeping. ``c = (carry, buffer, candidate, target, opt_state, Selection or None)``;
    ``xs = (key, steps since adaptation)``."""
    fs, learner = setup.fs, setup.learner
    carry, buf, tp, target, opt_state, sel = c
    k, t = xs
    k_act, k_env, k_upd = jax.random.split(k, 3)
    q = learner.q_values(tp, carry.obs)
    eps = fs.finetune_epsilon
    if setup.select:  # this episode's actor: the deployed parameters (0), the challenger (1), the candidate (-1, 2)
        q = jnp.where(sel.turn == 0, learner.q_values(sel.deployed, carry.obs),
                      jnp.where(sel.turn == 1, learner.q_values(sel.challenger, carry.obs), q))
        if fs.select_epsilon != fs.finetune_epsilon:  # contest episodes (turns 0, 1) at select_epsilon
            contest = (sel.turn == 0) | (sel.turn == 1)
            eps = jnp.where(contest, jnp.float32(fs.select_epsilon), jnp.float32(fs.finetune_epsilon))
    a = policies.epsilon_greedy(k_act, q, eps)
    ep_return = carry.episode_return[0]
    carry, tr = rollout.env_step(setup.env, k_env, carry, a, init.env_params)
    buf = replay.add(buf, tr)
    if fs.finetune:
        batch = replay.sample(buf, k_upd, fs.finetune_batch)
        new_tp, new_opt, _ = dqn.dqn_update(tp, target, opt_state, batch, init.hp_ft, learner.q_values)
        do = (t % fs.finetune_every == 0) & (t >= fs.learning_starts)
        tp, opt_state = tree_where(do, new_tp, tp), tree_where(do, new_opt, opt_state)
        target = tree_where(do, polyak_update(target, tp, fs.finetune_tau), target)
    if setup.select:
        done = tr.terminated[0] | tr.truncated[0]
        sel = selection_step(sel, done, ep_return + tr.reward[0], tp, fs.select_episodes, setup.explore)
    return (carry, buf, tp, target, opt_state, sel), None


def phase(setup: Setup, greedy, step_keys, eval_keys, step_fn, state, results, start: int, stop: int, params_of):
    """Steps ``start .. stop - 1`` of ``step_fn(state, (key, t - support_size))``; every budget ``b``
    in ``[start, stop)`` is evaluated just before step ``b`` (``greedy(params_of(state), key)``
    into ``results [B]``). With budgets inside, this is one scan over the segments between
    consecutive points whose body evaluates (a ``lax.cond``) and then runs the segment's steps (a
    loop with traced bounds), so the program holds one step and one evaluation whatever the
    number of budgets; the step loop's body is the step alone."""
    S, budgets = setup.fs.support_size, setup.fs.budgets
    if stop <= start:
        return state, results
    if not [b for b in budgets if start <= b < stop]:
        state, _ = jax.lax.scan(step_fn, state, (step_keys[start:stop], jnp.arange(start - S, stop - S)))
        return state, results
    slot = {b: i for i, b in enumerate(budgets)}
    edges = [start] + [p for p in setup.points if start < p < stop] + [stop]
    seg = (np.array(edges[:-1], np.int32), np.array(edges[1:], np.int32),
           np.array([p in slot for p in edges[:-1]]), np.array([slot.get(p, 0) for p in edges[:-1]], np.int32))

    def segment(c, x):
        state, results = c
        lo, hi, f, i = x
        results = jax.lax.cond(f, lambda: results.at[i].set(greedy(params_of(state), eval_keys[i])), lambda: results)
        state = jax.lax.fori_loop(lo, hi, lambda t, st: step_fn(st, (step_keys[t], t - S))[0], state)
        return (state, results), None

    (state, results), _ = jax.lax.scan(segment, (state, results), seg)
    return state, results


def explore_step(env, learner: Learner, mode: str, meta_params, meta_target, hp, state, buf, support_size,
                 key, env_params, epsilon):
    """One ε-greedy step before adaptation, acting as
    :func:`~metadqn_jax.fewshot.config.explore_mode` ``mode`` says.

    ``state = (EnvCarry [1], online stats or None)``; ``buf`` is the replay buffer holding the
    transitions so far (read by ``"adapted"``: its ``support_size`` most recent). Returns
    ``(state, Transition [1])``; the caller adds the transition to ``buf`` (which only
    ``"adapted"`` reads, and may be None otherwise)."""
    carry, stats = state
    if mode == "online":
        return online_step(env, learner, meta_params, state, key, env_params, epsilon)
    if mode == "adapted":
        tp = learner.adapt(meta_params, meta_target, replay.recent(buf, support_size), hp)
    else:
        tp = learner.unadapted(meta_params)
    k_act, k_env = jax.random.split(key)
    a = policies.epsilon_greedy(k_act, learner.q_values(tp, carry.obs), epsilon)
    carry, tr = rollout.env_step(env, k_env, carry, a, env_params)
    return (carry, stats), tr
