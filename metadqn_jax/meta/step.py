"""Meta-training DQN over a task family: one jitted meta-step, scanned many times per call.

One meta-step (all of it one XLA program, vmapped over the task axis ``T``):

1. every ``task_lifetime`` meta-steps each task slot draws a new *training* task from the
   family, resets its ``envs_per_task`` environments and empties its replay buffer (all slots
   at once, or with ``stagger_tasks`` out of phase, so that the buffers always hold data of
   every age);
2. each task acts ``rollout_steps`` steps in each of its environments with the ε-greedy
   *unadapted* meta-policy (a learner with an online form and ``online_context``: on the context
   inferred online from the transitions so far, O(1) per step) and writes the transitions into
   its own replay buffer;
3. support set = the task's ``support_size`` most recent transitions (masked where the buffer
   holds fewer; with ``random_support`` a random-length prefix of them); query batch =
   ``query_batch`` transitions of a rollout of the *adapted* policy (ε = ``query_epsilon``) on
   fresh episodes of the same task (``query_source="adapted"``), or drawn uniformly from the
   task's buffer (``query_source="buffer"``);
4. the learner adapts to the support set and is scored by the TD loss on the query batch
   *after* adaptation (TD target: the Polyak meta-target); the meta-gradient is averaged over
   tasks and applied by clipped AdamW; the meta-target is a Polyak average of the
   meta-parameters.

The learners are in :mod:`metadqn_jax.meta.learners`, the acting in :mod:`metadqn_jax.meta.acting`,
the settings in :mod:`metadqn_jax.meta.config`. Why this support set, query and target:
``docs/design.md`` ("Meta-training: why this support set / query / target").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from metadqn_jax import envs, tasks
from metadqn_jax.core import replay, rollout
from metadqn_jax.core.optim import clipped_adam, polyak_update
from metadqn_jax.core.types import EnvCarry, example_transition
from metadqn_jax.meta.acting import adapted_query, collect_online, collect_unadapted, support_mask, tasks_per_env
from metadqn_jax.meta.config import MetaConfig, MetaHParams
from metadqn_jax.meta.learners import Learner, make_learner


class MetaState(NamedTuple):
    """Everything meta-training carries (a pytree; a checkpoint holds exactly this)."""

    params: Any  # meta-parameters {"net": ..., ["enc": ...]}
    target_params: Any  # Polyak meta-target, same structure
    opt_state: Any  # meta-optimiser state
    tasks: Any  # EnvParams, leaves [T]: the task of each slot
    carry: EnvCarry  # env states, leaves [T, E, ...]
    buffers: replay.ReplayState  # per-task replay, data leaves [T, buffer_size, ...]
    step: jax.Array  # shape=() int32, meta-steps taken
    key: jax.Array  # PRNG key (new-style), advanced every meta-step


# The MetaState fields whose leaves have a leading task axis [T] (sharded over devices by
# metadqn_jax.sharding.task_axis_spec); every other field is shared (replicated).
PER_TASK_FIELDS: tuple[str, ...] = ("tasks", "carry", "buffers")


class MetaStepMetrics(NamedTuple):
    """Per meta-step diagnostics (leaves gain a ``[num_steps]`` axis under ``meta_train``)."""

    pre_adapt_loss: jax.Array  # float32, support TD loss before adaptation (mean over tasks)
    post_adapt_loss: jax.Array  # float32, support TD loss after adaptation
    query_loss: jax.Array  # float32, query TD loss after adaptation (the meta-objective)
    train_return: jax.Array  # float32, mean return of the last finished training episodes
    grad_norm: jax.Array  # float32, meta-gradient global norm
    params_finite: jax.Array  # bool, every meta-parameter finite after this step's update (the
    #                           divergence guard of metadqn_jax.driver.train_meta reads it with the
    #                           query loss and the gradient norm; not a logged quantity)


class InitStateFn(Protocol):
    def __call__(self, key: jax.Array, hp: MetaHParams) -> MetaState:
        """A fresh meta-state: new meta-parameters, training tasks in every slot, empty buffers."""


class MetaStepFn(Protocol):
    def __call__(self, state: MetaState, hp: MetaHParams) -> tuple[MetaState, MetaStepMetrics]:
        """One meta-iteration: acting, buffer writes, adaptation, meta-update(s)."""


class MetaProgram(NamedTuple):
    """What :func:`make_meta_step` builds: the pure functions of one meta-training setup."""

    cfg: MetaConfig
    env: Any
    family: tasks.TaskFamily
    learner: Learner
    num_actions: int
    obs_shape: tuple[int, ...]
    init: InitStateFn
    meta_step: MetaStepFn


def make_meta_step(cfg: MetaConfig) -> MetaProgram:
    """Builds ``init(key, hp) -> MetaState`` and ``meta_step(state, hp) -> (state, metrics)``.

    Both are pure; ``meta_step`` is the whole meta-iteration (acting, buffer writes,
    adaptation, meta-update: :func:`meta_step`) and is what :func:`meta_train` scans. ``hp`` is a
    :class:`MetaHParams` (traced: changing it never recompiles).
    """
    family = cfg.task_family
    env, base_params = family.env()
    num_actions = envs.num_actions(env, base_params)
    obs_shape = envs.obs_shape(env, base_params)
    setup = MetaSetup(cfg, env, family, make_learner(cfg, num_actions, obs_shape), obs_shape)
    return MetaProgram(cfg, env, family, setup.learner, num_actions, obs_shape,
                       functools.partial(init_state, setup), functools.partial(meta_step, setup))


class MetaSetup(NamedTuple):
    """The static side of one meta-training setup, bound into :func:`init_state` and :func:`meta_step`."""

    cfg: MetaConfig
    env: Any
    family: tasks.TaskFamily
    learner: Learner
    obs_shape: tuple[int, ...]


def meta_optimizer(cfg: MetaConfig, hp: MetaHParams) -> optax.GradientTransformation:
    """Clipped AdamW with the traced learning rate and weight decay (the optimiser's state does
    not depend on them)."""
    return clipped_adam(hp.meta_lr, cfg.max_grad_norm, weight_decay=hp.weight_decay)


def fresh_slots(setup: MetaSetup, key: jax.Array) -> tuple[Any, EnvCarry]:
    """``num_tasks`` training tasks (EnvParams ``[T]``) and their environments, reset (``[T, E]``)."""
    cfg = setup.cfg
    k_tasks, k_reset = jax.random.split(key)
    task_params = setup.family.sample(k_tasks, cfg.num_tasks, "train")
    carry = jax.vmap(rollout.init_carry, in_axes=(None, 0, 0))(
        setup.env, jax.random.split(k_reset, cfg.num_tasks), tasks_per_env(task_params, cfg.envs_per_task)
    )
    return task_params, carry


def init_state(setup: MetaSetup, key: jax.Array, hp: MetaHParams) -> MetaState:
    """A fresh :class:`MetaState` (the target a copy of the parameters, every buffer empty)."""
    cfg, T = setup.cfg, setup.cfg.num_tasks
    k_params, k_slots, k_state = jax.random.split(key, 3)
    params = setup.learner.init(k_params)
    task_params, carry = fresh_slots(setup, k_slots)
    buffer = replay.init(example_transition(setup.obs_shape), cfg.buffer_size)
    buffers = jax.tree.map(lambda x: jnp.broadcast_to(x, (T,) + x.shape), buffer)
    return MetaState(
        params=params,
        target_params=jax.tree.map(jnp.copy, params),  # distinct buffers (donation)
        opt_state=meta_optimizer(cfg, hp).init(params),
        tasks=task_params,
        carry=carry,
        buffers=buffers,
        step=jnp.zeros((), jnp.int32),
        key=k_state,
    )


def meta_step(setup: MetaSetup, state: MetaState, hp: MetaHParams) -> tuple[MetaState, MetaStepMetrics]:
    """One meta-iteration, the steps of the module docstring in order."""
    cfg, T, L, E = setup.cfg, setup.cfg.num_tasks, setup.cfg.rollout_steps, setup.cfg.envs_per_task
    key, k_slots, k_roll, k_query, k_support = jax.random.split(state.key, 5)
    # 1. new tasks every task_lifetime meta-steps (fresh envs and empty buffers)
    task_params, carry, buffers = renew_slots(setup, state, k_slots)
    # 2. act with the ε-greedy meta-policy, write each task's buffer
    env_params = tasks_per_env(task_params, E)
    # the support is collected acting on the online context where the learner has that form
    collect = collect_online if cfg.online_context and setup.learner.online is not None else collect_unadapted
    carry, trans = collect(setup.env, setup.learner, cfg, state.params, setup.obs_shape, carry, k_roll, env_params,
                           buffers, hp.epsilon)
    trans = jax.tree.map(lambda x: x.reshape((T, L * E) + x.shape[3:]), trans)
    buffers = jax.vmap(replay.add)(buffers, trans)
    # 3. support: the most recent transitions (optionally a random prefix of them, per update)
    support = jax.vmap(replay.recent, in_axes=(0, None))(buffers, cfg.support_size)
    # 4. updates_per_step meta-gradient updates, each on its own support-mask and query keys
    opt = (state.params, state.target_params, state.opt_state)
    if cfg.updates_per_step == 1:  # the keys (and numbers) of a one-update meta-step
        (params, target, opt_state), upd = meta_update(setup, opt, buffers, env_params, support, hp, k_query,
                                                       k_support)
    else:
        keys = (jax.random.split(k_query, cfg.updates_per_step), jax.random.split(k_support, cfg.updates_per_step))
        (params, target, opt_state), upd = jax.lax.scan(
            lambda o, k: meta_update(setup, o, buffers, env_params, support, hp, *k), opt, keys)
        # metrics: the mean over the updates; params_finite: after every update
        upd = (*(x.mean() for x in upd[:4]), upd[4].all())
    finished = carry.episodes > 0
    train_ret = jnp.sum(jnp.where(finished, carry.last_return, 0.0)) / jnp.maximum(finished.sum(), 1)
    pre, post, query_loss, grad_norm, finite = upd
    metrics = MetaStepMetrics(pre, post, query_loss, train_ret, grad_norm, finite)
    return MetaState(params, target, opt_state, task_params, carry, buffers, state.step + 1, key), metrics


def renew_slots(setup: MetaSetup, state: MetaState, key: jax.Array) -> tuple[Any, EnvCarry, replay.ReplayState]:
    """The slots' tasks, environments and buffers after step 1: every ``task_lifetime`` meta-steps
    a slot draws a new training task, resets its environments and empties its buffer (all slots
    at once, or with ``stagger_tasks`` slot ``i`` ``task_lifetime * i // num_tasks`` meta-steps
    out of phase)."""
    cfg, T = setup.cfg, setup.cfg.num_tasks
    if cfg.task_lifetime == 1:
        task_params, carry = fresh_slots(setup, key)
        return task_params, carry, replay.clear(state.buffers)
    if cfg.stagger_tasks:
        offset = jnp.arange(T, dtype=jnp.int32) * cfg.task_lifetime // T
        renew = (state.step + offset) % cfg.task_lifetime == 0  # [T]
        slot = lambda x: renew.reshape((T,) + (1,) * (x.ndim - 1))
    else:
        renew = state.step % cfg.task_lifetime == 0
        slot = lambda x: renew
    new_tasks, new_carry = fresh_slots(setup, key)
    pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(slot(x), x, y), a, b)
    return (pick(new_tasks, state.tasks), pick(new_carry, state.carry),
            pick(replay.clear(state.buffers), state.buffers))


def meta_update(setup: MetaSetup, opt: tuple, buffers: replay.ReplayState, env_params: Any, support: tuple,
                hp: MetaHParams, k_query: jax.Array, k_support: jax.Array):
    """One meta-gradient update on fresh support-mask and query samples: the mean over tasks of
    the learners' meta-gradients, the meta-optimiser's step, the Polyak meta-target.

    Args:
      opt: ``(params, target_params, opt_state)``.
      support: ``(Transition [T, S], recent mask [T, S])``: every task's most recent transitions.

    Returns:
      ``(opt, (pre_adapt_loss, post_adapt_loss, query_loss, grad_norm, params_finite))``, the
      losses the means over tasks.
    """
    cfg, T = setup.cfg, setup.cfg.num_tasks
    params, target_params, opt_state = opt
    support_tr, recent_mask = support
    mask = jax.vmap(support_mask, in_axes=(0, 0, None))(jax.random.split(k_support, T), recent_mask,
                                                        cfg.setting("random_support"))
    # the query: uniform from the task's buffer, or (built inside the learner's meta-gradient, from
    # its adapted parameters) a rollout of the adapted policy on fresh episodes of the same task
    if cfg.query_source == "buffer":
        query_tr = jax.vmap(replay.sample, in_axes=(0, 0, None))(buffers, jax.random.split(k_query, T), cfg.query_batch)
        queries = (query_tr, jnp.ones(query_tr.reward.shape, bool))
    else:
        queries = (jax.random.split(k_query, T), env_params)

    def task_meta_grad(task_support, query):
        if cfg.query_source == "adapted":  # the learner adapts once, for both uses
            k, p = query
            query = lambda tp: adapted_query(setup.env, setup.learner, cfg, tp, k, p)
        return setup.learner.meta_grad(params, target_params, task_support, query, hp)

    if cfg.task_micro_batch and cfg.task_micro_batch < T:  # keeps the working set in cache
        grads, m = jax.lax.map(lambda a: task_meta_grad(*a), ((support_tr, mask), queries),
                               batch_size=cfg.task_micro_batch)
    else:
        grads, m = jax.vmap(task_meta_grad)((support_tr, mask), queries)
    grads = jax.tree.map(lambda g: g.mean(0), grads)
    updates, opt_state = meta_optimizer(cfg, hp).update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    target_params = polyak_update(target_params, params, hp.tau)
    losses = (m.pre_adapt_loss.mean(), m.post_adapt_loss.mean(), m.query_loss.mean())
    return (params, target_params, opt_state), (*losses, optax.tree.norm(grads), all_finite(params))


def all_finite(tree) -> jax.Array:
    """A bool scalar: every element of every leaf of ``tree`` is finite (one reduction per leaf)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.bool_(True)
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]).all()


