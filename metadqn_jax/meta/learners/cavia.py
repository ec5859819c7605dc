"""CAVIA (Zintgraf et al. 2019, "Fast Context Adaptation via Meta-Learning"): only a context
vector ``φ`` (``context_dim``, ``φ₀ = 0``) concatenated to the observation adapts; the network is
shared and meta-learned through the second-order meta-gradient (``cavia_first_order=True``:
first-order).

The context adapts by ``inner_steps`` SGD steps at ``inner_lr`` (the paper's), or with
``cavia_damping = μ > 0`` by damped Gauss-Newton (Levenberg-Marquardt) steps
``φ ← φ − (G + μI)⁻¹ g`` (:func:`gauss_newton`): with SGD steps the second-order meta-gradient
is free to sharpen the support loss in ``φ`` until ``inner_lr ×`` its curvature passes 2 and an
inner step is unstable; a Gauss-Newton step contracts every direction whatever its curvature (by
``μ / (λ + μ)`` along an eigen-direction of ``G`` with eigenvalue ``λ``), and ``φ`` has only
``context_dim`` entries, so ``G`` is a small matrix. What diverged and how fast:
``docs/design.md``, "Meta-training".

The gradient-learner core of :mod:`.gradient` with a mask over what adapts: the context, not the
network. Settings read (beyond the shared ones): :data:`metadqn_jax.meta.defaults.CAVIA_SETTINGS`;
defaults: :data:`metadqn_jax.meta.defaults.CAVIA_DEFAULTS`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from metadqn_jax.meta.learners.base import Learner
from metadqn_jax.meta.learners.gradient import gradient_learner


def context_mask(tp):
    """Only the context ``ctx`` adapts; the Q-network is shared by all tasks."""
    return {"net": jax.tree.map(lambda _: False, tp["net"]), "ctx": True}


def gauss_newton(damping: float, *, huber: bool, huber_delta: float = 1.0) -> Callable:
    """CAVIA's damped Gauss-Newton step on the context, as a preconditioner of
    :func:`metadqn_jax.meta.gradient.adapt`.

    For the masked TD loss ``L(φ) = Σᵢ wᵢ ρ(eᵢ(φ)) / Σᵢ wᵢ`` (``ρ`` the Huber or half-squared
    loss, ``e [B]`` the TD errors ``yᵢ − Q(sᵢ, aᵢ; φ)`` with the target ``y`` held constant,
    ``w [B]`` the support mask) the gradient is ``g = −Jᵀ ρ'(e) / Σw`` with
    ``J = dQ(sᵢ, aᵢ; φ)/dφ [B, context_dim]`` and the Gauss-Newton matrix is
    ``G = Jᵀ diag(w ρ''(e)) J / Σw`` (``ρ'' = 1`` inside the Huber threshold, 0 outside). The
    step returned for ``ctx`` is ``(G + damping·I)⁻¹ g``; the network's entries are returned as
    given (the mask zeroes them). ``J`` is one batched backward pass (per-example gradients of
    ``Q(sᵢ, aᵢ)``), not a Jacobian of the whole loss.

    Args:
      damping: ``μ > 0``.
      huber: whether the TD loss is the Huber loss (threshold ``huber_delta``).

    Returns:
      ``precondition(q_values) -> (tp, grads, batch, aux) -> step``, with ``q_values(tp, obs)
      -> [..., num_actions]`` and ``aux.td_error`` the masked TD errors ``[B]``.
    """

    def make(q_values):
        def precondition(tp, grads, batch, aux):
            transitions, mask = batch
            q_sa = lambda ctx, obs, a: q_values({**tp, "ctx": ctx}, obs)[a]
            jac = jax.vmap(jax.grad(q_sa), in_axes=(None, 0, 0))(
                tp["ctx"], transitions.obs, transitions.action.astype(jnp.int32))  # [B, context_dim]
            e = aux.td_error
            m = mask.astype(e.dtype)
            curv = (jnp.abs(e) <= huber_delta).astype(e.dtype) if huber else jnp.ones_like(e)
            w = m * curv / jnp.maximum(m.sum(), 1.0)
            gn = jac.T @ (w[:, None] * jac) + damping * jnp.eye(jac.shape[-1], dtype=e.dtype)
            return {**grads, "ctx": jnp.linalg.solve(gn, grads["ctx"])}

        return precondition

    return make


def cavia_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """CAVIA. Meta-parameters ``{"net": ...}``; task parameters ``{"net": shared, "ctx": φ}``
    with ``φ`` after ``inner_steps`` steps from 0 on the support's TD loss (SGD at
    ``inner_lr``; with ``cfg.cavia_damping > 0``, damped Gauss-Newton steps)."""
    rule = "fomaml" if cfg.cavia_first_order else "maml"
    precondition = gauss_newton(cfg.cavia_damping, huber=cfg.huber) if cfg.cavia_damping > 0 else None
    return gradient_learner(cfg, num_actions, obs_shape, rule=rule, mask=context_mask,
                            context_dim=cfg.context_dim, precondition=precondition)
