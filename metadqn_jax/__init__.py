"""metadqn_jax: meta-learning Deep Q-Networks in JAX over gymnax task families.

The public API is imported lazily (``import metadqn_jax`` does not import JAX), so the
``metadqn`` command starts quickly::

    from metadqn_jax import MetaConfig, train_meta, load_policy, adapt_to_task

Submodules (``metadqn_jax.compare``, ``metadqn_jax.tasks``, ...) are imported as usual.

Command line: ``metadqn --help`` (or ``python -m metadqn_jax --help``); reference in
``docs/CLI.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # configuration
    "ConfigError": "metadqn_jax.config",
    "DQNConfig": "metadqn_jax.config",
    "DQNHParams": "metadqn_jax.config",
    "MetaConfig": "metadqn_jax.meta_dqn",
    "MetaHParams": "metadqn_jax.meta_dqn",
    "FewShotConfig": "metadqn_jax.evaluate",
    "ValidationConfig": "metadqn_jax.train",
    "TrainConfig": "metadqn_jax.configfile",
    "DQNRunConfig": "metadqn_jax.configfile",
    "RegressRunConfig": "metadqn_jax.configfile",
    # meta-training and evaluation
    "make_meta_step": "metadqn_jax.meta_dqn",
    "MetaState": "metadqn_jax.meta_dqn",
    "train_meta": "metadqn_jax.train",
    "EarlyStop": "metadqn_jax.train",
    "TrainResult": "metadqn_jax.train",
    "evaluate_few_shot": "metadqn_jax.evaluate",
    "make_train": "metadqn_jax.dqn",
    # task families
    "TaskFamily": "metadqn_jax.tasks",
    "get_family": "metadqn_jax.tasks",
    "list_families": "metadqn_jax.tasks",
    "register_family": "metadqn_jax.tasks",
    "register_env": "metadqn_jax.envs",
    # checkpoints and deployment
    "Checkpointer": "metadqn_jax.checkpoint",
    "CheckpointError": "metadqn_jax.checkpoint",
    "Policy": "metadqn_jax.deploy",
    "load_policy": "metadqn_jax.deploy",
    "adapt_to_task": "metadqn_jax.deploy",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metadqn_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from metadqn_jax.checkpoint import CheckpointError, Checkpointer
    from metadqn_jax.config import ConfigError, DQNConfig, DQNHParams
    from metadqn_jax.configfile import DQNRunConfig, RegressRunConfig, TrainConfig
    from metadqn_jax.deploy import Policy, adapt_to_task, load_policy
    from metadqn_jax.dqn import make_train
    from metadqn_jax.evaluate import FewShotConfig, evaluate_few_shot
    from metadqn_jax.meta_dqn import MetaConfig, MetaHParams, MetaState, make_meta_step
    from metadqn_jax.tasks import TaskFamily, get_family, list_families, register_family
    from metadqn_jax.train import EarlyStop, TrainResult, ValidationConfig, train_meta
