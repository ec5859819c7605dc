"""The context learner: a permutation-invariant encoder infers a task context ``z`` from the
support transitions; ``Q(s, a, z)`` is trained end to end; no inner gradient steps.

In the family of amortised task inference (PEARL, Rakelly et al. 2019, "Efficient Off-Policy
Meta-Reinforcement Learning via Probabilistic Context Variables"; VariBAD, Zintgraf et al. 2020,
"VariBAD: A Very Good Method for Bayes-Adaptive Deep RL via Meta-Learning"), deterministic:

* encoder (:class:`ContextEncoder`): ``z = ρ(masked mean of φ(transition))`` (DeepSets);
* decoder (``context_decoder > 0``): a VariBAD-style auxiliary loss, an MLP
  ``(obs, one-hot action, z) -> (reward, next_obs - obs)`` scored on the query transitions, whose
  gradient reaches only the encoder and the decoder;
* refinement (``context_refine = k > 0``, needs the decoder): semi-amortised inference, the
  encoder's ``z`` refined by ``k`` damped Gauss-Newton (Levenberg-Marquardt) steps that fit the
  decoder to the support's rewards and state changes (the damping is meta-learned, in log space);
  everything is trained through the refinement;
* online form (:class:`~metadqn_jax.meta.learners.base.OnlineContext`): the encoder's running
  sums, O(1) per step, for acting while inferring (the refinement is not part of it).

Meta-parameters: ``{"net", "enc"[, "dec"][, "refine_log_damping"]}``. Settings read (beyond the
shared ones): :data:`metadqn_jax.meta.defaults.CONTEXT_SETTINGS`; defaults:
:data:`metadqn_jax.meta.defaults.CONTEXT_DEFAULTS`. Design and measurements: ``docs/design.md``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from metadqn_jax.core.networks import MLP
from metadqn_jax.core.types import Transition, example_transition
from metadqn_jax.meta import gradient as meta
from metadqn_jax.meta.learners.base import Learner, OnlineContext, task_q


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
        """``[S, 2 * obs_dim + num_actions + 2]``: obs, one-hot action, reward, next obs, terminated."""
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


def decoder_residuals(dec: MLP, num_actions: int, dec_params, z: jax.Array, batch):
    """The errors ``[S, 1 + obs_dim]`` of predicting each transition's reward and state change
    from ``(obs, action, z)``, and the transition weights ``[S]`` (the mask)."""
    tr, mask = batch
    obs = tr.obs.reshape(tr.obs.shape[:1] + (-1,))
    x = jnp.concatenate([obs, jax.nn.one_hot(tr.action, num_actions, dtype=obs.dtype),
                         jnp.broadcast_to(z, obs.shape[:1] + z.shape)], -1)
    target = jnp.concatenate([tr.reward[:, None], tr.next_obs.reshape(obs.shape) - obs], -1)
    return dec.apply(dec_params, x) - target, mask.astype(obs.dtype)


def decoder_loss(dec: MLP, num_actions: int, dec_params, z: jax.Array, batch) -> jax.Array:
    """Masked mean over transitions of the squared decoder error (summed over its outputs)."""
    err, w = decoder_residuals(dec, num_actions, dec_params, z, batch)
    return ((err ** 2).sum(-1) * w).sum() / jnp.maximum(w.sum(), 1.0)


def refine(dec: MLP, num_actions: int, num_steps: int, params, z: jax.Array, support) -> jax.Array:
    """``num_steps`` damped Gauss-Newton (Levenberg-Marquardt, fixed meta-learned damping
    ``λ = exp(params["refine_log_damping"])``) steps on the decoder's mean squared residual over
    the support: ``z <- z - (JᵀJ + λI)⁻¹ Jᵀr`` with ``J = dr/dz [S * (1 + obs_dim), context_dim]``.

    A fixed number of unconditional steps keeps it a smooth function that the meta-gradient
    trains through. Masked (padding) transitions do not count; an empty support keeps ``z``.
    """

    def residuals(z_):
        err, w = decoder_residuals(dec, num_actions, params["dec"], z_, support)
        return (err * jnp.sqrt(w / jnp.maximum(w.sum(), 1.0))[:, None]).reshape(-1)

    damping = jnp.exp(params["refine_log_damping"]).astype(z.dtype) * jnp.eye(z.shape[-1], dtype=z.dtype)

    def step(_, z_):
        r, jac = residuals(z_), jax.jacfwd(residuals)(z_)
        return z_ - jnp.linalg.solve(jac.T @ jac + damping, jac.T @ r)

    return jax.lax.fori_loop(0, num_steps, step, z)


def context_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """The context learner of ``cfg`` (a :class:`~metadqn_jax.meta.config.MetaConfig`).

    ``adapt`` encodes the support (and refines ``z`` with ``context_refine``); ``meta_grad`` is
    the gradient of the query TD loss at ``{"net", "ctx": z}`` (plus ``zero_context`` × the same
    loss at ``z = 0``, the policy before any data, and ``context_decoder`` × the decoder loss on
    the query) through the encoder; its metrics report the TD loss at ``z`` in all three fields. The learner has an :class:`OnlineContext`.
    """
    ctx_dim = cfg.context_dim
    q = task_q(cfg, num_actions, obs_shape, ctx_dim)
    enc = ContextEncoder(cfg.encoder_hidden, ctx_dim, num_actions, cfg.encoder_post)
    use_decoder = cfg.context_decoder > 0
    use_refine = use_decoder and cfg.context_refine > 0
    obs_dim = math.prod(obs_shape)
    dec = MLP((cfg.decoder_hidden or cfg.hidden) + (1 + obs_dim,))  # (obs, one-hot action, z) -> (reward, Δobs)

    def init(key):
        k_net, k_enc = jax.random.split(key)
        params = {"net": q.init(k_net)}
        dummy = jax.tree.map(lambda x: x[None], example_transition(obs_shape))
        params["enc"] = enc.init(k_enc, dummy, jnp.ones((1,), bool))
        if use_decoder:
            params["dec"] = dec.init(jax.random.fold_in(k_enc, 1), jnp.zeros((obs_dim + num_actions + ctx_dim,)))
        if use_refine:
            params["refine_log_damping"] = jnp.log(jnp.asarray(cfg.context_refine_damping, jnp.float32))
        return params

    def adapt(params, target_params, support, hp):
        z = enc.apply(params["enc"], *support)
        if use_refine:  # semi-amortised inference: the encoder's z, refined against the decoder
            z = refine(dec, num_actions, cfg.context_refine, params, z, support)
        return {"net": params["net"], "ctx": z}

    def meta_grad(params, target_params, support, query, hp):
        def outer(p):
            tp = adapt(p, target_params, support, hp)
            q_batch = query(jax.lax.stop_gradient(tp)) if callable(query) else query
            td_loss = q.td_loss(tp, target_params["net"], q_batch, hp)[0]
            total = td_loss
            if cfg.zero_context > 0:  # the policy at z = 0 (no data yet) learns as the pretrained network does
                total = total + cfg.zero_context * q.td_loss(q.unadapted(p), target_params["net"], q_batch, hp)[0]
            if use_decoder:
                total = total + cfg.context_decoder * decoder_loss(dec, num_actions, p["dec"], tp["ctx"], q_batch)
            return total, td_loss

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
    return Learner(init, q.unadapted, adapt, q.q_values, meta_grad, q.td_loss, online)
