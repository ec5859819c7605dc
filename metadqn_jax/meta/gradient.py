"""The generic gradient-based meta-learning core, shared by meta-DQN and meta-regression.

Nothing here knows about Q-networks or environments: a *task loss* is any
``loss_fn(params, batch) -> (scalar, aux)``. The three outer rules are:

* ``"maml"``    — second order: ``grad_θ L_query(adapt(θ, support))``, differentiating
  through the inner optimiser steps.
* ``"fomaml"``  — first order: the query gradient at the adapted parameters,
  ``grad_θ' L_query(θ')`` with ``θ' = adapt(θ, support)`` (inner gradients held constant).
* ``"reptile"`` — ``θ − adapt(θ, support ∪ query)`` used as the meta-"gradient"
  (with plain SGD at rate ε this is Reptile's ``θ ← θ + ε (θ' − θ)``).

All three return a gradient-like pytree so that any optax meta-optimiser applies it.
Everything is a pure function of its inputs; batch over tasks with :func:`batched_meta_gradient`
(one ``vmap``), which also averages over the task axis (under ``jit`` with a sharded task
axis the compiler inserts the cross-device mean).

Example: one task whose loss is ``(θ − c)² / 2`` for a batch ``c``; one SGD step at rate 0.5
from ``θ = 0`` on the support ``c = 1`` gives ``θ' = 0.5``; the query ``c = 2`` then gives the
first-order gradient ``θ' − 2 = −1.5`` and MAML's ``(θ' − 2)(1 − 0.5) = −0.75``:

>>> import jax.numpy as jnp, optax
>>> from metadqn_jax.meta.gradient import meta_gradient
>>> loss = lambda p, c: (jnp.mean((p - c) ** 2) / 2, ())
>>> support, query = jnp.array([1.0]), jnp.array([2.0])
>>> for rule in ("fomaml", "maml"):
...     g, m = meta_gradient(rule, jnp.float32(0.0), loss, support, query, inner_opt=optax.sgd(0.5), num_steps=1)
...     print(rule, float(g), float(m.query_loss))
fomaml -1.5 1.125
maml -0.75 1.125

Second-order MAML through an adaptive inner optimiser: ``optax.adam`` takes ``sqrt(v)``, whose
derivative is infinite at ``v = 0``; use ``optax.adam(lr, eps_root=1e-8)`` there.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

# the outer rules (not the learners of metadqn_jax.meta.defaults.ALGORITHMS, which combine a rule
# with what adapts: maml / fomaml / reptile / pretrained on the network, cavia on a context)
Rule = Literal["maml", "fomaml", "reptile"]
RULES: tuple[str, ...] = typing.get_args(Rule)
LossFn = Callable[[Any, Any], tuple[jax.Array, Any]]


class MetaMetrics(NamedTuple):
    """Per-task diagnostics of one meta-gradient (leaves gain a task axis under vmap)."""

    pre_adapt_loss: jax.Array  # shape=() float32: support loss at θ (before adapting)
    post_adapt_loss: jax.Array  # shape=() float32: support loss after the last inner step
    query_loss: jax.Array  # shape=() float32: query loss at the adapted parameters


def apply_mask(tree, mask):
    """``tree`` with zeros where ``mask`` (a pytree of Python bools like ``tree``, or ``None``: keep
    all) is False: the projection onto what adapts (e.g. ``Learner.adapt_mask``)."""
    if mask is None:
        return tree
    return jax.tree.map(lambda x, m: x if m else jnp.zeros_like(x), tree, mask)


def adapt(
    params,
    loss_fn: LossFn,
    support,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    mask=None,
    first_order: bool = False,
    precondition: Callable | None = None,
) -> tuple[Any, jax.Array]:
    """``num_steps`` inner optimiser steps on ``loss_fn(·, support)`` from ``params``.

    Differentiable in ``params`` (MAML differentiates through it). The steps run in a
    ``lax.scan``, so the program size does not grow with ``num_steps``.

    Args:
      params: starting (meta-)parameters.
      loss_fn: ``loss_fn(params, batch) -> (loss, aux)``.
      support: the batch every inner step is computed on (full-batch inner steps).
      inner_opt: optax transformation for the inner loop (build it inside the traced
        function, e.g. ``optax.sgd(hp.inner_lr)``, to keep its learning rate traced).
      num_steps: number of inner steps (static; 0 returns ``params`` unchanged).
      mask: optional pytree of Python bools like ``params``: only True leaves adapt
        (e.g. :func:`metadqn_jax.core.networks.head_mask` for ANIL-style head-only adaptation).
      first_order: hold inner gradients constant (FOMAML; no second-order terms).
      precondition: optional ``precondition(params, grads, batch, aux) -> grads`` (``aux``:
        ``loss_fn``'s at ``params``), applied to each inner step's masked gradient before
        ``inner_opt`` (e.g. CAVIA's damped Gauss-Newton step on its context,
        :func:`metadqn_jax.meta.learners.cavia.gauss_newton`); a second-order meta-gradient
        differentiates through it.

    Returns:
      ``(adapted_params, losses [num_steps + 1])``: the support loss before each step and
      after the last one.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    opt_state = inner_opt.init(params)

    def step(carry, _):
        p, s = carry
        (loss, aux), g = grad_fn(p, support)
        g = apply_mask(g, mask)
        if precondition is not None:
            g = apply_mask(precondition(p, g, support, aux), mask)
        if first_order:
            g = jax.lax.stop_gradient(g)
        updates, s = inner_opt.update(g, s, p)
        updates = apply_mask(updates, mask)
        return (optax.apply_updates(p, updates), s), loss

    (adapted, _), losses = jax.lax.scan(step, (params, opt_state), None, length=num_steps)
    final_loss, _ = loss_fn(adapted, support)
    return adapted, jnp.concatenate([losses, final_loss[None]])


def meta_gradient(
    algorithm: Rule,
    params,
    loss_fn: LossFn,
    support,
    query,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    mask=None,
    query_loss_fn: LossFn | None = None,
    reptile_batch=None,
    precondition: Callable | None = None,
) -> tuple[Any, MetaMetrics]:
    """The meta-gradient of one task.

    Args:
      algorithm: ``"maml"``, ``"fomaml"`` or ``"reptile"``.
      params: meta-parameters θ.
      loss_fn: inner (support) loss.
      support, query: the task's support and query batches. ``query`` may also be a function
        ``query(adapted_params) -> batch`` (called on ``stop_gradient`` of the adapted
        parameters, e.g. a rollout of the adapted policy): the adaptation is then computed
        once and shared by the query and the meta-gradient. Reptile adapts on
        ``reptile_batch``, so with a callable query it adapts on ``support`` first for it.
      inner_opt, num_steps, mask, precondition: see :func:`adapt`.
      query_loss_fn: outer loss (defaults to ``loss_fn``).
      reptile_batch: the data Reptile adapts on (defaults to ``support``; pass the union
        of support and query to follow the Reptile paper).

    Returns:
      ``(grads, MetaMetrics)``; ``grads`` has the structure of ``params``.
    """
    if algorithm not in RULES:
        raise ValueError(f"unknown meta algorithm {algorithm!r}; choose one of {RULES}")
    query_loss_fn = query_loss_fn or loss_fn
    kw = dict(inner_opt=inner_opt, num_steps=num_steps, mask=mask, precondition=precondition)
    get_query = query if callable(query) else (lambda _: query)

    if algorithm == "maml":

        def outer(p):
            adapted, losses = adapt(p, loss_fn, support, **kw)
            q_loss, _ = query_loss_fn(adapted, get_query(jax.lax.stop_gradient(adapted)))
            return q_loss, losses

        (q_loss, losses), grads = jax.value_and_grad(outer, has_aux=True)(params)
    elif algorithm == "fomaml":
        adapted, losses = adapt(params, loss_fn, support, first_order=True, **kw)
        adapted = jax.lax.stop_gradient(adapted)
        (q_loss, _), grads = jax.value_and_grad(query_loss_fn, has_aux=True)(adapted, get_query(adapted))
    else:  # reptile
        if callable(query):
            query = query(jax.lax.stop_gradient(adapt(params, loss_fn, support, first_order=True, **kw)[0]))
        batch = support if reptile_batch is None else reptile_batch
        adapted, losses = adapt(params, loss_fn, batch, first_order=True, **kw)
        adapted = jax.lax.stop_gradient(adapted)
        grads = jax.tree.map(lambda a, b: a - b, params, adapted)
        q_loss, _ = query_loss_fn(adapted, query)
    metrics = MetaMetrics(losses[0], losses[-1], q_loss)
    return grads, jax.lax.stop_gradient(metrics)


def batched_meta_gradient(
    algorithm: Rule,
    params,
    loss_fn: LossFn,
    supports,
    queries,
    **kwargs,
) -> tuple[Any, MetaMetrics]:
    """:func:`meta_gradient` vmapped over a leading task axis of ``supports``/``queries``
    (and of ``reptile_batch`` if given), averaged over tasks.

    ``loss_fn`` may also take per-task extras by closing over them; for losses that need
    per-task arguments use :func:`meta_gradient` under your own ``vmap``.

    Returns:
      ``(mean_grads, MetaMetrics with leaves [num_tasks])``.
    """
    reptile_batch = kwargs.pop("reptile_batch", None)

    def one(s, q, r):
        return meta_gradient(algorithm, params, loss_fn, s, q, reptile_batch=r, **kwargs)

    grads, metrics = jax.vmap(one)(supports, queries, reptile_batch)
    return jax.tree.map(lambda g: g.mean(axis=0), grads), metrics