def meta_train(meta_step: Callable, state: MetaState, hp: MetaHParams, num_steps: int):
    """``num_steps`` meta-steps in one ``lax.scan``. Jit it (static ``num_steps``)::

        run = jax.jit(meta_train, static_argnums=(0, 3), donate_argnums=(1,))

    Returns ``(state, MetaStepMetrics with leaves [num_steps])``.
    """
    return jax.lax.scan(lambda s, _: meta_step(s, hp), state, None, length=num_steps)


def meta_train_seeds(meta_step: Callable, state: MetaState, hp: MetaHParams, num_steps: int):
    """:func:`meta_train` vmapped over a leading meta-training seed axis ``[N]`` of ``state``
    (every leaf, the step counter and key included); ``hp`` is shared. Jit it like
    :func:`meta_train`. Returns ``(state, MetaStepMetrics with leaves [N, num_steps])``."""
    return jax.vmap(lambda s: meta_train(meta_step, s, hp, num_steps))(state)


def memory_bytes(cfg: MetaConfig, obs_shape: tuple[int, ...], num_actions: int | None = None) -> dict[str, int]:
    """Bytes of one meta-training run's state, estimated from the config alone (no compute).

    A transition is ``2 × obs (float32) + action (int32) + reward (float32) + 2 bools``; the
    replay is ``num_tasks × buffer_size`` of them. With ``num_actions``, also the Q-network's
    parameters (float32; ``parameter_bytes``), the meta-state's copies of them (parameters,
    target, Adam's two moments: ``4 ×``) and the largest temporary, the activations of one
    query batch of every task kept for the backward pass through ``inner_steps + 1``
    forward passes (``activation_bytes``); ``total_bytes`` adds them up (per meta-seed).
    """
    obs_bytes = 4 * math.prod(obs_shape)
    transition = 2 * obs_bytes + 4 + 4 + 2
    buffers = cfg.num_tasks * cfg.buffer_size * transition
    out = {"transition_bytes": transition, "replay_bytes": buffers, "per_task_replay_bytes": cfg.buffer_size * transition}
    if num_actions is not None:
        widths = (math.prod(obs_shape) + cfg.context_dim, *cfg.hidden, num_actions)
        params = 4 * sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
        rows = cfg.num_tasks * max(cfg.query_batch, cfg.support_size)
        activations = 4 * rows * sum(widths[1:]) * 2 * (cfg.inner_steps + 1)
        # a MAML-style inner loop holds one adapted copy of the parameters per task and inner step
        adapted = params * cfg.num_tasks * (cfg.inner_steps + 1)
        out.update(parameter_bytes=params, activation_bytes=activations + adapted,
                   total_bytes=buffers + 4 * params + activations + adapted)
    return out
