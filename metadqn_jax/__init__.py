"""metadqn_jax: meta-learning Deep Q-Networks in JAX over gymnax task families.

The public API is imported lazily (``import metadqn_jax`` does not import JAX), so the
``metadqn`` command starts quickly::

    from metadqn_jax import MetaConfig, train_meta, load_policy, adapt_to_task

Submodules (``metadqn_jax.compare``, ``metadqn_jax.tasks``, ...) are imported as usual.

Command line: ``metadqn --help`` (or ``python -m metadqn_jax --help``); reference in
``docs/CLI.md``.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from metadqn_jax._lazy import lazy_exports

try:  # one version: pyproject.toml's, as installed
    __version__ = _metadata.version("metadqn_jax")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # configuration
    "ConfigError": "metadqn_jax.core.errors",
    "DQNConfig": "metadqn_jax.dqn",
    "DQNHParams": "metadqn_jax.dqn",
    "MetaConfig": "metadqn_jax.meta",
    "MetaHParams": "metadqn_jax.meta",
    "FewShotConfig": "metadqn_jax.fewshot",
    "ValidationConfig": "metadqn_jax.driver",
    "TrainConfig": "metadqn_jax.runs.configs",
    "DQNRunConfig": "metadqn_jax.runs.configs",
    "RegressRunConfig": "metadqn_jax.runs.configs",
    # meta-training and evaluation
    "make_meta_step": "metadqn_jax.meta",
    "MetaState": "metadqn_jax.meta",
    "train_meta": "metadqn_jax.driver",
    "EarlyStop": "metadqn_jax.driver",
    "TrainResult": "metadqn_jax.driver",
    "DivergenceError": "metadqn_jax.core.divergence",
    "evaluate_few_shot": "metadqn_jax.fewshot",
    "make_train": "metadqn_jax.dqn",
    # task families
    "TaskFamily": "metadqn_jax.tasks",
    "get_family": "metadqn_jax.tasks",
    "list_families": "metadqn_jax.tasks",
    "register_family": "metadqn_jax.tasks",
    "register_env": "metadqn_jax.envs.registry",
    # checkpoints and deployment
    "Checkpointer": "metadqn_jax.checkpoint",
    "CheckpointError": "metadqn_jax.checkpoint",
    "Policy": "metadqn_jax.deploy",
    "load_policy": "metadqn_jax.deploy",
    "adapt_to_task": "metadqn_jax.deploy",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from metadqn_jax.checkpoint import CheckpointError, Checkpointer
    from metadqn_jax.core.errors import ConfigError
    from metadqn_jax.dqn import DQNConfig, DQNHParams
    from metadqn_jax.runs.configs import DQNRunConfig, RegressRunConfig, TrainConfig
    from metadqn_jax.deploy import Policy, adapt_to_task, load_policy
    from metadqn_jax.dqn import make_train
    from metadqn_jax.fewshot import FewShotConfig, evaluate_few_shot
    from metadqn_jax.meta import MetaConfig, MetaHParams, MetaState, make_meta_step
    from metadqn_jax.tasks import TaskFamily, get_family, list_families, register_family
    from metadqn_jax.core.divergence import DivergenceError
    from metadqn_jax.driver import EarlyStop, TrainResult, ValidationConfig, train_meta
