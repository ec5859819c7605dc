"""Built-in settings of the CLI commands: the ONE place to tune what ``metadqn train`` (no
arguments) runs.

Each preset is a layer ``{section: {field: value}}`` on top of the dataclass defaults (see
:mod:`metadqn_jax.runs.sections` for the sections). ``DEFAULT_*`` is what a command runs with no
arguments; ``QUICK_*`` (``--quick``) is a tiny smoke-test configuration that finishes in
seconds after compilation.

Why the defaults are what they are: docs/design.md, "Command line and run folders".
"""

from __future__ import annotations

from typing import Any

Layer = dict[str, dict[str, Any]]

# ------------------------------------------------------------------------ metadqn train
DEFAULT_TRAIN: Layer = {
    "meta": {
        "family": "pointnav-rotated",  # with context: see docs/design.md (command line)
        # num_meta_steps: the family's (TaskFamily.meta_defaults), else MetaConfig's 2,000
    },
    "hparams": {},
    "few_shot": {
        # budgets: the family's (TaskFamily.budgets; by default 0, 1/20, 1/5, 1/2, 1, 2, 4 episodes)
        "num_tasks": 20,  # held-out test tasks
        "seeds": 3,  # adaptation runs per test task
    },
    "validation": {"num_tasks": 32, "patience": 0},  # every: a tenth of the run
    "run": {
        "algorithms": ["context"],
        "baselines": ["pretrained", "scratch"],  # --oracle adds "oracle"
        "seed": 0,
        "meta_seeds": 3,  # the table's intervals resample meta-training seeds and tasks
        "checkpoint_every": 500,
        "keep": 3,
    },
}

QUICK_TRAIN: Layer = {
    "meta": {
        "num_tasks": 4,
        "envs_per_task": 2,
        "rollout_steps": 5,
        "support_size": 10,
        "buffer_size": 10,
        "task_lifetime": 1,  # a smoke test: one-meta-step tasks whatever the family's episodes (derive.py)
        "query_batch": 16,
        "hidden": [16, 16],
        "encoder_hidden": [16],
        "num_meta_steps": 20,
        "chunk_size": 5,
    },
    "few_shot": {
        "budgets": [0, 10],
        "num_tasks": 2,
        "seeds": 1,
        "finetune_batch": 8,
        "eval_episodes": 1,
    },
    "validation": {"every": 10, "num_tasks": 2},
    "run": {"meta_seeds": 1, "checkpoint_every": 10, "keep": 2, "fast_compile": True},  # tiny: compile time dominates
}

# -------------------------------------------------------------------------- metadqn dqn
DEFAULT_DQN: Layer = {
    "dqn": {},  # env_id: DQNConfig's default (CartPole-v1), or run.family's environment
    "hparams": {},
    "run": {"seed": 0, "seeds": 1},
}

QUICK_DQN: Layer = {
    "dqn": {
        "num_envs": 2,
        "total_steps": 400,
        "buffer_size": 200,
        "batch_size": 16,
        "learning_starts": 50,
        "updates_per_iteration": 1,
        "hidden": [16, 16],
        "eval_every": 200,
        "eval_episodes": 2,
    },
    "run": {"fast_compile": True},
}

# ---------------------------------------------------------------------- metadqn regress
DEFAULT_REGRESS: Layer = {
    "regression": {"num_iterations": 20_000, "chunk_size": 1_000},
    "eval": {"num_tasks": 1000},
    "run": {"algorithms": ["maml", "pretrained"]},
}

QUICK_REGRESS: Layer = {
    "regression": {"num_iterations": 20, "chunk_size": 10, "hidden": [16, 16], "meta_batch": 4},
    "eval": {"num_tasks": 8, "shots": [5], "steps": [0, 1]},
    "run": {"fast_compile": True},
}

# ------------------------------------------------------------------------ metadqn sweep
# metadqn train's meta / hparams / validation layers plus the sweep section (SweepSettings)
DEFAULT_SWEEP: Layer = {
    "meta": dict(DEFAULT_TRAIN["meta"]),
    "hparams": dict(DEFAULT_TRAIN["hparams"]),
    "validation": dict(DEFAULT_TRAIN["validation"]),
    "sweep": {},
}

QUICK_SWEEP: Layer = {
    "meta": dict(QUICK_TRAIN["meta"]),
    "validation": dict(QUICK_TRAIN["validation"]),
    "sweep": {"seeds": 2, "fast_compile": True},
}
