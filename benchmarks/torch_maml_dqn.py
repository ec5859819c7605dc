"""PyTorch reference: MAML-DQN on CartPole with varied physics, written idiomatically with
``torch.func`` (``functional_call`` + ``grad``) and gymnasium environments.

It mirrors one meta-step of :func:`metadqn_jax.meta.step.make_meta_step` with
``algorithm="maml"``, ``task_lifetime=1`` and ``family="cartpole-physics"``:

1. every task slot gets fresh physics (``length``, ``masspole``, ``gravity``, ``force_mag``
   uniform in the family's ranges; ``total_mass`` / ``polemass_length`` recomputed) and its
   ``envs_per_task`` gymnasium ``CartPole-v1`` environments are reset;
2. all ``tasks × envs_per_task`` environments (one ``gymnasium.vector.SyncVectorEnv``,
   same-step autoreset so ``final_obs`` is the pre-reset observation, as in gymnax) act
   ``rollout_steps`` steps with the ε-greedy unadapted meta-policy — one batched Q-network
   forward per time step — and the transitions fill each task's replay tensor;
3. support = the task's transitions (``support_size = envs × steps``); query =
   ``query_batch`` transitions drawn uniformly from a rollout of the *adapted* policy
   (ε = ``query_epsilon``) on fresh episodes of the same task (``query_source="adapted"``,
   the library default: one more rollout, every task with its own adapted Q-network via
   ``torch.func.vmap(functional_call)``), or from the support transitions
   (``query_source="buffer"``);
4. inner loop: ``inner_steps`` SGD steps on the double-DQN Huber TD loss (target = the Polyak
   meta-target), second-order (``torch.func.grad`` composes); outer loss: the query TD loss
   at the adapted parameters; the per-task meta-gradients (``torch.func.grad`` of the outer
   loss) are averaged, clipped to global norm 10, and applied by ``torch.optim.AdamW``;
   the meta-target is a Polyak average (``tau``).

Two ways to batch step 4 over tasks (both idiomatic ``torch.func``): ``mode="loop"`` (a
Python loop over tasks, as learn2learn-style code does) and ``mode="vmap"``
(``torch.func.vmap`` over the task axis — the fastest torch variant). The benchmark reports both
and compares the JAX program with the faster one.

Optional dependencies (the ``[bench]`` extra): ``torch`` (CPU build), ``gymnasium``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn
from torch.func import functional_call, grad, vmap

# the cartpole-physics family (metadqn_jax.tasks.builtin)
PHYSICS_RANGES = {
    "length": (0.25, 1.0),
    "masspole": (0.05, 0.5),
    "gravity": (7.0, 12.0),
    "force_mag": (5.0, 15.0),
}


@dataclass(frozen=True)
class TorchConfig:
    num_tasks: int = 64
    envs_per_task: int = 1
    rollout_steps: int = 32
    query_batch: int = 64
    inner_steps: int = 1
    hidden: tuple[int, ...] = (64, 64)
    inner_lr: float = 0.1
    meta_lr: float = 1e-3
    gamma: float = 0.99
    epsilon: float = 0.5
    tau: float = 0.95
    max_grad_norm: float = 10.0
    mode: str = "vmap"  # "vmap" or "loop" over tasks for the meta-gradient
    query_source: str = "adapted"  # "adapted" (rollout of the adapted policy) or "buffer"
    query_epsilon: float = 0.3

    @property
    def support_size(self) -> int:
        return self.envs_per_task * self.rollout_steps

    @property
    def env_steps_per_meta_step(self) -> int:
        rollouts = 2 if self.query_source == "adapted" else 1
        return rollouts * self.num_tasks * self.envs_per_task * self.rollout_steps


class QNet(nn.Module):
    """The same Q-network as ``metadqn_jax.core.networks.QNetwork``: ReLU MLP 64-64, linear head."""

    def __init__(self, obs_dim: int, num_actions: int, hidden=(64, 64)):
        super().__init__()
        layers, d = [], obs_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, num_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def set_physics(env, length, masspole, gravity, force_mag):
    u = env.unwrapped
    u.length, u.masspole, u.gravity, u.force_mag = float(length), float(masspole), float(gravity), float(force_mag)
    u.total_mass = u.masspole + u.masscart
    u.polemass_length = u.masspole * u.length


class TorchMAMLDQN:
    """One object = one meta-training run; :meth:`meta_step` is the timed unit."""

    def __init__(self, cfg: TorchConfig, seed: int = 0):
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        n = cfg.num_tasks * cfg.envs_per_task
        self.envs = SyncVectorEnv(
            [lambda: gym.make("CartPole-v1", disable_env_checker=True) for _ in range(n)],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
        self.model = QNet(4, 2, cfg.hidden)
        self.params = {k: v.detach() for k, v in self.model.named_parameters()}
        for p in self.params.values():
            p.requires_grad_(True)
        self.target = {k: v.detach().clone() for k, v in self.params.items()}
        self.opt = torch.optim.AdamW(list(self.params.values()), lr=cfg.meta_lr, weight_decay=0.0)
        self._seed = seed

    # ------------------------------------------------------------------ losses
    def q(self, params, obs):
        return functional_call(self.model, params, (obs,))

    def td_loss(self, params, target, obs, action, reward, next_obs, terminated):
        """Double-DQN Huber TD loss (mean), target held constant."""
        q_tm1 = self.q(params, obs)
        q_t_target = self.q(target, next_obs)
        q_t_online = self.q(params, next_obs).detach()
        best = q_t_online.argmax(-1, keepdim=True)
        discount = self.cfg.gamma * (1.0 - terminated)
        y = (reward + discount * q_t_target.gather(-1, best).squeeze(-1)).detach()
        q_a = q_tm1.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return torch.nn.functional.huber_loss(q_a, y, delta=1.0)

    def outer_loss(self, params, target, support, query):
        return self.td_loss(self.adapt(params, target, support), target, *query)  # second order

    # --------------------------------------------------------------- meta-step
    def _rollout(self, act):
        """``rollout_steps`` steps of all environments; ``act(obs [T*E, 4]) -> actions``.
        Returns per-task tensors ``(obs, action, reward, next_obs, terminated)`` ``[T, L*E, ...]``."""
        cfg = self.cfg
        T, E, L = cfg.num_tasks, cfg.envs_per_task, cfg.rollout_steps
        self._seed += 1
        obs, _ = self.envs.reset(seed=self._seed)
        o_buf = np.empty((L, T * E, 4), np.float32)
        n_buf = np.empty((L, T * E, 4), np.float32)
        a_buf = np.empty((L, T * E), np.int64)
        r_buf = np.empty((L, T * E), np.float32)
        d_buf = np.empty((L, T * E), np.float32)
        with torch.no_grad():
            for t in range(L):
                action = act(torch.from_numpy(np.asarray(obs, np.float32)))
                nxt, rew, term, trunc, info = self.envs.step(action)
                final = np.array(nxt, np.float32, copy=True)
                if "final_obs" in info:
                    for j in np.nonzero(info["_final_obs"])[0]:
                        final[j] = info["final_obs"][j]
                o_buf[t], n_buf[t], a_buf[t], r_buf[t], d_buf[t] = obs, final, action, rew, term
                obs = nxt

        def per_task(x):  # time-major within a task, like the JAX buffers
            x = x.reshape((L, T, E) + x.shape[2:]).swapaxes(0, 1)
            return torch.from_numpy(np.ascontiguousarray(x.reshape((T, L * E) + x.shape[3:])))

        return tuple(per_task(x) for x in (o_buf, a_buf, r_buf, n_buf, d_buf))

    def _epsilon_greedy(self, q, epsilon):
        n = q.shape[0]
        greedy = q.argmax(-1).numpy()
        explore = self.rng.random(n) < epsilon
        return np.where(explore, self.rng.integers(0, 2, n), greedy)

    def adapt(self, params, target, support):
        """``inner_steps`` SGD steps (differentiable: ``torch.func.grad`` composes)."""
        inner_grad = grad(lambda p: self.td_loss(p, target, *support))
        p = params
        for _ in range(self.cfg.inner_steps):
            g = inner_grad(p)
            p = {k: p[k] - self.cfg.inner_lr * g[k] for k in p}
        return p

    def _collect(self):
        cfg = self.cfg
        T, E, L = cfg.num_tasks, cfg.envs_per_task, cfg.rollout_steps
        # 1. fresh tasks and environments
        phys = {k: self.rng.uniform(lo, hi, T) for k, (lo, hi) in PHYSICS_RANGES.items()}
        for i, env in enumerate(self.envs.envs):
            t = i // E
            set_physics(env, phys["length"][t], phys["masspole"][t], phys["gravity"][t], phys["force_mag"][t])
        # 2. act with the ε-greedy meta-policy
        support = self._rollout(lambda obs: self._epsilon_greedy(self.q(self.params, obs), cfg.epsilon))
        # 3. query
        if cfg.query_source == "buffer":  # uniform from each task's buffer
            src = support
        else:  # a rollout of each task's adapted policy on fresh episodes of the same task
            adapted = vmap(self.adapt, in_dims=(None, None, 0))(self.params, self.target, support)
            adapted = {k: v.detach() for k, v in adapted.items()}
            q_task = vmap(self.q, in_dims=(0, 0))

            def act(obs):
                q = q_task(adapted, obs.view(T, E, -1)).reshape(T * E, -1)
                return self._epsilon_greedy(q, cfg.query_epsilon)

            src = self._rollout(act)
        idx = torch.from_numpy(self.rng.integers(0, L * E, (T, cfg.query_batch)))
        query = tuple(torch.gather(x, 1, idx.view(idx.shape + (1,) * (x.ndim - 2)).expand(idx.shape + x.shape[2:]))
                      for x in src)
        return support, query

    def meta_step(self) -> float:
        cfg = self.cfg
        support, query = self._collect()
        # 4. meta-gradient per task, averaged
        if cfg.mode == "vmap":
            per_task = vmap(grad(self.outer_loss), in_dims=(None, None, 0, 0))(
                self.params, self.target, support, query)
            grads = {k: g.mean(0) for k, g in per_task.items()}
        else:
            grads = {k: torch.zeros_like(v) for k, v in self.params.items()}
            g_fn = grad(self.outer_loss)
            for i in range(cfg.num_tasks):
                g = g_fn(self.params, self.target, tuple(x[i] for x in support), tuple(x[i] for x in query))
                for k in grads:
                    grads[k] += g[k] / cfg.num_tasks
        norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))
        scale = torch.clamp(cfg.max_grad_norm / (norm + 1e-12), max=1.0) if math.isfinite(cfg.max_grad_norm) else 1.0
        for k, p in self.params.items():
            p.grad = grads[k] * scale
        self.opt.step()
        with torch.no_grad():
            for k in self.target:
                self.target[k].mul_(cfg.tau).add_(self.params[k], alpha=1.0 - cfg.tau)
        return float(norm.detach())


def time_meta_steps(agent: TorchMAMLDQN, min_time: float = 0.5, min_steps: int = 1) -> tuple[float, int]:
    """Runs whole meta-steps until ``min_time`` seconds and ``min_steps`` steps: (seconds, steps)."""
    t0 = time.perf_counter()
    n = 0
    while n < min_steps or time.perf_counter() - t0 < min_time:
        agent.meta_step()
        n += 1
    return time.perf_counter() - t0, n


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--envs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--inner-steps", type=int, default=1)
    ap.add_argument("--mode", default="vmap", choices=("vmap", "loop"))
    ap.add_argument("--query-source", default="adapted", choices=("adapted", "buffer"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = TorchConfig(num_tasks=a.tasks, envs_per_task=a.envs, rollout_steps=a.steps, inner_steps=a.inner_steps, mode=a.mode,
                    query_source=a.query_source)
    agent = TorchMAMLDQN(c)
    agent.meta_step()
    dt, n = time_meta_steps(agent, 2.0)
    print(f"torch {a.mode}: {n / dt:.2f} meta-steps/s, {n * c.env_steps_per_meta_step / dt:.0f} env-steps/s "
          f"(threads {torch.get_num_threads()}, torch {torch.__version__})")
