"""The sinusoid task family of Finn et al. 2017, section 5.1: ``y = A sin(x - φ)`` with
``A ~ U[0.1, 5.0]``, ``φ ~ U[0, π]`` and inputs ``x ~ U[-5, 5]``."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metadqn_jax.regression.checks import check_positive_int

# fold_in tags that keep the training stream and the held-out evaluation stream apart
TRAIN_TAG = 0
EVAL_TAG = 1


class RegressionBatch(NamedTuple):
    """Few-shot data of ``n`` tasks (a pytree; leaves gain a task axis)."""

    x: jax.Array  # [n, k, 1] float32 inputs
    y: jax.Array  # [n, k, 1] float32 targets


@dataclasses.dataclass(frozen=True)
class SinusoidTasks:
    """The sinusoid task family ``y = A sin(x − φ)``.

    A *task* is a pair ``(amplitude, phase)`` of arrays with a leading task axis ``[n]``.
    All sampling is a pure function of the PRNG key: the same key gives identical tasks
    and data, different keys give (almost surely) different ones.

    Attributes:
      amp_range: ``(low, high)`` of the uniform amplitude distribution.
      phase_range: ``(low, high)`` of the uniform phase distribution.
      x_range: ``(low, high)`` of the uniform input distribution (also the evaluation grid).
    """

    amp_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def __post_init__(self) -> None:
        for name in ("amp_range", "phase_range", "x_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name} must satisfy low < high, got {(lo, hi)}")

    def sample_tasks(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """Samples ``n`` tasks.

        Args:
          key: PRNG key.
          n: number of tasks (static, > 0).

        Returns:
          ``(amplitude [n], phase [n])``, float32.
        """
        check_positive_int("n", n)
        k_amp, k_phase = jax.random.split(key)
        amp = jax.random.uniform(k_amp, (n,), minval=self.amp_range[0], maxval=self.amp_range[1])
        phase = jax.random.uniform(
            k_phase, (n,), minval=self.phase_range[0], maxval=self.phase_range[1]
        )
        return amp, phase

    def function(self, tasks: tuple[jax.Array, jax.Array], x: jax.Array) -> jax.Array:
        """The true targets ``A sin(x − φ)``.

        Args:
          tasks: ``(amplitude [n], phase [n])``.
          x: inputs ``[n, k, 1]`` (or anything broadcasting against ``[n, 1, 1]``,
            e.g. a shared grid ``[1, g, 1]``).

        Returns:
          ``y`` with the broadcast shape of ``x`` and ``[n, 1, 1]``.
        """
        amp, phase = tasks
        return amp[:, None, None] * jnp.sin(x - phase[:, None, None])

    def sample_data(
        self, key: jax.Array, tasks: tuple[jax.Array, jax.Array], k: int
    ) -> RegressionBatch:
        """Samples ``k`` input/target pairs per task (``x ~ U[x_range]``).

        Args:
          key: PRNG key.
          tasks: ``(amplitude [n], phase [n])``.
          k: points per task (static, > 0).

        Returns:
          :class:`RegressionBatch` ``(x [n, k, 1], y [n, k, 1])``; unpacks as ``x, y``.
        """
        check_positive_int("k", k)
        n = tasks[0].shape[0]
        x = jax.random.uniform(key, (n, k, 1), minval=self.x_range[0], maxval=self.x_range[1])
        return RegressionBatch(x, self.function(tasks, x))

    def sample_support_query(
        self, key: jax.Array, n: int, k_support: int, k_query: int
    ) -> tuple[tuple[jax.Array, jax.Array], RegressionBatch, RegressionBatch]:
        """Samples ``n`` tasks with disjoint (independently drawn) support and query sets.

        Args:
          key: PRNG key.
          n: number of tasks.
          k_support: support points per task (the K of K-shot).
          k_query: query points per task.

        Returns:
          ``(tasks, support [n, k_support, 1], query [n, k_query, 1])``.
        """
        k_tasks, k_data = jax.random.split(key)
        tasks = self.sample_tasks(k_tasks, n)
        data = self.sample_data(k_data, tasks, k_support + k_query)
        support = jax.tree.map(lambda a: a[:, :k_support], data)
        query = jax.tree.map(lambda a: a[:, k_support:], data)
        return tasks, support, query

    def eval_tasks(self, seed: int, n: int) -> tuple[jax.Array, jax.Array]:
        """Held-out evaluation tasks from their own seed.

        The key is ``fold_in(key(seed), 1)``, while meta-training draws from
        ``fold_in(key(train_seed), 0)`` (:func:`~metadqn_jax.regression.train.make_meta_train`), so the evaluation stream never
        coincides with a training stream, whichever seeds are chosen.

        Args:
          seed: evaluation seed (same seed ⇒ identical tasks).
          n: number of tasks.

        Returns:
          ``(amplitude [n], phase [n])``.
        """
        return self.sample_tasks(jax.random.fold_in(jax.random.key(seed), EVAL_TAG), n)

    def grid(self, num_points: int = 100) -> jax.Array:
        """A dense evaluation grid ``[num_points, 1]`` over ``x_range``."""
        check_positive_int("num_points", num_points)
        return jnp.linspace(self.x_range[0], self.x_range[1], num_points)[:, None]
