"""Meta-learning DQN over a task family: one jitted meta-step, scanned many times per call.

One meta-step (all of it one XLA program, vmapped over the task axis ``T``):

1. every ``task_lifetime`` meta-steps each task slot draws a new *training* task from the
   family, resets its ``envs_per_task`` environments and empties its replay buffer;
2. each task acts ``rollout_steps`` steps in each of its environments with the ε-greedy
   *unadapted* meta-policy (the ``context`` learner with ``online_context``: on the context
   inferred online from the transitions so far, O(1) per step) and writes the transitions
   into its own replay buffer;
3. support set = the task's ``support_size`` most recent transitions (masked where the
   buffer holds fewer); query batch = ``query_batch`` transitions of a rollout of the
   *adapted* policy (ε = ``query_epsilon``) on fresh episodes of the same task
   (``query_source="adapted"``, the default), or drawn uniformly from the task's buffer
   (``query_source="buffer"``);
4. the learner adapts to the support set and is scored by the TD loss on the query batch
   *after* adaptation; the meta-gradient is averaged over tasks and applied by an optax
   meta-optimiser (Adam, optional weight decay); the meta-target network is a Polyak
   average of the meta-parameters.

Why this support set: at test time a new task provides exactly this — a fresh buffer with a
few recent transitions collected by the (unadapted, ε-greedy) meta-policy — and the
meta-objective must optimise what test time does. With ``task_lifetime = 1`` (the library
default) every meta-step is a fresh task from reset, which is the test-time situation exactly;
families with long episodes (CartPole) recommend longer-lived tasks and queries from the task's
buffer instead (``TaskFamily.meta_defaults``; measured in BENCHMARKS.md §1). Why the query comes from the adapted policy (measured on ``pointnav-goal``, γ = 0.5,
2,000 meta-steps, validation return after 100 steps, 32 validation goals): with the query
sampled from the support buffer, the TD loss fell to 0.002 while the greedy return stayed
at −11.8 (context) / about −15 (MAML): the loss was low only on the states the *unadapted*
policy visits, and the adapted greedy policy went where it had never been trained. With the
query drawn from a rollout of the adapted policy: context −10.6 (and −4.9 after 4,000
steps at meta-lr 3e-3), MAML −9.2. The
TD target in both loops is the Polyak meta-target: a throw-away prototype measured that
using the online (or adapted) parameters as their own target diverged or adapted badly
(see ``shared/DESIGN.md``).

Learners (``MetaConfig.algorithm``):

* ``maml`` / ``fomaml`` / ``reptile`` — gradient-based adaptation of the Q-network
  (all parameters, or only the output head with ``adapt="head"``, ANIL-style), through
  the generic core :mod:`metadqn_jax.meta.gradient`.
* ``cavia`` — only a context vector ``φ`` (``context_dim``, ``φ₀ = 0``) concatenated to the
  observation is adapted; the network is shared; second-order meta-gradient
  (``cavia_first_order=True``: first-order).
* ``context`` — a permutation-invariant encoder of the support transitions produces ``z``
  (masked mean of a per-transition MLP); ``Q(s, a, z)`` is trained end to end; no inner
  gradient steps. ``context_decoder > 0`` adds a VariBAD-style auxiliary loss: a decoder
  ``(obs, action, z) -> (reward, next_obs - obs)`` scored on the query transitions, whose
  gradient reaches only the encoder and the decoder (denser supervision of ``z`` than the TD
  loss; BENCHMARKS.md §1 has where it helps and where it hurts). ``context_refine = k > 0``
  (with the decoder) makes the inference semi-amortised: the encoder's ``z`` is refined by
  ``k`` damped Gauss-Newton (Levenberg-Marquardt) steps that fit the decoder to the support's
  rewards and state changes (the damping is meta-learned), and everything is trained through
  the refinement. An amortised encoder averages; the fit can triangulate. The online context
  (:class:`OnlineContext`, acting while inferring during meta-training) stays the encoder's
  O(1) ``z``; at test time the agent acts on the refined ``z`` of the transitions so far
  (``FewShotConfig.explore``, :func:`metadqn_jax.fewshot.explore_mode`). On pointnav-goal the
  25-step return goes from −8.10 to −3.68, oracle −3.59, and the first episode from −9.61 to
  −5.28 (BENCHMARKS.md §1).
* ``pretrained`` — the multi-task baseline: one DQN on the pooled training tasks with the
  same data and environment-step budget (the query loss at the unadapted parameters). At
  test time it adapts with the same inner rule (``inner_steps`` at ``inner_lr``) as MAML.

Every learner produces *task parameters* ``{"net": Q-network params, "ctx": context
[context_dim]}`` (``ctx`` has size 0 for the gradient learners); test-time fine-tuning
(:mod:`metadqn_jax.fewshot`) treats them as an ordinary DQN's parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metadqn_jax import envs, tasks
from metadqn_jax.core import losses, policies, replay, rollout
from metadqn_jax.meta import gradient as meta
from metadqn_jax.core.validate import (
    as_hparams,
    check_hparams,
    in_range,
    nonneg_int,
    positive_int,
    require,
)
from metadqn_jax.core.networks import MLP, head_mask, make_q_network
from metadqn_jax.core.types import EnvCarry, Transition, example_transition  # noqa: F401 (re-exported)

ALGORITHMS = ("maml", "fomaml", "reptile", "cavia", "context", "pretrained")
GRADIENT_ALGORITHMS = ("maml", "fomaml", "reptile")


# ----------------------------------------------------------------------------- config
class MetaHParams(NamedTuple):
    """Traced meta-training hyper-parameters (float32 leaves; changing them never recompiles)."""

    inner_lr: Any  # inner-loop learning rate, > 0
    meta_lr: Any  # meta-optimiser (Adam) learning rate, > 0
    weight_decay: Any  # decoupled weight decay of the meta-optimiser, >= 0
    gamma: Any  # discount in [0, 1]
    epsilon: Any  # ε of the data-collecting meta-policy, in [0, 1]
    tau: Any  # Polyak factor of the meta-target, in [0, 1)


META_HPARAM_RULES = {
    "inner_lr": (0.0, math.inf, True, True),
    "meta_lr": (0.0, math.inf, True, True),
    "weight_decay": (0.0, math.inf, False, True),
    "gamma": (0.0, 1.0, False, False),
    "epsilon": (0.0, 1.0, False, False),
    "tau": (0.0, 1.0, False, True),
}


# What MetaConfig's family-dependent fields (None = "the family's") become when the family
# recommends nothing (tasks.TaskFamily.meta_defaults; the keys are tasks.FAMILY_META_FIELDS),
# and its algorithm-dependent fields (None = "the algorithm's") when ALGORITHM_DEFAULTS has none.
LIBRARY_DEFAULTS: dict[str, Any] = {"task_lifetime": 1, "query_source": "adapted", "buffer_size": 100,
                                    "random_support": False, "inner_lr": 0.1, "meta_lr": 1e-3}
FAMILY_RESOLVED = ("task_lifetime", "query_source", "buffer_size")  # resolved when a config is built
ALGORITHM_RESOLVED = ("random_support", "inner_lr", "meta_lr")  # resolved on use (MetaConfig.setting)
# Per-algorithm defaults of the algorithm-dependent fields (documented choices), used when the
# config leaves them None; resolved lazily (MetaConfig.setting), so a config keeps "unset" when
# it is re-targeted to another algorithm (compare.config_for) and an explicit value always wins.
# - context: trained on random-length support prefixes, so that it infers the task from
#   however few transitions a small budget gives (25 steps = one PointNav episode); it has
#   no inner loop and tolerates a larger meta learning rate (3e-3 measured better than 1e-3).
# - cavia: the context vector starts at 0 and needs a large inner step (CAVIA's paper uses
#   inner rates of 1-10 for the context parameters).
ALGORITHM_DEFAULTS: dict[str, dict[str, Any]] = {
    "context": {"random_support": True, "meta_lr": 3e-3},
    "cavia": {"inner_lr": 1.0, "meta_lr": 3e-3},
}


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """Static meta-training settings plus defaults for the traced :class:`MetaHParams`.

    Sizes: per meta-step ``num_tasks × envs_per_task × rollout_steps`` environment steps;
    per-task replay memory ``num_tasks × buffer_size`` transitions (see :func:`memory_bytes`).

    ``task_lifetime``, ``query_source`` and ``buffer_size`` left at ``None`` are resolved when the
    config is built: the family's recommendation (:attr:`TaskFamily.meta_defaults
    <metadqn_jax.tasks.family.TaskFamily>`), else :data:`LIBRARY_DEFAULTS`. The built config holds
    the concrete values (``dataclasses.replace(cfg, family=...)`` keeps them: pass ``None``
    again to re-resolve).
    """

    family: str = "pointnav-goal"  # a registered task family (metadqn_jax.tasks.family)
    algorithm: str = "maml"  # one of ALGORITHMS
    num_tasks: int = 32  # tasks per meta-step (the meta-batch, the task axis)
    envs_per_task: int = 4  # environments per task
    rollout_steps: int = 25  # steps of every environment per meta-step
    support_size: int = 100  # most recent transitions forming the support set
    buffer_size: int | None = None  # replay capacity per task, transitions (None: the family's, else 100)
    query_batch: int = 128  # query transitions per task per meta-step
    query_source: str | None = None  # "adapted": query from a rollout of the adapted policy
    #                                 "buffer": query sampled from the task's replay buffer
    #                                 (None: the family's recommendation, else "adapted")
    query_epsilon: float = 0.3  # ε of the adapted policy's query rollout
    task_lifetime: int | None = None  # meta-steps before a slot draws a new task (None: the family's, else 1)
    inner_steps: int = 5  # inner TD-gradient steps (k)
    inner_optimizer: str = "sgd"  # "sgd" or "adam" (adam: eps_root 1e-8 for 2nd order)
    adapt: str = "all"  # adapted parameters: "all" or "head" (ANIL)
    context_dim: int = 8  # CAVIA context / context-encoder output width
    encoder_hidden: tuple[int, ...] = (64,)  # context-encoder per-transition MLP (φ)
    encoder_post: tuple[int, ...] = ()  # context-encoder MLP after pooling (ρ; () = identity)
    random_support: bool | None = None  # train on random support prefixes (robust to small
    #                                     budgets); None: the algorithm's (ALGORITHM_DEFAULTS)
    online_context: bool = True  # context only (ignored otherwise): collect the support acting
    #                              on the context inferred online from each env's transitions so far
    context_decoder: float = 0.0  # context only: weight of an auxiliary loss that trains z to predict
    #                               the query's rewards and state changes (VariBAD-style decoder); 0: off
    context_refine: int = 0  # context only: damped Gauss-Newton steps that refine the encoder's z
    #                          against the decoder's residuals on the support (needs context_decoder > 0)
    context_refine_damping: float = 0.01  # initial damping λ of those steps (meta-learned, in log space)
    decoder_hidden: tuple[int, ...] = ()  # the decoder's hidden layers (() = the Q-network's ``hidden``)
    cavia_first_order: bool = False
    hidden: tuple[int, ...] = (64, 64)
    dueling: bool = False
    double: bool = True
    huber: bool = True
    max_grad_norm: float = 10.0  # meta-gradient global-norm clip (inf: off)
    task_micro_batch: int = 0  # 0: one vmap over all tasks; n: per-task meta-gradients n tasks
    #                            at a time (lax.map), a smaller working set (see BENCHMARKS.md)
    num_meta_steps: int = 2_000
    chunk_size: int = 100  # meta-steps per compiled call (logging granularity)
    # defaults of the traced hyper-parameters (gamma: None = the family's recommendation)
    # (inner_lr / meta_lr None: the algorithm's default, see ALGORITHM_DEFAULTS)
    inner_lr: float | None = None
    meta_lr: float | None = None
    weight_decay: float = 0.0
    gamma: float | None = None
    epsilon: float = 0.5
    tau: float = 0.95

    def __post_init__(self):
        require(self.algorithm in ALGORITHMS, "algorithm", f"one of {ALGORITHMS}", self.algorithm)
        try:
            family = tasks.get_family(self.family)
        except ValueError as e:
            raise ValueError(f"family: {e}") from None
        for name in FAMILY_RESOLVED:  # None: the family's recommendation
            if getattr(self, name) is None:
                object.__setattr__(self, name, family.meta_defaults.get(name, LIBRARY_DEFAULTS[name]))
        for name in ("num_tasks", "envs_per_task", "rollout_steps", "support_size", "buffer_size",
                     "query_batch", "task_lifetime", "num_meta_steps", "chunk_size", "context_dim"):
            positive_int(name, getattr(self, name))
        nonneg_int("inner_steps", self.inner_steps)
        nonneg_int("task_micro_batch", self.task_micro_batch)
        for name in ("hidden", "encoder_hidden", "encoder_post", "decoder_hidden"):
            value = tuple(int(h) for h in getattr(self, name))
            may_be_empty = name in ("encoder_post", "decoder_hidden")
            require((len(value) > 0 or may_be_empty) and all(h > 0 for h in value), name,
                    "a list of positive layer widths" if may_be_empty
                    else "a non-empty list of positive layer widths", getattr(self, name))
            object.__setattr__(self, name, value)
        per_step = self.envs_per_task * self.rollout_steps
        require(per_step <= self.buffer_size, "buffer_size",
                f">= envs_per_task * rollout_steps ({per_step})", self.buffer_size)
        require(self.support_size <= self.buffer_size, "support_size",
                f"<= buffer_size ({self.buffer_size})", self.support_size)
        require(self.inner_optimizer in ("sgd", "adam"), "inner_optimizer", "'sgd' or 'adam'", self.inner_optimizer)
        require(self.adapt in ("all", "head"), "adapt", "'all' or 'head'", self.adapt)
        require(self.query_source in ("adapted", "buffer"), "query_source", "'adapted' or 'buffer'",
                self.query_source)
        in_range("query_epsilon", self.query_epsilon, 0.0, 1.0)
        in_range("max_grad_norm", self.max_grad_norm, 0.0, math.inf, low_open=True)
        in_range("context_decoder", self.context_decoder, 0.0, math.inf)
        nonneg_int("context_refine", self.context_refine)
        in_range("context_refine_damping", self.context_refine_damping, 0.0, math.inf, low_open=True)
        require(self.context_refine == 0 or self.context_decoder > 0,
                "context_refine", "0 unless context_decoder > 0 (it refines z against the decoder)",
                self.context_refine)
        check_hparams(self.hparams(), META_HPARAM_RULES)

    @property
    def task_family(self) -> tasks.TaskFamily:
        return tasks.get_family(self.family)

    def setting(self, name: str) -> Any:
        """The value of an algorithm-dependent field (``random_support``, ``inner_lr``,
        ``meta_lr``): the config's own, or when it is ``None`` the algorithm's default
        (:data:`ALGORITHM_DEFAULTS`, else :data:`LIBRARY_DEFAULTS`)."""
        value = getattr(self, name)
        if value is not None:
            return value
        return ALGORITHM_DEFAULTS.get(self.algorithm, {}).get(name, LIBRARY_DEFAULTS[name])

    def hparams(self, **overrides) -> MetaHParams:
        """Traced hyper-parameters from this config's defaults (``overrides`` validated)."""
        values = {f: getattr(self, f) for f in MetaHParams._fields}
        if values["gamma"] is None:
            values["gamma"] = self.task_family.gamma
        for name in ALGORITHM_RESOLVED:
            if name in values:
                values[name] = self.setting(name)
        values.update(overrides)
        hp = as_hparams(MetaHParams, **values)
        check_hparams(hp, META_HPARAM_RULES)
        return hp

    @property
    def uses_context(self) -> bool:
        return self.algorithm in ("cavia", "context")

    @property
    def env_steps_per_meta_step(self) -> int:
        """Environment steps simulated per meta-step: the support rollout, plus the query
        rollout of the adapted policy when ``query_source == "adapted"``."""
        rollouts = 2 if self.query_source == "adapted" else 1
        return rollouts * self.num_tasks * self.envs_per_task * self.rollout_steps


# ---------------------------------------------------------------------------- learners
class OnlineContext(NamedTuple):
    """The O(1)-per-step form of a context learner, for acting *while* inferring the task.

    ``stats = (sum of embeddings [..., embed_dim], count [...])`` for any batch shape
    ``[...]`` (e.g. one entry per environment); ``z = ContextEncoder.readout(*stats)`` equals
    the batch encoder on the same transitions (:func:`encoder_sums`).
    """

    start: Callable  # (meta_params, support) -> stats [] of the task's transitions so far
    update: Callable  # (meta_params, stats, Transition [...]) -> stats, one more transition each
    task_params: Callable  # (meta_params, stats) -> TaskParams with ctx [..., context_dim]


class Learner(NamedTuple):
    """The pure functions that define one meta-learning algorithm.

    ``TaskParams = {"net": Q-network params, "ctx": float32 [context_dim]}``.
    ``Support = (Transition [S], mask [S] bool)``.
    """

    init: Callable  # (key) -> meta_params
    unadapted: Callable  # (meta_params) -> TaskParams, the policy before any data
    adapt: Callable  # (meta_params, target_params, support, hp) -> TaskParams
    q_values: Callable  # (TaskParams, obs [..., *obs_shape]) -> [..., num_actions]
    meta_grad: Callable  # (meta_params, target_params, support, query, hp) -> (grads, MetaMetrics)
    #   query: (Transition [Q], mask [Q]) or a function of the adapted TaskParams returning one
    #   (called on their stop_gradient; the adaptation is then shared with the meta-gradient)
    td_loss: Callable  # (task_params, target_net, (Transition, mask), hp) -> (loss, aux)
    online: OnlineContext | None = None  # the context learner's online form (else None)


class ContextEncoder(nn.Module):
    """Permutation-invariant set encoder (DeepSets): ``z = ρ(masked mean of φ(transition))``.

    ``(transitions [S, ...], mask [S]) -> z [context_dim]``. ``φ`` is an MLP with layers
    ``hidden``; ``ρ`` an MLP with layers ``post`` (``post = ()``: ``ρ`` is the identity and
    ``φ`` outputs ``context_dim`` directly). An empty set gives ``z = 0``.
    """

    hidden: tuple[int, ...]
    context_dim: int
    num_actions: int
    post: tuple[int, ...] = ()

    def features(self, tr: Transition) -> jax.Array:
        obs = tr.obs.reshape(tr.obs.shape[:1] + (-1,))
        nxt = tr.next_obs.reshape(tr.next_obs.shape[:1] + (-1,))
        act = jax.nn.one_hot(tr.action, self.num_actions)
        return jnp.concatenate(
            [obs, act, tr.reward[:, None], nxt, tr.terminated[:, None].astype(jnp.float32)], -1
        )

    @property
    def embed_dim(self) -> int:
        """Width of ``φ``'s output (what :func:`encoder_sums` sums)."""
        return self.hidden[-1] if self.post else self.context_dim

    def setup(self):
        self.phi = MLP(tuple(self.hidden) + (self.embed_dim,))
        self.rho = MLP(tuple(self.post) + (self.context_dim,)) if self.post else None

    def embed(self, tr: Transition) -> jax.Array:
        """Per-transition embeddings ``φ [S, embed_dim]``."""
        return self.phi(self.features(tr))

    def readout(self, total: jax.Array, count: jax.Array) -> jax.Array:
        """``z [..., context_dim]`` from embedding sums ``[..., embed_dim]`` and counts ``[...]``."""
        mean = total / jnp.maximum(count, 1.0)[..., None]
        if self.rho is None:
            return mean
        return jnp.where(count[..., None] > 0, self.rho(mean), 0.0)

    def __call__(self, tr: Transition, mask: jax.Array) -> jax.Array:
        w = mask.astype(jnp.float32)
        return self.readout((self.embed(tr) * w[:, None]).sum(0), w.sum())


def encoder_sums(enc: ContextEncoder, enc_params, tr: Transition, mask: jax.Array):
    """``(sum of embeddings [embed_dim], count)`` — the O(1)-updatable form of the encoder.

    ``z = enc.readout(sum, count)``; adding one transition adds its embedding and 1 to the count.
    """
    h = enc.apply(enc_params, tr, method=ContextEncoder.embed)
    w = mask.astype(jnp.float32)
    return (h * w[:, None]).sum(0), w.sum()


def make_learner(cfg: MetaConfig, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """Builds the :class:`Learner` of ``cfg.algorithm``."""
    ctx_dim = cfg.context_dim if cfg.uses_context else 0
    net = make_q_network(num_actions, cfg.hidden, dueling=cfg.dueling, context_dim=ctx_dim)
    enc = ContextEncoder(cfg.encoder_hidden, ctx_dim, num_actions, cfg.encoder_post)
    use_decoder = cfg.algorithm == "context" and cfg.context_decoder > 0
    use_refine = use_decoder and cfg.context_refine > 0
    obs_dim = math.prod(obs_shape)
    dec = MLP((cfg.decoder_hidden or cfg.hidden) + (1 + obs_dim,))  # (obs, one-hot action, z) -> (reward, Δobs)
    zeros_ctx = jnp.zeros((ctx_dim,), jnp.float32)

    def q_values(tp, obs):
        return net.apply(tp["net"], obs, tp["ctx"] if ctx_dim else None)

    def td(tp, target_net, batch, hp):
        transitions, mask = batch
        target = {"net": target_net, "ctx": tp["ctx"]}
        return losses.td_loss(tp, target, transitions, q_values, hp.gamma,
                              double=cfg.double, huber=cfg.huber, mask=mask)

    def init(key):
        k_net, k_enc = jax.random.split(key)
        params = {"net": net.init(k_net, jnp.zeros(obs_shape, jnp.float32), zeros_ctx if ctx_dim else None)}
        if cfg.algorithm == "context":
            dummy = Transition(jnp.zeros((1,) + obs_shape), jnp.zeros((1,), jnp.int32), jnp.zeros((1,)),
                               jnp.zeros((1,) + obs_shape), jnp.zeros((1,), bool), jnp.zeros((1,), bool))
            params["enc"] = enc.init(k_enc, dummy, jnp.ones((1,), bool))
        if use_decoder:
            params["dec"] = dec.init(jax.random.fold_in(k_enc, 1), jnp.zeros((obs_dim + num_actions + ctx_dim,)))
        if use_refine:
            params["refine_log_damping"] = jnp.log(jnp.asarray(cfg.context_refine_damping, jnp.float32))
        return params

    def unadapted(params):
        # the context takes the network's dtype (float64 networks stay float64, e.g. in tests)
        return {"net": params["net"], "ctx": zeros_ctx.astype(jax.tree.leaves(params["net"])[0].dtype)}

    if cfg.inner_optimizer == "sgd":
        inner_opt_fn = lambda lr: optax.sgd(lr)
    else:
        inner_opt_fn = lambda lr: optax.adam(lr, eps_root=1e-8)

    def adapt_mask(tp):
        if cfg.algorithm == "cavia":
            return {"net": jax.tree.map(lambda _: False, tp["net"]), "ctx": True}
        net_mask = head_mask(tp["net"]) if cfg.adapt == "head" else jax.tree.map(lambda _: True, tp["net"])
        return {"net": net_mask, "ctx": False}

    def gradient_adapt(params, target_params, support, hp, first_order=False):
        tp = unadapted(params)
        loss_fn = lambda p, b: td(p, target_params["net"], b, hp)
        adapted, _ = meta.adapt(tp, loss_fn, support, inner_opt=inner_opt_fn(hp.inner_lr),
                                num_steps=cfg.inner_steps, mask=adapt_mask(tp), first_order=first_order)
        return adapted

    def decoder_residuals(dec_params, z, batch):
        # the errors [S, 1 + obs_dim] of predicting each transition's reward and state change
        # from (obs, action, z), and the transition weights [S] (the mask)
        tr, mask = batch
        obs = tr.obs.reshape(tr.obs.shape[:1] + (-1,))
        x = jnp.concatenate([obs, jax.nn.one_hot(tr.action, num_actions, dtype=obs.dtype),
                             jnp.broadcast_to(z, obs.shape[:1] + z.shape)], -1)
        target = jnp.concatenate([tr.reward[:, None], tr.next_obs.reshape(obs.shape) - obs], -1)
        return dec.apply(dec_params, x) - target, mask.astype(obs.dtype)

    def decoder_loss(dec_params, z, batch):
        err, w = decoder_residuals(dec_params, z, batch)
        return ((err ** 2).sum(-1) * w).sum() / jnp.maximum(w.sum(), 1.0)

    def refine(params, z, support):
        # damped Gauss-Newton (Levenberg-Marquardt with a fixed, meta-learned damping λ) on the
        # decoder's mean squared residual over the support, k = context_refine steps of
        # z <- z - (J^T J + λ I)^-1 J^T r,  J = dr/dz [S * (1 + obs_dim), context_dim].
        # A fixed number of unconditional steps keeps it a smooth function that the meta-gradient
        # trains through (an accept / reject rule measured worse: BENCHMARKS.md §1).
        def residuals(z_):
            err, w = decoder_residuals(params["dec"], z_, support)
            return (err * jnp.sqrt(w / jnp.maximum(w.sum(), 1.0))[:, None]).reshape(-1)

        damping = jnp.exp(params["refine_log_damping"]).astype(z.dtype) * jnp.eye(z.shape[-1], dtype=z.dtype)

        def step(_, z_):
            r, jac = residuals(z_), jax.jacfwd(residuals)(z_)
            return z_ - jnp.linalg.solve(jac.T @ jac + damping, jac.T @ r)

        return jax.lax.fori_loop(0, cfg.context_refine, step, z)

    def context_adapt(params, target_params, support, hp):
        z = enc.apply(params["enc"], *support)
        if use_refine:  # semi-amortised inference: the encoder's z, refined against the decoder
            z = refine(params, z, support)
        return {"net": params["net"], "ctx": z}

    if cfg.algorithm == "context":

        def meta_grad(params, target_params, support, query, hp):
            def outer(p):
                tp = context_adapt(p, target_params, support, hp)
                q = query(jax.lax.stop_gradient(tp)) if callable(query) else query
                td_loss = td(tp, target_params["net"], q, hp)[0]
                if not use_decoder:
                    return td_loss, td_loss
                return td_loss + cfg.context_decoder * decoder_loss(p["dec"], tp["ctx"], q), td_loss

            (_, loss), grads = jax.value_and_grad(outer, has_aux=True)(params)
            m = meta.MetaMetrics(loss, loss, loss)  # the TD loss (the decoder's term is not in it)
            return grads, m

        def online_start(params, support):
            return encoder_sums(enc, params["enc"], *support)

        def online_update(params, stats, tr):
            flat_tr = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[stats[1].ndim:]), tr)
            h = enc.apply(params["enc"], flat_tr, method=ContextEncoder.embed)
            return stats[0] + h.reshape(stats[0].shape), stats[1] + 1.0

        def online_task_params(params, stats):
            return {"net": params["net"], "ctx": enc.apply(params["enc"], *stats, method=ContextEncoder.readout)}

        online = OnlineContext(online_start, online_update, online_task_params)
        return Learner(init, unadapted, context_adapt, q_values, meta_grad, td, online)

    def meta_grad(params, target_params, support, query, hp):
        tp = unadapted(params)
        loss_fn = lambda p, b: td(p, target_params["net"], b, hp)
        if cfg.algorithm == "pretrained":
            algo, steps = "fomaml", 0
        elif cfg.algorithm == "cavia":
            algo, steps = ("fomaml" if cfg.cavia_first_order else "maml"), cfg.inner_steps
        else:
            algo, steps = cfg.algorithm, cfg.inner_steps
        if callable(query) and (algo == "reptile" or cfg.algorithm == "pretrained"):
            # these adapt on (or score) something other than the query's policy: materialise it
            query = query(jax.lax.stop_gradient(gradient_adapt(params, target_params, support, hp)))
        reptile_batch = None
        if algo == "reptile":  # adapt on support ∪ query, as in the Reptile paper
            reptile_batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), support, query)
        grads, m = meta.meta_gradient(
            algo, tp, loss_fn, support, query, inner_opt=inner_opt_fn(hp.inner_lr),
            num_steps=steps, mask=adapt_mask(tp), reptile_batch=reptile_batch,
        )
        return {"net": grads["net"]}, m

    return Learner(init, unadapted, gradient_adapt, q_values, meta_grad, td)


def online_step(env, learner: Learner, params, state, key: jax.Array, env_params, epsilon):
    """One ε-greedy step of every environment acting on its *online* context, then the O(1)
    context update with the new transition. ``state = (EnvCarry [E], stats [E])`` (see
    :class:`OnlineContext`); returns ``(state, Transition [E])``. Scan it for an episode."""
    carry, stats = state
    k_act, k_env = jax.random.split(key)
    tp = learner.online.task_params(params, stats)
    actions = policies.epsilon_greedy(k_act, learner.q_values(tp, carry.obs), epsilon)
    carry, tr = rollout.env_step(env, k_env, carry, actions, env_params)
    return (carry, learner.online.update(params, stats, tr)), tr


def adapted_query(env, learner: Learner, cfg: MetaConfig, tp, key: jax.Array, env_params):
    """``(Transition [query_batch], all-true mask)``: a rollout of the ε-greedy (``query_epsilon``)
    *adapted* policy ``tp`` on fresh episodes of one task (``envs_per_task`` envs from reset,
    ``env_params`` leaves ``[E]``, ``rollout_steps`` steps). The meta-objective is the TD loss
    where the adapted policy goes, which is what its greedy return depends on."""
    L, E = cfg.rollout_steps, cfg.envs_per_task
    policy = lambda k, obs: policies.epsilon_greedy(k, learner.q_values(tp, obs), cfg.query_epsilon)
    k_reset, k_roll, k_pick = jax.random.split(key, 3)
    carry = rollout.init_carry(env, k_reset, env_params)
    _, tr = rollout.rollout(env, policy, carry, k_roll, env_params, L)
    tr = jax.tree.map(lambda x: x.reshape((L * E,) + x.shape[2:]), tr)
    idx = jax.random.randint(k_pick, (cfg.query_batch,), 0, L * E)
    return jax.tree.map(lambda x: x[idx], tr), jnp.ones((cfg.query_batch,), bool)


def online_start_stats(learner: Learner, meta_params, support, batch_shape=()):
    """The online context's statistics of ``support`` (``(Transition [S], mask [S])``), the same
    for every entry of ``batch_shape`` (e.g. each env of a task): leaves ``[*batch_shape, ...]``."""
    stats = learner.online.start(meta_params, support)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, tuple(batch_shape) + x.shape), stats)


def online_no_data_stats(learner: Learner, meta_params, obs_shape: tuple[int, ...], batch_shape=()):
    """The online context's statistics before any transition (``z = 0``), leaves ``[*batch_shape, ...]``."""
    empty = replay.recent(replay.init(example_transition(obs_shape), 1), 1)
    return online_start_stats(learner, meta_params, empty, batch_shape)


# -------------------------------------------------------------------------- meta-state
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


class MetaStepMetrics(NamedTuple):
    """Per meta-step diagnostics (leaves gain a ``[num_steps]`` axis under ``meta_train``)."""

    pre_adapt_loss: jax.Array  # float32, support TD loss before adaptation (mean over tasks)
    post_adapt_loss: jax.Array  # float32, support TD loss after adaptation
    query_loss: jax.Array  # float32, query TD loss after adaptation (the meta-objective)
    train_return: jax.Array  # float32, mean return of the last finished training episodes
    grad_norm: jax.Array  # float32, meta-gradient global norm


class MetaProgram(NamedTuple):
    """What :func:`make_meta_step` builds: the pure functions of one meta-training setup."""

    cfg: MetaConfig
    env: Any
    family: tasks.TaskFamily
    learner: Learner
    num_actions: int
    obs_shape: tuple[int, ...]
    init: Callable  # (key, hp) -> MetaState
    meta_step: Callable  # (state, hp) -> (state, MetaStepMetrics)


def make_meta_optimizer(hp: MetaHParams, max_grad_norm: float) -> optax.GradientTransformation:
    """AdamW with traced learning rate / weight decay (its state does not depend on them)."""
    adam = optax.adamw(hp.meta_lr, weight_decay=hp.weight_decay)
    if max_grad_norm == float("inf"):
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def tasks_per_env(task_params: Any, num_envs: int) -> Any:
    """``EnvParams [T]`` -> ``[T, num_envs]`` (each task's params repeated for its envs)."""
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x[:, None], (x.shape[0], num_envs) + x.shape[1:]), task_params
    )


def support_mask(key: jax.Array, mask: jax.Array, random_size: bool) -> jax.Array:
    """Optionally keeps only a random-length prefix (oldest first) of the valid support."""
    if not random_size:
        return mask
    n_valid = mask.sum()
    keep = jax.random.randint(key, (), 0, n_valid + 1)
    first_valid = mask.shape[0] - n_valid
    pos = jnp.arange(mask.shape[0])
    return mask & (pos < first_valid + keep)


def make_meta_step(cfg: MetaConfig) -> MetaProgram:
    """Builds ``init(key, hp) -> MetaState`` and ``meta_step(state, hp) -> (state, metrics)``.

    Both are pure; ``meta_step`` is the whole meta-iteration (acting, buffer writes,
    adaptation, meta-update) and is what :func:`meta_train` scans.
    """
    family = cfg.task_family
    env, base_params = family.env()
    num_actions = envs.num_actions(env, base_params)
    obs_shape = envs.obs_shape(env, base_params)
    learner = make_learner(cfg, num_actions, obs_shape)
    T, E, L = cfg.num_tasks, cfg.envs_per_task, cfg.rollout_steps

    def fresh_slots(key):
        k_tasks, k_reset = jax.random.split(key)
        task_params = family.sample(k_tasks, T, "train")
        carry = jax.vmap(rollout.init_carry, in_axes=(None, 0, 0))(
            env, jax.random.split(k_reset, T), tasks_per_env(task_params, E)
        )
        return task_params, carry

    def init(key: jax.Array, hp: MetaHParams) -> MetaState:
        k_params, k_slots, k_state = jax.random.split(key, 3)
        params = learner.init(k_params)
        task_params, carry = fresh_slots(k_slots)
        buffer = replay.init(example_transition(obs_shape), cfg.buffer_size)
        buffers = jax.tree.map(lambda x: jnp.broadcast_to(x, (T,) + x.shape), buffer)
        return MetaState(
            params=params,
            target_params=jax.tree.map(jnp.copy, params),  # distinct buffers (donation)
            opt_state=make_meta_optimizer(hp, cfg.max_grad_norm).init(params),
            tasks=task_params,
            carry=carry,
            buffers=buffers,
            step=jnp.zeros((), jnp.int32),
            key=k_state,
        )

    def meta_step(state: MetaState, hp: MetaHParams):
        key, k_slots, k_roll, k_query, k_support = jax.random.split(state.key, 5)
        # 1. new tasks every task_lifetime meta-steps (fresh envs and empty buffers)
        if cfg.task_lifetime == 1:
            task_params, carry = fresh_slots(k_slots)
            buffers = replay.clear(state.buffers)
        else:
            renew = state.step % cfg.task_lifetime == 0
            new_tasks, new_carry = fresh_slots(k_slots)
            pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(renew, x, y), a, b)
            task_params = pick(new_tasks, state.tasks)
            carry = pick(new_carry, state.carry)
            buffers = pick(replay.clear(state.buffers), state.buffers)
        # 2. act with the ε-greedy unadapted meta-policy (online_context: on the context of the
        #    task's buffer so far plus each env's own new transitions), write each task's buffer
        env_params = tasks_per_env(task_params, E)
        if cfg.online_context and learner.online is not None:
            def act(c, k, p, buf):
                if cfg.task_lifetime == 1:  # the buffer was just emptied: nothing to encode
                    stats = online_no_data_stats(learner, state.params, obs_shape, (E,))
                else:
                    stats = online_start_stats(learner, state.params, replay.recent(buf, cfg.support_size), (E,))
                step = lambda st, kk: online_step(env, learner, state.params, st, kk, p, hp.epsilon)
                (c, _), tr = jax.lax.scan(step, (c, stats), jax.random.split(k, L))
                return c, tr

            carry, trans = jax.vmap(act)(carry, jax.random.split(k_roll, T), env_params, buffers)
        else:
            act_tp = learner.unadapted(state.params)
            policy = lambda k, obs: policies.epsilon_greedy(k, learner.q_values(act_tp, obs), hp.epsilon)
            carry, trans = jax.vmap(lambda c, k, p: rollout.rollout(env, policy, c, k, p, L))(
                carry, jax.random.split(k_roll, T), env_params
            )
        trans = jax.tree.map(lambda x: x.reshape((T, L * E) + x.shape[3:]), trans)
        buffers = jax.vmap(replay.add)(buffers, trans)
        # 3. support: the most recent transitions (optionally a random prefix of them)
        support_tr, mask = jax.vmap(replay.recent, in_axes=(0, None))(buffers, cfg.support_size)
        mask = jax.vmap(support_mask, in_axes=(0, 0, None))(
            jax.random.split(k_support, T), mask, cfg.setting("random_support")
        )
        # 4. query: uniform from the task's buffer, or (built inside the learner's meta-gradient,
        #    from its adapted parameters) a rollout of the adapted policy; meta-gradient (mean
        #    over tasks), meta-update, Polyak meta-target
        if cfg.query_source == "buffer":
            query_tr = jax.vmap(replay.sample, in_axes=(0, 0, None))(
                buffers, jax.random.split(k_query, T), cfg.query_batch
            )
            queries = (query_tr, jnp.ones(query_tr.reward.shape, bool))
        else:  # a rollout of the adapted policy on fresh episodes of the same task
            queries = (jax.random.split(k_query, T), env_params)

        def task_meta_grad(support, query):
            if cfg.query_source == "adapted":  # the learner adapts once, for both uses
                k, p = query
                query = lambda tp: adapted_query(env, learner, cfg, tp, k, p)
            return learner.meta_grad(state.params, state.target_params, support, query, hp)

        if cfg.task_micro_batch and cfg.task_micro_batch < T:  # keeps the working set in cache
            grads, m = jax.lax.map(lambda a: task_meta_grad(*a), ((support_tr, mask), queries),
                                   batch_size=cfg.task_micro_batch)
        else:
            grads, m = jax.vmap(task_meta_grad)((support_tr, mask), queries)
        grads = jax.tree.map(lambda g: g.mean(0), grads)
        opt = make_meta_optimizer(hp, cfg.max_grad_norm)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        target = policies.polyak(state.target_params, params, hp.tau)
        finished = carry.episodes > 0
        train_ret = jnp.sum(jnp.where(finished, carry.last_return, 0.0)) / jnp.maximum(finished.sum(), 1)
        metrics = MetaStepMetrics(
            m.pre_adapt_loss.mean(), m.post_adapt_loss.mean(), m.query_loss.mean(),
            train_ret, optax.tree.norm(grads),
        )
        new_state = MetaState(params, target, opt_state, task_params, carry, buffers, state.step + 1, key)
        return new_state, metrics

    return MetaProgram(cfg, env, family, learner, num_actions, obs_shape, init, meta_step)


def meta_train(meta_step: Callable, state: MetaState, hp: MetaHParams, num_steps: int):
    """``num_steps`` meta-steps in one ``lax.scan``. Jit it (static ``num_steps``)::

        run = jax.jit(meta_train, static_argnums=(0, 3), donate_argnums=(1,))

    Returns ``(state, MetaStepMetrics with leaves [num_steps])``.
    """
    return jax.lax.scan(lambda s, _: meta_step(s, hp), state, None, length=num_steps)


def memory_bytes(cfg: MetaConfig, obs_shape: tuple[int, ...]) -> dict[str, int]:
    """Bytes of the per-task state: ``num_tasks × buffer_size × transition bytes`` + env obs.

    A transition is ``2 × obs (float32) + action (int32) + reward (float32) + 2 bools``.
    """
    obs_bytes = 4 * math.prod(obs_shape)
    transition = 2 * obs_bytes + 4 + 4 + 2
    buffers = cfg.num_tasks * cfg.buffer_size * transition
    return {"transition_bytes": transition, "replay_bytes": buffers,
            "per_task_replay_bytes": cfg.buffer_size * transition}
