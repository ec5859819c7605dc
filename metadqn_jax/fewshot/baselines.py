"""The baselines every comparison reports beside the meta-learned inits: ``scratch`` (a fresh
initialisation with the pretrained learner's network and adaptation rule) and the per-task
``oracle`` (a DQN trained from scratch on each held-out task for a long budget)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax.core.compile import jit
from metadqn_jax import __version__, dqn, envs
from metadqn_jax.dqn import DQNConfig
from metadqn_jax.fewshot.evaluate import few_shot_tasks
from metadqn_jax.fewshot.config import FewShotConfig
from metadqn_jax.fewshot.results import FewShotResult, by_task, summarize
from metadqn_jax.meta import MetaConfig, make_learner
from metadqn_jax.tasks import TaskFamily

__all__ = ["scratch_params", "oracle_returns", "default_oracle_config", "default_oracle_cache", "oracle_cache_path"]


def scratch_params(meta_cfg: MetaConfig, key: jax.Array):
    """A fresh initialisation for the ``scratch`` baseline (its own target = itself): the
    network and adaptation rule of the ``pretrained`` learner of ``meta_cfg``, untrained; a batch
    of keys ``[N]`` gives ``N`` initialisations (a leading seed axis)."""
    family = meta_cfg.task_family
    env, base_params = family.env()
    learner = make_learner(meta_cfg.rebuilt(algorithm="pretrained"),
                           envs.num_actions(env, base_params), envs.obs_shape(env, base_params))
    params = learner.init(key) if jnp.ndim(key) == 0 else jax.vmap(learner.init)(key)
    return learner, params


def oracle_returns(
    family: TaskFamily, fs: FewShotConfig, key: jax.Array, dqn_cfg: DQNConfig | None = None, *,
    cache_dir: str | Path | None = None,
) -> FewShotResult:
    """The oracle: a DQN trained from scratch on each held-out task for a long budget.

    Returns the final greedy evaluation of each (task, seed) run (not the best of the periodic
    ones, which would pick the luckiest evaluation), reported at every budget (a horizontal
    reference line). One run per task and seed up to ``oracle_seeds`` (``fs.oracle_seeds``:
    the intervals resample tasks, and on CartPole each run is a 100k-step DQN); tasks × seeds
    are one vmapped program.

    ``cache_dir``: a folder (e.g. :func:`default_oracle_cache`) that keeps each run's final
    return under a hash of everything it depends on — the family's definition, the runs' tasks
    and keys, the DQN's settings, the package's and JAX's versions and the backend — so that a
    later call with the same inputs reads them (``None``: always train). An unreadable entry is
    trained again and rewritten.
    """
    dqn_cfg = dqn_cfg or default_oracle_config(family)
    path = oracle_cache_path(family, fs, key, cache_dir, dqn_cfg)
    fs = dataclasses.replace(fs, seeds=min(fs.seeds, fs.oracle_seeds))
    final = _read_cached(path)
    if final is None:
        env, base = family.env()
        train = dqn.make_train(dqn_cfg, base)
        task_params, keys = few_shot_tasks(family, fs, key)
        _, metrics = jit(jax.vmap(train, in_axes=(0, None, 0)))(keys, dqn_cfg.hparams(gamma=family.gamma),
                                                                     task_params)
        final = np.asarray(metrics.eval_return)[:, -1]  # the trained DQN's last evaluation, not the best one
        _write_cached(path, final, family)
    return summarize(fs.budgets, by_task(np.repeat(final[:, None], len(fs.budgets), axis=1), fs.seeds), axes="tsb")


def default_oracle_cache() -> Path:
    """``$METADQN_CACHE_DIR/oracle``, else ``$XDG_CACHE_HOME/metadqn_jax/oracle``, else
    ``~/.cache/metadqn_jax/oracle``: where the commands keep the oracle's returns."""
    root = os.environ.get("METADQN_CACHE_DIR")
    if root:
        return Path(root) / "oracle"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metadqn_jax" / "oracle"


def oracle_cache_path(family: TaskFamily, fs: FewShotConfig, key: jax.Array, cache_dir: str | Path | None,
                      dqn_cfg: DQNConfig | None = None) -> Path | None:
    """The file in ``cache_dir`` that holds (or will hold) :func:`oracle_returns`' runs for these
    inputs (``None`` without a ``cache_dir``): named by a hash of everything they depend on."""
    if cache_dir is None:
        return None
    dqn_cfg = dqn_cfg or default_oracle_config(family)
    fs = dataclasses.replace(fs, seeds=min(fs.seeds, fs.oracle_seeds))
    inputs = {"family": family.to_spec(), "split": fs.split, "num_tasks": fs.num_tasks, "seeds": fs.seeds,
              "key": np.asarray(jax.random.key_data(key)).tolist(), "impl": str(jax.random.key_impl(key)),
              "dqn": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(dqn_cfg).items()},
              "metadqn_jax": __version__, "jax": jax.__version__, "backend": jax.default_backend()}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return Path(cache_dir) / f"{family.name}-{digest}.json"


def _read_cached(path: Path | None) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        return np.asarray(json.loads(path.read_text())["final"], np.float64)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: trained again and rewritten


def _write_cached(path: Path | None, final: np.ndarray, family: TaskFamily) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"family": family.name, "final": final.tolist()}))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache: the result is still returned


def default_oracle_config(family: TaskFamily) -> DQNConfig:
    """A single-task DQN long enough to converge on one task of the family."""
    if family.env_id.startswith("PointNav"):
        return DQNConfig(env_id=family.env_id, num_envs=4, total_steps=20_000, buffer_size=20_000,
                         batch_size=64, learning_starts=500, eval_every=2_000, eval_episodes=4,
                         eps_decay_steps=10_000.0, updates_per_iteration=1, solve_threshold=0.0)
    return DQNConfig(env_id=family.env_id, eval_episodes=4)
