"""Optimisers and target updates shared by DQN, meta-DQN, few-shot fine-tuning and regression.

Every learning rate may be a traced array (optax keeps it out of the optimiser state), so a
sweep over learning rates is one ``vmap`` and never recompiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

INNER_OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


def clipped_adam(lr, max_grad_norm: float, *, weight_decay=None) -> optax.GradientTransformation:
    """Adam (AdamW when ``weight_decay`` is given) after global-norm clipping of the gradient.

    Args:
      lr: learning rate, a float or a traced scalar.
      max_grad_norm: clip threshold of the global gradient norm; ``inf`` turns clipping off.
      weight_decay: decoupled weight decay (a float or traced scalar); ``None``: plain Adam.
    """
    adam = optax.adam(lr) if weight_decay is None else optax.adamw(lr, weight_decay=weight_decay)
    if max_grad_norm == float("inf"):
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def inner_optimizer(name: str, lr, *, eps_root: float = 0.0) -> optax.GradientTransformation:
    """The optimiser of an inner (adaptation) loop: ``"sgd"`` or ``"adam"``.

    ``eps_root > 0`` keeps Adam's ``sqrt(v)`` differentiable at ``v = 0``, which a second-order
    meta-gradient through the inner steps needs (see :mod:`metadqn_jax.meta.gradient`).
    """
    if name == "sgd":
        return optax.sgd(lr)
    if name == "adam":
        return optax.adam(lr, eps_root=eps_root)
    raise ValueError(f"inner optimiser must be one of {INNER_OPTIMIZERS}, got {name!r}")


def polyak_update(target_params, online_params, tau):
    """Target-network update ``target <- tau * target + (1 - tau) * online`` (``tau = 0.98``
    keeps 98 % of the old target). ``tau`` may be traced."""
    return optax.incremental_update(online_params, target_params, 1.0 - tau)


def linear_epsilon(step, start, end, decay_steps):
    """ε after ``step`` environment steps: linear from ``start`` to ``end`` over ``decay_steps``,
    then ``end``. Every argument may be traced (float32 scalars)."""
    return end + (start - end) * jnp.clip(1.0 - step / decay_steps, 0.0, 1.0)


def is_prng_key(x) -> bool:
    """True for a new-style typed PRNG key array (``jax.random.key``)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
