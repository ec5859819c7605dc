"""Q-networks (flax.linen): an MLP with an optional dueling head and optional task context.

``QNetwork.apply(params, obs)`` maps ``obs [..., obs_dim]`` to ``q [..., num_actions]``.
With ``context_dim > 0`` the network takes a context vector ``z [..., context_dim]`` that is
concatenated to the observation (CAVIA's context parameters or a context encoder's output).
With ``model_outputs = m > 0`` it also has a *model head* on its last hidden layer,
``net.apply(params, obs, with_model=True) -> (q [..., num_actions], model [..., num_actions, m])``:
a prediction per action (e.g. the reward and state change of taking it) that shares the torso
with the Q-values, so that a gradient step on its error moves the Q-values too.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


ACTIVATIONS = {"relu": nn.relu, "swish": nn.swish}


class MLP(nn.Module):
    """A ReLU MLP: ``[..., d_in] -> [..., features[-1]]`` (no activation after the last layer)."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, f in enumerate(self.features):
            x = nn.Dense(f, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x


class QNetwork(nn.Module):
    """Action values ``Q(s, ·[, z])``.

    Attributes:
      num_actions: size of the discrete action space.
      hidden: hidden layer widths (default 64-64).
      dueling: use a dueling head ``V(s) + A(s, a) - mean_a A(s, a)``.
      context_dim: width of an optional task-context input (0: none).
      activation: ``"relu"`` or ``"swish"`` for the hidden layers.
      model_outputs: width ``m`` of the optional model head's prediction per action (0: none;
        initialise with ``with_model=True`` so that its parameters exist).
    """

    num_actions: int
    hidden: Sequence[int] = (64, 64)
    dueling: bool = False
    context_dim: int = 0
    activation: str = "relu"
    model_outputs: int = 0

    @nn.compact
    def __call__(self, obs: jax.Array, context: jax.Array | None = None, with_model: bool = False):
        act = ACTIVATIONS[self.activation]
        x = obs.reshape(obs.shape[: obs.ndim - 1] + (-1,)).astype(jnp.float32)
        if self.context_dim:
            if context is None:
                context = jnp.zeros(x.shape[:-1] + (self.context_dim,), x.dtype)
            context = jnp.broadcast_to(context, x.shape[:-1] + (self.context_dim,))
            x = jnp.concatenate([x, context], axis=-1)
        for i, f in enumerate(self.hidden):
            x = act(nn.Dense(f, name=f"hidden_{i}")(x))
        if not self.dueling:
            q = nn.Dense(self.num_actions, name="head")(x)
        else:
            value = nn.Dense(1, name="value")(x)
            adv = nn.Dense(self.num_actions, name="head")(x)
            q = value + adv - adv.mean(axis=-1, keepdims=True)
        if not with_model:
            return q
        if not self.model_outputs:
            raise ValueError("with_model=True needs a network built with model_outputs > 0")
        model = nn.Dense(self.num_actions * self.model_outputs, name="model")(x)
        return q, model.reshape(x.shape[:-1] + (self.num_actions, self.model_outputs))


def make_q_network(
    num_actions: int,
    hidden: Sequence[int] = (64, 64),
    *,
    dueling: bool = False,
    context_dim: int = 0,
    activation: str = "relu",
    model_outputs: int = 0,
) -> QNetwork:
    """Builds a :class:`QNetwork`; ``net.init(key, obs)`` / ``net.apply(params, obs)`` (with a model
    head: ``net.init(key, obs, with_model=True)``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if num_actions <= 0:
        raise ValueError(f"num_actions must be > 0, got {num_actions}")
    if any(h <= 0 for h in hidden):
        raise ValueError(f"hidden sizes must be > 0, got {tuple(hidden)}")
    if model_outputs < 0:
        raise ValueError(f"model_outputs must be >= 0, got {model_outputs}")
    return QNetwork(num_actions, tuple(hidden), dueling, context_dim, activation, model_outputs)


HEAD_NAMES = ("head", "value")


def head_mask(params) -> object:
    """A boolean pytree like ``params``: True on the output head (ANIL-style adaptation)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    treedef = jax.tree_util.tree_structure(params)
    keys = [any(getattr(k, "key", None) in HEAD_NAMES for k in path) for path, _ in flat]
    return jax.tree_util.tree_unflatten(treedef, keys)
