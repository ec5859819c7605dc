"""The regressor of the sinusoid example (Finn et al. 2017: a ReLU MLP 1 -> 40 -> 40 -> 1) and its MSE loss."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from metadqn_jax.core.networks import MLP
from metadqn_jax.meta import gradient as meta


def make_regressor(hidden: Sequence[int] = (40, 40)) -> MLP:
    """The paper's regressor: a ReLU MLP ``[..., 1] -> [..., 1]`` with ``hidden`` widths."""
    hidden = tuple(int(h) for h in hidden)
    if not hidden or any(h <= 0 for h in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden}")
    return MLP(features=hidden + (1,))


def regressor_from_params(params) -> MLP:
    """Rebuilds the :class:`MLP` whose ``init`` produced ``params`` (widths from kernel shapes)."""
    layers = params["params"]
    n = len(layers)
    return MLP(features=tuple(int(layers[f"dense_{i}"]["kernel"].shape[1]) for i in range(n)))


def mse_loss(model: MLP) -> meta.LossFn:
    """The regression task loss for :mod:`metadqn_jax.meta.gradient`.

    Args:
      model: the regressor.

    Returns:
      ``loss_fn(params, batch) -> (mse, ())`` where ``batch = (x [k, 1], y [k, 1])`` and
      ``mse = mean((model(x) − y)²)`` (a scalar).
    """

    def loss_fn(params, batch):
        x, y = batch
        return jnp.mean((model.apply(params, x) - y) ** 2), ()

    return loss_fn
