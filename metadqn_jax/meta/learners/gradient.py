"""Gradient-based learners: adaptation is ``inner_steps`` optimiser steps on the support's TD loss.

One core (:func:`gradient_learner`) built on the loss-agnostic :mod:`metadqn_jax.meta.gradient`;
the factories differ only in their outer rule, the inner steps inside the meta-gradient, and
*what adapts* (a mask over the task parameters: all of the Q-network, its head, or — CAVIA,
:mod:`.cavia` — only the context vector).

* :func:`maml_learner` — MAML (Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast
  Adaptation of Deep Networks"): the second-order meta-gradient through the inner steps.
* :func:`fomaml_learner` — first-order MAML (same paper): the query gradient at the adapted
  parameters.
* :func:`reptile_learner` — Reptile (Nichol et al. 2018, "On First-Order Meta-Learning
  Algorithms"): ``θ − adapt(θ, support ∪ query)`` as the meta-"gradient".
* :func:`pretrained_learner` — the multi-task baseline: one DQN trained on the pooled training
  tasks (the query loss at the unadapted parameters, no inner steps in the meta-gradient); at
  test time it adapts with the same inner rule (``inner_steps`` at ``inner_lr``) as MAML.

``adapt="head"`` adapts only the output head (ANIL, Raghu et al. 2020): a mask, not a branch.
Settings read (beyond the shared ones): :data:`metadqn_jax.meta.defaults.GRADIENT_SETTINGS` (maml and fomaml:
:data:`~metadqn_jax.meta.defaults.MAML_SETTINGS`, which adds ``unadapted_weight``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from metadqn_jax.core.networks import head_mask
from metadqn_jax.core.optim import inner_optimizer
from metadqn_jax.meta import gradient as meta
from metadqn_jax.meta.learners.base import Learner, task_q

Mask = Callable  # (TaskParams) -> a pytree of Python bools like TaskParams: True where it adapts


def network_mask(adapt: str) -> Mask:
    """Adapt the whole Q-network (``"all"``) or only its output head (``"head"``, ANIL); never
    the context."""

    def mask(tp):
        net = head_mask(tp["net"]) if adapt == "head" else jax.tree.map(lambda _: True, tp["net"])
        return {"net": net, "ctx": False}

    return mask


def gradient_learner(
    cfg,
    num_actions: int,
    obs_shape: tuple[int, ...],
    *,
    rule: meta.Rule,
    mask: Mask,
    context_dim: int = 0,
    meta_steps: int | None = None,
    adapt_before_query: bool = False,
    precondition: Callable | None = None,
    unadapted_weight: float = 0.0,
) -> Learner:
    """The gradient-based learner core.

    Args:
      cfg: a :class:`~metadqn_jax.meta.config.MetaConfig` (reads the network fields,
        ``inner_steps`` and ``inner_optimizer``: SGD, or Adam with ``eps_root=1e-8`` so that a
        second-order meta-gradient through it stays finite).
      num_actions, obs_shape: the environment's.
      rule: the outer rule of :func:`metadqn_jax.meta.gradient.meta_gradient` (``"maml"``,
        ``"fomaml"`` or ``"reptile"``; Reptile adapts on support ∪ query, as in its paper).
      mask: what adapts (:func:`network_mask`, or CAVIA's context mask).
      context_dim: width of the adapted context input of the Q-network (0: none).
      meta_steps: inner steps inside the meta-gradient (default ``cfg.inner_steps``);
        ``adapt`` always takes ``cfg.inner_steps``.
      adapt_before_query: a query given as a function of the adapted parameters is rolled out
        with ``adapt``'s parameters before the meta-gradient (for rules whose meta-gradient does
        not adapt on the support alone).
      precondition: ``precondition(q_values) -> (params, grads, batch, aux) -> step`` (``aux``:
        the TD loss's :class:`~metadqn_jax.core.losses.TDAux`): each inner step
        becomes ``params - step`` (plain SGD on the preconditioned gradient, learning rate 1;
        ``inner_lr`` and ``inner_optimizer`` are not used), e.g. CAVIA's damped Gauss-Newton
        steps (:func:`metadqn_jax.meta.learners.cavia.gauss_newton`).
      unadapted_weight: ``w > 0`` adds ``w × ∇θ L_support(θ)``, the support's task loss (TD, plus
        the model term when ``cfg.model_loss > 0``) at the *unadapted* meta-parameters, to the
        meta-gradient: it trains the unadapted network too, whose Polyak average is the target
        network every TD target bootstraps from (the meta-objective alone constrains only the
        adapted network; why and what it measured: ``docs/design.md``, "Meta-training").

    The task loss of the inner steps and of the meta-objective is the TD loss, plus
    ``cfg.model_loss × `` the model head's squared error when ``cfg.model_loss > 0``
    (:func:`~metadqn_jax.meta.learners.base.task_q`): the head predicts each transition's reward
    and state change from the Q-network's last hidden layer, so an inner step on it moves the
    shared layers by what the support's *dynamics* say about the task, which a TD error on a
    constant reward says only through ``Q(s')``. ``Learner.td_loss`` (test-time fine-tuning)
    stays the TD loss.

    Returns:
      A :class:`Learner` whose meta-parameters are ``{"net": Q-network params}`` (a CAVIA
      context starts at 0 on every task and is not meta-learned); ``meta_grad`` returns
      gradients of the same structure.
    """
    q = task_q(cfg, num_actions, obs_shape, context_dim, model=cfg.model_loss > 0)
    meta_steps = cfg.inner_steps if meta_steps is None else meta_steps

    def task_loss(target_params, hp):  # (TaskParams, Support) -> (loss, TDAux)
        def loss(p, b):
            td, aux = q.td_loss(p, target_params["net"], b, hp)
            if q.model_loss is None:
                return td, aux
            return td + cfg.model_loss * q.model_loss(p, b), aux

        return loss

    def inner_opt(lr):
        if precondition is not None:  # the preconditioned gradient is the step itself
            return inner_optimizer("sgd", 1.0)
        return inner_optimizer(cfg.inner_optimizer, lr, eps_root=1e-8)

    step_precondition = None if precondition is None else precondition(q.q_values)

    def init(key):
        k_net, _ = jax.random.split(key)
        return {"net": q.init(k_net)}

    def adapt(params, target_params, support, hp):
        tp = q.unadapted(params)
        loss_fn = task_loss(target_params, hp)
        adapted, _ = meta.adapt(tp, loss_fn, support, inner_opt=inner_opt(hp.inner_lr),
                                num_steps=cfg.inner_steps, mask=mask(tp), first_order=False,
                                precondition=step_precondition)
        return adapted

    def meta_grad(params, target_params, support, query, hp):
        tp = q.unadapted(params)
        loss_fn = task_loss(target_params, hp)
        if callable(query) and adapt_before_query:
            query = query(jax.lax.stop_gradient(adapt(params, target_params, support, hp)))
        reptile_batch = None
        if rule == "reptile":  # adapt on support ∪ query, as in the Reptile paper
            reptile_batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), support, query)
        grads, m = meta.meta_gradient(
            rule, tp, loss_fn, support, query, inner_opt=inner_opt(hp.inner_lr),
            num_steps=meta_steps, mask=mask(tp), reptile_batch=reptile_batch, precondition=step_precondition,
        )
        if unadapted_weight > 0:  # train the unadapted network (and so the target) too
            anchor = jax.grad(lambda p: loss_fn(p, support)[0])(tp)
            grads = jax.tree.map(lambda g, a: g + unadapted_weight * a, grads, anchor)
        return {"net": grads["net"]}, m

    return Learner(init, q.unadapted, adapt, q.q_values, meta_grad, q.td_loss, adapt_mask=mask)


def maml_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """MAML: the second-order meta-gradient through ``inner_steps`` inner steps."""
    return gradient_learner(cfg, num_actions, obs_shape, rule="maml", mask=network_mask(cfg.adapt),
                            unadapted_weight=cfg.unadapted_weight)


def fomaml_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """First-order MAML: the query gradient at the adapted parameters."""
    return gradient_learner(cfg, num_actions, obs_shape, rule="fomaml", mask=network_mask(cfg.adapt),
                            unadapted_weight=cfg.unadapted_weight)


def reptile_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """Reptile on support ∪ query; an adapted-policy query is rolled out with the support's adaptation."""
    return gradient_learner(cfg, num_actions, obs_shape, rule="reptile", mask=network_mask(cfg.adapt),
                            adapt_before_query=True)


def pretrained_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """The multi-task baseline: the query TD gradient at the unadapted parameters (no inner
    steps); an adapted-policy query is still rolled out by the adapted policy, and test time
    adapts like MAML."""
    return gradient_learner(cfg, num_actions, obs_shape, rule="fomaml", mask=network_mask(cfg.adapt),
                            meta_steps=0, adapt_before_query=True)
