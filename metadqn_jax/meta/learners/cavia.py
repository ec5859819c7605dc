"""CAVIA (Zintgraf et al. 2019, "Fast Context Adaptation via Meta-Learning"): only a context
vector ``φ`` (``context_dim``, ``φ₀ = 0``) concatenated to the observation adapts; the network is
shared and meta-learned through the second-order meta-gradient (``cavia_first_order=True``:
first-order).

The gradient-learner core of :mod:`.gradient` with a mask over what adapts: the context, not the
network. Settings read (beyond the shared ones): :data:`metadqn_jax.meta.defaults.CAVIA_SETTINGS`;
defaults: :data:`metadqn_jax.meta.defaults.CAVIA_DEFAULTS`.
"""

from __future__ import annotations

import jax

from metadqn_jax.meta.learners.base import Learner
from metadqn_jax.meta.learners.gradient import gradient_learner


def context_mask(tp):
    """Only the context ``ctx`` adapts; the Q-network is shared by all tasks."""
    return {"net": jax.tree.map(lambda _: False, tp["net"]), "ctx": True}


def cavia_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """CAVIA. Meta-parameters ``{"net": ...}``; task parameters ``{"net": shared, "ctx": φ}``
    with ``φ`` after ``inner_steps`` steps from 0 on the support's TD loss."""
    rule = "fomaml" if cfg.cavia_first_order else "maml"
    return gradient_learner(cfg, num_actions, obs_shape, rule=rule, mask=context_mask,
                            context_dim=cfg.context_dim)
