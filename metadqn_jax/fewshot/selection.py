"""The fine-tuning guard (``FewShotConfig.finetune_select``, step 4 of the protocol in
:mod:`metadqn_jax.fewshot`): whole contest episodes between the deployed parameters and a frozen
snapshot of the fine-tuned candidate decide what is deployed. One run's state is a
:class:`Selection`; :func:`selection_step` advances it by one environment step (traceable).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metadqn_jax.core.tree import tree_where

__all__ = ["Selection", "init_selection", "selection_step"]


class Selection(NamedTuple):
    """State of the fine-tuning guard (``FewShotConfig.finetune_select``) of one run.

    ``turn`` names the actor of the episode in progress: ``-1`` the episode that was already
    running at adaptation (not counted), ``0`` the deployed parameters, ``1`` the challenger
    (a frozen snapshot of the fine-tuned candidate), ``2`` the live candidate's exploration
    episode (not counted). ``returns`` / ``episodes`` ``[2]`` sum and count the contest
    episodes of the deployed parameters (all of them since they were deployed) and of the
    current challenger."""

    deployed: dict  # the parameters every budget reports (at first the adapted ones)
    challenger: dict  # the candidate as it was when its contest began: what plays and may be deployed
    turn: jax.Array  # int32 scalar
    returns: jax.Array  # [2] float32: summed episode returns (deployed, challenger)
    episodes: jax.Array  # [2] int32: finished episodes (deployed, challenger)


def init_selection(adapted) -> Selection:
    """The guard right after adaptation: ``adapted`` are deployed (the adapted parameters, or the
    unadapted ones when the adaptation is guarded), no challenger and no evidence yet."""
    return Selection(adapted, adapted, jnp.int32(-1), jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.int32))


def selection_step(sel: Selection, done: jax.Array, episode_return: jax.Array, candidate, min_episodes: int,
                   explore: bool = False) -> Selection:
    """One environment step of the guard (traceable; ``done``, ``episode_return``: scalars).

    When an episode ends (``done``), its return ``episode_return`` is credited to its actor
    (``sel.turn``; the episode running at adaptation and exploration episodes are credited to
    no one), and the next episode goes to the other one (the deployed parameters first); with
    ``explore``, an exploration episode (turn 2) follows each challenger episode. A challenger
    episode is played by a snapshot of ``candidate`` taken when the challenger's first episode
    starts, so the evidence belongs to fixed parameters. When the challenger has
    ``min_episodes`` episodes (and the deployed parameters as many), it is judged: if its mean
    return is strictly above the deployed parameters' mean (over all their episodes since they
    were deployed), it becomes the deployed parameters and its episodes their evidence;
    otherwise it is dropped. Either way the next challenger is a fresh snapshot."""
    counted = done & (sel.turn >= 0)
    one_hot = jnp.arange(2) == sel.turn
    returns = sel.returns + jnp.where(counted & one_hot, episode_return, 0.0)
    episodes = sel.episodes + (counted & one_hot).astype(jnp.int32)
    after = jnp.where(sel.turn == 0, 1, jnp.where(sel.turn == 1, 2 if explore else 0, 0))
    turn = jnp.where(done, after, sel.turn).astype(jnp.int32)
    means = returns / jnp.maximum(episodes, 1)
    judged = done & (sel.turn == 1) & (episodes[1] >= min_episodes) & (episodes[0] >= min_episodes)
    promote = judged & (means[1] > means[0])
    deployed = tree_where(promote, sel.challenger, sel.deployed)
    returns = jnp.where(promote, jnp.stack([returns[1], 0.0]), jnp.where(judged, returns.at[1].set(0.0), returns))
    episodes = jnp.where(promote, jnp.stack([episodes[1], 0]), jnp.where(judged, episodes.at[1].set(0), episodes))
    fresh = done & (turn == 1) & (episodes[1] == 0)  # a new challenger's first episode starts
    challenger = tree_where(fresh, candidate, sel.challenger)
    return Selection(deployed, challenger, turn, returns, episodes)
