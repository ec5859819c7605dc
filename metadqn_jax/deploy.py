"""Deployment: load a meta-trained policy from a run folder and adapt it to a new task.

``metadqn train`` exports every trained initialisation to ``RUN/policy/<algorithm>/`` (an orbax
checkpoint of the meta-parameters and the meta-target selected by validation, plus JSON
metadata). :func:`load_policy` reads it back together with the run's ``config.yaml``;
:func:`adapt_to_task` runs the test-time protocol of the few-shot evaluation
(:func:`metadqn_jax.fewshot.make_few_shot`: collect ``support_size`` transitions, adapt with
the learner's own rule, then fine-tune as an ordinary DQN until ``budget`` environment steps,
deploying the fine-tuned parameters only once they have beaten the adapted ones on episodes of
that interaction: ``FewShotConfig.finetune_select``) on one task and returns the deployed parameters. ``act(params, obs)`` is pure and jittable
and works with the unadapted and the adapted parameters alike.

Example (runnable after ``metadqn train --quick --name demo``)::

    import jax
    import jax.numpy as jnp
    from metadqn_jax import adapt_to_task, load_policy

    policy = load_policy("runs/demo")                  # the run's first algorithm
    task = jax.tree.map(lambda x: x[0], policy.family.tasks("test"))   # one held-out task
    params = adapt_to_task(policy, task, budget=10, key=jax.random.key(0))
    obs = jnp.zeros(policy.obs_shape)
    action = jax.jit(policy.act)(params, obs)          # greedy action, int32
    zero_shot = policy.act(policy.params, obs)         # before seeing the task
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax.core.compile import jit
from metadqn_jax import envs
from metadqn_jax.checkpoint import FORMAT_POLICY, Checkpointer, CheckpointError
from metadqn_jax.compare import config_for
from metadqn_jax.fewshot import FewShotConfig, make_few_shot
from metadqn_jax.meta import Learner, MetaConfig, make_learner
from metadqn_jax.runs.configs import TrainConfig, field_defaults, meta_config_dict
from metadqn_jax.runs.layout import policy_dir
from metadqn_jax.runs.record import read_run_config
from metadqn_jax.tasks import TaskFamily

__all__ = ["Policy", "load_policy", "adapt_to_task", "check_task", "export_policy", "policy_dir"]


class Policy(NamedTuple):
    """A meta-trained initialisation, ready to act and to adapt."""

    params: Any  # task parameters before any data: learner.unadapted(meta_params)
    act: Callable[[Any, jax.Array], jax.Array]  # pure: (task params, obs [..., *obs_shape]) -> int32 [...]
    meta_params: Any  # the meta-parameters (validation's best)
    meta_target: Any  # their Polyak meta-target (the TD target of the adaptation)
    config: MetaConfig  # the algorithm's meta-training config
    few_shot: FewShotConfig  # the run's test-time protocol (fine-tuning settings)
    learner: Learner
    family: TaskFamily
    obs_shape: tuple[int, ...]
    num_actions: int
    algorithm: str
    info: dict  # the export's metadata (meta-step, validation return, ...)


def _learner(cfg: MetaConfig) -> tuple[Learner, tuple[int, ...], int]:
    env, base = cfg.task_family.env()
    num_actions = envs.num_actions(env, base)
    obs_shape = tuple(envs.obs_shape(env, base))
    return make_learner(cfg, num_actions, obs_shape), obs_shape, num_actions


def _abstract_policy(cfg: MetaConfig):
    learner, _, _ = _learner(cfg)
    params = jax.eval_shape(learner.init, jax.random.key(0))
    return {"params": params, "target": params}


def export_policy(run_dir: str | Path, cfg: MetaConfig, meta_params: Any, meta_target: Any, *,
                  step: int, extra: dict | None = None) -> Path:
    """Writes ``RUN/policy/<algorithm>/<step>`` (keeps only the newest export)."""
    ck = Checkpointer(policy_dir(run_dir, cfg.algorithm), keep=1, kind=FORMAT_POLICY)
    try:
        if step in ck.steps():
            return ck.directory / str(step)
        return ck.save(step, {"params": meta_params, "target": meta_target},
                       config=meta_config_dict(cfg), extra=extra)
    finally:
        ck.close()


def load_policy(run_dir: str | Path, algorithm: str | None = None) -> Policy:
    """The meta-learned parameters of ``algorithm`` (default: the run's first) and a pure ``act``.

    Raises:
      ConfigError: ``run_dir`` is not a ``metadqn train`` run folder.
      CheckpointError: no (complete) export for ``algorithm``, or it does not match the config.
    """
    run = read_run_config(run_dir, TrainConfig)
    algorithm = algorithm or run.run.algorithms[0]
    if algorithm not in run.run.trained:
        raise CheckpointError(f"{str(run_dir)!r} trained {', '.join(run.run.trained)}, not {algorithm!r}")
    cfg = config_for(run.meta, algorithm)
    ck = Checkpointer(policy_dir(run_dir, algorithm), kind=FORMAT_POLICY)
    if not ck.directory.exists():
        raise CheckpointError(f"no exported policy for {algorithm!r} in {str(run_dir)!r} (training did not "
                              f"finish; continue it with: metadqn train --resume {run_dir})")
    try:
        restored = ck.restore(_abstract_policy(cfg), config=meta_config_dict(cfg), absent=field_defaults())
    finally:
        ck.close()
    learner, obs_shape, num_actions = _learner(cfg)

    def act(params, obs):
        return jnp.argmax(learner.q_values(params, obs), axis=-1).astype(jnp.int32)

    meta_params, meta_target = restored.tree["params"], restored.tree["target"]
    info = dict(restored.info.get("extra") or {}, step=restored.step)
    return Policy(learner.unadapted(meta_params), act, meta_params, meta_target, cfg, run.few_shot, learner,
                  cfg.task_family, obs_shape, num_actions, algorithm, info)


@functools.lru_cache(maxsize=16)
def _adapt_program(cfg: MetaConfig, fs: FewShotConfig, learner: Learner):
    """The jitted few-shot program returning parameters (cached: adapting many tasks one by one
    with the same budget compiles once)."""
    run, _ = make_few_shot(cfg, fs, learner, return_params=True)
    return jit(run)


def _describe(value: Any) -> str:
    """``None``, a builtin type's name (``dict``) or a class's full name, for messages."""
    if value is None:
        return "None"
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _batch_shape(shape: tuple[int, ...]) -> str:
    """``(n,)``, ``(n, 2)``: a field's shape in a batch of tasks."""
    return "(" + ", ".join(["n", *map(str, shape)]) + ("," if not shape else "") + ")"


def check_task(policy: Policy, env_params: Any) -> bool:
    """Checks that ``env_params`` is one task, or a batch of tasks, of ``policy``'s family.

    A task is an instance of the family's ``EnvParams`` class with the same fields as the
    family's tasks, every field numeric, with the shape of that field in the family's base task
    (a batch: every field with one more, leading axis of the same length n >= 1), and every
    float field finite where the base task's is. Host-side checks only (no compilation).

    Returns:
      ``True`` for a batch of tasks, ``False`` for one task.

    Raises:
      ValueError: one line, ``"adapt_to_task: env_params must be a <params class> (the <env id>
        params of the policy's family <name>)..."``, then what is wrong.
    """
    _, base = policy.family.env()
    cls = type(base).__name__
    what = (f"adapt_to_task: env_params must be a {cls} (the {policy.family.env_id} params of the policy's "
            f"family {policy.family.name})")
    if not isinstance(env_params, type(base)):
        raise ValueError(f"{what}, got {_describe(env_params)}")
    given, tree = jax.tree_util.tree_flatten_with_path(env_params)
    expected, base_tree = jax.tree_util.tree_flatten_with_path(base)
    if tree != base_tree:
        names = lambda leaves: [jax.tree_util.keystr(p) for p, _ in leaves]
        missing = [n for n in names(expected) if n not in names(given)]
        detail = f"no value for {', '.join('env_params' + n for n in missing)}" if missing else \
            "its fields differ from the family's tasks"
        raise ValueError(f"{what}; {detail}")
    batch_sizes = set()
    for (path, x), (_, b) in zip(given, expected):
        field = f"env_params{jax.tree_util.keystr(path)}"
        kind = getattr(getattr(x, "dtype", None), "kind", None) or np.asarray(x).dtype.kind
        if kind not in "biuf":
            raise ValueError(f"{what}; {field} is not numeric (got {_describe(x)})")
        shape, base_shape = tuple(np.shape(x)), tuple(np.shape(b))
        if shape == base_shape:
            batch_sizes.add(None)
        elif len(shape) == len(base_shape) + 1 and shape[1:] == base_shape:
            batch_sizes.add(shape[0])
        else:
            raise ValueError(f"{what}; {field} has shape {shape}, not {base_shape} (one task) or "
                             f"{_batch_shape(base_shape)} (a batch of n tasks)")
        if len(batch_sizes) > 1:
            raise ValueError(f"{what}; mismatched leaf shapes: give every field one task's shape, or every "
                             f"field a leading task axis of the same length ({field} has shape {shape})")
        if kind == "f" and not isinstance(x, jax.core.Tracer) and np.all(np.isfinite(np.asarray(b))):
            values = np.asarray(x)
            if not np.all(np.isfinite(values)):
                bad = values[~np.isfinite(values)].ravel()[0]
                raise ValueError(f"{what}; {field} holds {bad} (every field of a task must be finite)")
    n = batch_sizes.pop() if batch_sizes else None
    if n == 0:
        raise ValueError(f"{what}; the batch of tasks is empty (leading axis of length 0)")
    return n is not None


def adapt_to_task(policy: Policy, env_params: Any, budget: int, key: jax.Array | None = None, *,
                  few_shot: FewShotConfig | None = None) -> Any:
    """Adapts ``policy`` to the task ``env_params`` with ``budget`` environment steps.

    The protocol is the few-shot evaluation's (:func:`metadqn_jax.fewshot.make_few_shot`, the
    same code): act for ``min(budget, support_size)`` steps — with the unadapted policy, or
    on the context inferred so far (``few_shot.explore``, see
    :func:`metadqn_jax.fewshot.explore_mode`) — adapt with the learner's rule, then fine-tune
    as a DQN for the rest of the budget (settings from the run's ``few_shot`` section, or
    ``few_shot``). With ``few_shot.finetune_select`` (the default) the result is the adapted
    parameters until the fine-tuned ones have scored a higher mean episode return within the
    budget (:mod:`metadqn_jax.fewshot`, step 4), so a good adapted policy is not handed out
    worse. For a policy whose adaptation rule was not meta-learned (``pretrained``) the
    adaptation itself must win such a contest first (``few_shot.guard_adaptation``, step 5).

    Args:
      policy: from :func:`load_policy`.
      env_params: one task (an ``EnvParams`` of the policy's environment), or a batch of
        tasks (every leaf with a leading axis), adapted independently.
      budget: environment steps on the task (>= 0; 0 returns the unadapted parameters).
      key: PRNG key (default ``jax.random.key(0)``).

    Returns:
      Adapted task parameters for ``policy.act`` (with a leading axis for a batch of tasks).

    Raises:
      ValueError: before any compilation: ``budget`` is not an integer >= 0, or ``env_params``
        is not a task of the policy's family (:func:`check_task`: the wrong ``EnvParams``
        class, a dict, ``None``, mismatched field shapes, a non-finite field), naming the
        expected params class.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise ValueError(f"budget must be an integer >= 0 (environment steps), got {budget!r}")
    batched = check_task(policy, env_params)
    key = jax.random.key(0) if key is None else key
    fs = few_shot or policy.few_shot
    fs = dataclasses.replace(fs, budgets=(int(budget),), num_tasks=1, seeds=1, eval_episodes=1)
    run = _adapt_program(policy.config, fs, policy.learner)
    tasks = env_params if batched else jax.tree.map(lambda x: jnp.asarray(x)[None], env_params)
    n = jax.tree.leaves(tasks)[0].shape[0]
    keys = jax.random.split(key, n)
    _, params = run(policy.meta_params, policy.meta_target, tasks, keys, policy.config.hparams())
    return params if batched else jax.tree.map(lambda x: x[0], params)
