"""Single-task DQN as one jitted program (``make_train(config) -> train(key, hp)``).

All Python work (making the environment, the network, the optimiser) happens once in
:func:`make_train`; the returned ``train`` is a pure function whose whole training loop is a
``lax.scan``. Vmap it over seeds and hyper-parameters::

    train = make_train(DQNConfig())
    keys = jax.random.split(jax.random.key(0), 5)
    state, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, DQNConfig().hparams())

The update (:func:`dqn_update`) is shared with few-shot fine-tuning and the baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metadqn_jax import envs, losses, policies, replay, rollout
from metadqn_jax.config import DQNConfig, DQNHParams
from metadqn_jax.networks import make_q_network
from metadqn_jax.types import EnvCarry, Transition, example_transition


class DQNState(NamedTuple):
    """Everything single-task DQN training carries (a pytree; checkpointable as is)."""

    params: Any  # online Q-network parameters
    target_params: Any  # target-network parameters
    opt_state: Any  # optax state of the online parameters
    buffer: replay.ReplayState  # replay of Transition, capacity = config.buffer_size
    carry: EnvCarry  # environment states, leaves [num_envs, ...]
    env_steps: jax.Array  # shape=() int32, environment steps taken (all envs)
    updates: jax.Array  # shape=() int32, gradient steps taken


class DQNMetrics(NamedTuple):
    """One row per evaluation (leaves ``[num_evals]``)."""

    env_steps: jax.Array  # int32, env steps at the evaluation
    eval_return: jax.Array  # float32, mean greedy return over eval_episodes
    train_return: jax.Array  # float32, mean return of the last finished training episodes
    loss: jax.Array  # float32, mean TD loss over the period


def make_optimizer(lr, max_grad_norm: float) -> optax.GradientTransformation:
    """Adam with global-norm clipping; ``lr`` may be traced (Adam's state does not depend on it)."""
    adam = optax.adam(lr)
    if max_grad_norm == float("inf"):
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def dqn_update(
    params,
    target_params,
    opt_state,
    batch: Transition,
    hp: DQNHParams,
    q_fn: Callable,
    *,
    max_grad_norm: float = 10.0,
    double: bool = True,
    huber: bool = True,
    mask: jax.Array | None = None,
):
    """One DQN gradient step. Returns ``(params, opt_state, loss)`` (target not updated)."""
    (loss, _), grads = jax.value_and_grad(losses.td_loss, has_aux=True)(
        params, target_params, batch, q_fn, hp.gamma, double=double, huber=huber, mask=mask
    )
    updates, opt_state = make_optimizer(hp.lr, max_grad_norm).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def update_target(target_params, params, hp: DQNHParams, updates: jax.Array, cfg: DQNConfig):
    """Polyak or a hard copy every ``target_period`` updates (see :class:`DQNConfig`)."""
    if cfg.target_update == "polyak":
        return policies.polyak(target_params, params, hp.tau)
    copy = updates % cfg.target_period == 0
    return jax.tree.map(lambda t, p: jnp.where(copy, p, t), target_params, params)


def make_train(cfg: DQNConfig, env_params: Any | None = None):
    """Builds ``train(key, hp) -> (DQNState, DQNMetrics)`` for one task.

    Args:
      cfg: static configuration (validated on construction).
      env_params: the task (an unbatched ``EnvParams``); default: the env's default params.
        ``train`` also accepts it as a third argument, so a batch of tasks is one ``vmap``.
    """
    env, default_params = envs.make_env(cfg.env_id)
    env_params = default_params if env_params is None else env_params
    num_actions = envs.num_actions(env, env_params)
    obs_shape = envs.obs_shape(env, env_params)
    net = make_q_network(num_actions, cfg.hidden, dueling=cfg.dueling, activation=cfg.activation)
    q_fn = net.apply
    max_steps = int(env_params.max_steps_in_episode)

    def train(key: jax.Array, hp: DQNHParams, task_params: Any = env_params):
        k_init, k_env, k_loop = jax.random.split(key, 3)
        batched_params = rollout.broadcast_params(task_params, cfg.num_envs)
        params = net.init(k_init, jnp.zeros(obs_shape, jnp.float32))
        state = DQNState(
            params=params,
            target_params=params,
            opt_state=make_optimizer(hp.lr, cfg.max_grad_norm).init(params),
            buffer=replay.init(example_transition(obs_shape), cfg.buffer_size),
            carry=rollout.init_carry(env, k_env, batched_params),
            env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
        )
        eps_schedule = lambda t: hp.eps_end + (hp.eps_start - hp.eps_end) * jnp.clip(
            1.0 - t / hp.eps_decay_steps, 0.0, 1.0
        )

        def iteration(s: DQNState, k):
            k_act, k_env, k_upd = jax.random.split(k, 3)
            eps = eps_schedule(s.env_steps.astype(jnp.float32))
            actions = policies.epsilon_greedy(k_act, q_fn(s.params, s.carry.obs), eps)
            carry, tr = rollout.env_step(env, k_env, s.carry, actions, batched_params)
            buffer = replay.add(s.buffer, tr)
            env_steps = s.env_steps + cfg.num_envs
            ready = env_steps >= cfg.learning_starts

            frac = env_steps.astype(jnp.float32) / cfg.total_steps
            hp_now = hp._replace(lr=hp.lr * (1.0 - frac)) if cfg.lr_decay else hp

            def one_update(u, k):
                params, target, opt_state, n = u
                batch = replay.sample(buffer, k, cfg.batch_size)
                new_p, new_o, loss = dqn_update(
                    params, target, opt_state, batch, hp_now, q_fn,
                    max_grad_norm=cfg.max_grad_norm, double=cfg.double, huber=cfg.huber,
                )
                new_p = jax.tree.map(lambda a, b: jnp.where(ready, a, b), new_p, params)
                new_o = jax.tree.map(lambda a, b: jnp.where(ready, a, b), new_o, opt_state)
                n = n + ready.astype(jnp.int32)
                if cfg.target_update == "period":
                    new_t = update_target(target, new_p, hp, n, cfg)
                    target = jax.tree.map(lambda a, b: jnp.where(ready, a, b), new_t, target)
                return (new_p, target, new_o, n), loss

            (params, target, opt_state, updates), loss = jax.lax.scan(
                one_update,
                (s.params, s.target_params, s.opt_state, s.updates),
                jax.random.split(k_upd, cfg.updates_per_iteration),
            )
            if cfg.target_update == "polyak":  # once per iteration (rejax's convention)
                new_t = policies.polyak(target, params, hp.tau)
                target = jax.tree.map(lambda a, b: jnp.where(ready, a, b), new_t, target)
            s = DQNState(params, target, opt_state, buffer, carry, env_steps, updates)
            return s, loss.mean()

        def period(s: DQNState, k):
            k_it, k_eval = jax.random.split(k)
            s, loss = jax.lax.scan(iteration, s, jax.random.split(k_it, cfg.iterations_per_eval))
            eval_params = rollout.broadcast_params(task_params, cfg.eval_episodes)
            act = lambda obs: jnp.argmax(q_fn(s.params, obs), axis=-1)
            returns = rollout.greedy_returns(env, act, k_eval, eval_params, max_steps)
            train_ret = jnp.where(s.carry.episodes > 0, s.carry.last_return, jnp.nan)
            return s, DQNMetrics(s.env_steps, returns.mean(), jnp.nanmean(train_ret), loss.mean())

        return jax.lax.scan(period, state, jax.random.split(k_loop, cfg.num_evals))

    return train


def first_solved_step(metrics: DQNMetrics, threshold: float) -> jax.Array:
    """Env steps at the first evaluation whose mean greedy return ≥ threshold (−1: never).

    Works on metrics with extra leading axes (e.g. ``[seeds, num_evals]``).
    """
    solved = metrics.eval_return >= threshold
    first = jnp.argmax(solved, axis=-1)
    steps = jnp.take_along_axis(metrics.env_steps, first[..., None], axis=-1)[..., 0]
    return jnp.where(solved.any(axis=-1), steps, -1)
