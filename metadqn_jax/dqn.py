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
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metadqn_jax import envs
from metadqn_jax.core import losses, policies, replay, rollout
from metadqn_jax.core.optim import clipped_adam, linear_epsilon, polyak_update
from metadqn_jax.core.hparams import as_hparams, check_hparams
from metadqn_jax.core.validate import ConfigError, in_range, nonneg_int, positive_int, require
from metadqn_jax.core.networks import make_q_network
from metadqn_jax.core.types import EnvCarry, Transition, example_transition


# ----------------------------------------------------------------------------- config
class DQNHParams(NamedTuple):
    """Traced DQN hyper-parameters (leaves: float32 scalars, or ``[n]`` under a vmapped sweep)."""

    lr: Any  # Adam learning rate, > 0
    gamma: Any  # discount in [0, 1]
    eps_start: Any  # ε at step 0, in [0, 1]
    eps_end: Any  # final ε, in [0, 1]
    eps_decay_steps: Any  # env steps over which ε decays linearly, > 0
    tau: Any  # Polyak factor in [0, 1): target <- tau * target + (1 - tau) * online


DQN_HPARAM_RULES = {
    "lr": (0.0, math.inf, True, True),
    "gamma": (0.0, 1.0, False, False),
    "eps_start": (0.0, 1.0, False, False),
    "eps_end": (0.0, 1.0, False, False),
    "eps_decay_steps": (0.0, math.inf, True, True),
    "tau": (0.0, 1.0, False, True),
}


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Single-task DQN: static settings plus defaults for the traced hyper-parameters.

    The defaults are rejax's CartPole DQN configuration (10 envs, 50k buffer, batch 100,
    5 updates per 10 env steps, double DQN, squared loss, swish 64-64, Polyak 0.98 once per
    iteration, lr 1e-3, ε 1 -> 0.05 over 10k steps); how they were chosen and what they
    measure: ``docs/design.md`` ("Evaluation and DQN") and BENCHMARKS.md.

    Static fields fix array shapes and loop lengths (changing one recompiles); ``lr``,
    ``gamma``, ``eps_*`` and ``tau`` are only defaults for :meth:`hparams`.
    """

    env_id: str = "CartPole-v1"
    num_envs: int = 10  # parallel environments
    total_steps: int = 100_000  # environment steps (all envs together)
    buffer_size: int = 50_000  # replay capacity, transitions
    batch_size: int = 100  # transitions per gradient step
    learning_starts: int = 1_000  # env steps before the first update
    updates_per_iteration: int = 5  # gradient steps per iteration (one step of every env)
    hidden: tuple[int, ...] = (64, 64)
    dueling: bool = False
    activation: str = "swish"  # hidden-layer activation: "relu" or "swish"
    double: bool = True  # double-DQN target
    huber: bool = False  # Huber (True) or squared TD loss
    target_update: str = "polyak"  # "polyak" (once per iteration, factor tau) or "period"
    target_period: int = 500  # gradient steps between hard target copies ("period")
    max_grad_norm: float = 10.0  # global-norm gradient clipping (inf: off)
    lr_decay: bool = False  # anneal the learning rate linearly to 0 over total_steps
    eval_every: int = 2_500  # env steps between greedy evaluations
    eval_episodes: int = 10  # greedy episodes per evaluation
    solve_threshold: float = 475.0  # mean greedy return that counts as solved
    # defaults of the traced hyper-parameters
    lr: float = 1e-3
    gamma: float = 0.99
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_steps: float = 10_000.0
    tau: float = 0.98

    def __post_init__(self):
        require(isinstance(self.env_id, str) and bool(self.env_id), "env_id", "a non-empty string", self.env_id)
        try:
            envs.make_env(self.env_id)
        except ValueError as e:  # names the unknown id and lists the known ones
            raise ConfigError(f"env_id: {e}") from None
        for name in ("num_envs", "total_steps", "buffer_size", "batch_size", "updates_per_iteration",
                     "target_period", "eval_every", "eval_episodes"):
            positive_int(name, getattr(self, name))
        nonneg_int("learning_starts", self.learning_starts)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        require(len(self.hidden) > 0 and all(h > 0 for h in self.hidden), "hidden",
                "a non-empty list of positive layer widths", self.hidden)
        require(self.batch_size <= self.buffer_size, "batch_size",
                f"<= buffer_size ({self.buffer_size})", self.batch_size)
        require(self.num_envs <= self.buffer_size, "num_envs", f"<= buffer_size ({self.buffer_size})", self.num_envs)
        require(self.activation in ("relu", "swish"), "activation", "'relu' or 'swish'", self.activation)
        require(self.target_update in ("polyak", "period"), "target_update", "'polyak' or 'period'", self.target_update)
        require(self.eval_every % self.num_envs == 0, "eval_every", f"a multiple of num_envs ({self.num_envs})", self.eval_every)
        require(self.total_steps >= self.eval_every, "total_steps", f">= eval_every ({self.eval_every})", self.total_steps)
        in_range("max_grad_norm", self.max_grad_norm, 0.0, math.inf, low_open=True)
        check_hparams(self.hparams(), DQN_HPARAM_RULES)

    def hparams(self, **overrides) -> DQNHParams:
        """The traced hyper-parameters (defaults from this config, ``overrides`` applied)."""
        values = {f: getattr(self, f) for f in DQNHParams._fields}
        values.update(overrides)
        hp = as_hparams(DQNHParams, **values)
        if overrides:
            check_hparams(hp, DQN_HPARAM_RULES)
        return hp

    @property
    def num_evals(self) -> int:
        return self.total_steps // self.eval_every

    @property
    def iterations_per_eval(self) -> int:
        return self.eval_every // self.num_envs


# ---------------------------------------------------------------------------- program

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
    # divergence guard (computed in the compiled program; read with first_divergence):
    diverged_step: jax.Array  # int32, env steps after the period's first iteration whose applied
    #                           updates had a non-finite TD loss or left a non-finite online
    #                           parameter (-1: none in this period)
    diverged_loss: jax.Array  # float32, that iteration's mean TD loss (non-finite: the loss
    #                           diverged; finite: the parameters did; 0 when diverged_step is -1)


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
    """One DQN gradient step on the TD loss (:func:`metadqn_jax.core.losses.td_loss`) with
    clipped Adam (:func:`metadqn_jax.core.optim.clipped_adam`, learning rate ``hp.lr``).

    Args:
      params, target_params: online and target Q-network parameters (same structure).
      opt_state: the optimiser state of ``params`` (``clipped_adam(lr, max_grad_norm).init``).
      batch: transitions, leaves ``[B, ...]``.
      hp: traced hyper-parameters (``lr`` and ``gamma`` are read).
      q_fn: ``q_fn(params, obs [B, ...]) -> Q [B, num_actions]``.
      max_grad_norm: global-norm clip threshold (``inf``: off).
      double: double-DQN target (van Hasselt et al. 2016); else the max over the target net.
      huber: Huber loss (else squared).
      mask: optional ``[B]`` weights; the loss is then the mean over the valid items.

    Returns:
      ``(params, opt_state, loss)``: the updated parameters and state and the float32 scalar
      loss before the step. The target is not updated (:func:`update_target`).
    """
    (loss, _), grads = jax.value_and_grad(losses.td_loss, has_aux=True)(
        params, target_params, batch, q_fn, hp.gamma, double=double, huber=huber, mask=mask
    )
    updates, opt_state = clipped_adam(hp.lr, max_grad_norm).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def update_target(target_params, params, hp: DQNHParams, updates: jax.Array, cfg: DQNConfig):
    """The new target parameters: Polyak averaging with ``hp.tau``
    (:func:`metadqn_jax.core.optim.polyak_update`) when ``cfg.target_update == "polyak"``, else
    a hard copy of ``params`` when ``updates`` (int32 scalar, gradient steps so far) is a
    multiple of ``cfg.target_period``."""
    if cfg.target_update == "polyak":
        return polyak_update(target_params, params, hp.tau)
    copy = updates % cfg.target_period == 0
    return jax.tree.map(lambda t, p: jnp.where(copy, p, t), target_params, params)


def make_train(cfg: DQNConfig, env_params: Any | None = None):
    """Builds ``train(key, hp) -> (DQNState, DQNMetrics)`` for one task.

    Args:
      cfg: static configuration (validated on construction).
      env_params: the task (an unbatched ``EnvParams``); default: the env's default params.
        ``train`` also accepts it as a third argument, so a batch of tasks is one ``vmap``.

    The metrics carry the divergence guard, computed in the program (no host work, no extra
    synchronisation): per evaluation period the env step of the first iteration whose applied
    updates had a non-finite TD loss or left a non-finite online parameter
    (:attr:`DQNMetrics.diverged_step`); :func:`first_divergence` reads it. Training itself is
    not stopped (one compiled program): the caller decides.
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
            opt_state=clipped_adam(hp.lr, cfg.max_grad_norm).init(params),
            buffer=replay.init(example_transition(obs_shape), cfg.buffer_size),
            carry=rollout.init_carry(env, k_env, batched_params),
            env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
        )

        def iteration(s: DQNState, k):
            k_act, k_env, k_upd = jax.random.split(k, 3)
            eps = linear_epsilon(s.env_steps.astype(jnp.float32), hp.eps_start, hp.eps_end, hp.eps_decay_steps)
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
                new_t = polyak_update(target, params, hp.tau)
                target = jax.tree.map(lambda a, b: jnp.where(ready, a, b), new_t, target)
            s = DQNState(params, target, opt_state, buffer, carry, env_steps, updates)
            loss = loss.mean()
            # updates apply only once ready: a non-finite loss or parameter before that is not one
            bad = ready & ~(jnp.isfinite(loss) & _all_finite(params))
            return s, (loss, bad)

        def period(s: DQNState, k):
            k_it, k_eval = jax.random.split(k)
            start = s.env_steps
            s, (loss, bad) = jax.lax.scan(iteration, s, jax.random.split(k_it, cfg.iterations_per_eval))
            eval_params = rollout.broadcast_params(task_params, cfg.eval_episodes)
            act = lambda obs: jnp.argmax(q_fn(s.params, obs), axis=-1)
            returns = rollout.greedy_returns(env, act, k_eval, eval_params, max_steps)
            train_ret = jnp.where(s.carry.episodes > 0, s.carry.last_return, jnp.nan)
            first = jnp.argmax(bad)
            diverged = bad.any()
            diverged_step = jnp.where(diverged, start + (first + 1) * cfg.num_envs, -1).astype(jnp.int32)
            diverged_loss = jnp.where(diverged, loss[first], 0.0)
            return s, DQNMetrics(s.env_steps, returns.mean(), jnp.nanmean(train_ret), loss.mean(),
                                 diverged_step, diverged_loss)

        return jax.lax.scan(period, state, jax.random.split(k_loop, cfg.num_evals))

    return train


