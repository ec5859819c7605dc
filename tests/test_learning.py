"""Learning tests: fixed seeds, thresholds a broken implementation would miss."""

import jax
import numpy as np

from metadqn_jax.dqn import DQNConfig
from metadqn_jax.dqn import first_solved_step, make_train


def test_cartpole_solved_by_4_of_5_seeds_within_100k_steps():
    """CartPole-v1: greedy mean return >= 475 over 10 episodes within 100k env steps,
    for at least 4 of 5 fixed seeds, all five trained as one vmapped program."""
    cfg = DQNConfig()
    assert cfg.total_steps == 100_000 and cfg.eval_episodes >= 10
    train = make_train(cfg)
    keys = jax.random.split(jax.random.key(0), 5)
    _, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, cfg.hparams())
    solved = np.asarray(first_solved_step(metrics, 475.0))
    assert (solved >= 0).sum() >= 4, f"first solved step per seed: {solved.tolist()}"
    assert np.all(solved[solved >= 0] <= 100_000)