def _all_finite(tree) -> jax.Array:
    """A bool scalar: every element of every leaf of ``tree`` is finite."""
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]).all()


def first_divergence(metrics: DQNMetrics) -> tuple[int, str, float] | None:
    """Where one training run (metrics leaves ``[num_evals]``, on the host or device) first
    diverged: ``(env_steps, quantity, value)`` with ``quantity`` ``"loss"`` (the TD loss of the
    updates of that iteration was ``value``, non-finite) or ``"params"`` (an online parameter
    became non-finite; ``value`` is the finite loss); ``None`` if it never did."""
    steps = np.asarray(metrics.diverged_step).reshape(-1)
    hit = np.flatnonzero(steps >= 0)
    if hit.size == 0:
        return None
    j = int(hit[0])
    value = float(np.asarray(metrics.diverged_loss).reshape(-1)[j])
    return int(steps[j]), ("params" if np.isfinite(value) else "loss"), value


def first_solved_step(metrics: DQNMetrics, threshold: float) -> jax.Array:
    """Env steps at the first evaluation whose mean greedy return ≥ threshold (−1: never).

    Works on metrics with extra leading axes (e.g. ``[seeds, num_evals]``).
    """
    solved = metrics.eval_return >= threshold
    first = jnp.argmax(solved, axis=-1)
    steps = jnp.take_along_axis(metrics.env_steps, first[..., None], axis=-1)[..., 0]
    return jnp.where(solved.any(axis=-1), steps, -1)
