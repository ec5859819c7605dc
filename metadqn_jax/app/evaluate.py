"""``metadqn evaluate``: the few-shot evaluation of the initialisations saved in a
``metadqn train`` run folder (its exported policies; the latest checkpoints of an unfinished
run), with the run's protocol and keys, so an unchanged protocol reproduces the run's numbers.

It writes into the run folder, so it locks it like ``train`` does
(:func:`metadqn_jax.runs.folder.open_run_dir`: refused while another process writes it, and
checked for writing before anything is computed), and prints its table before it writes the
result files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from metadqn_jax.app.common import (
    apply_family_options,
    check_unchanged,
    compiling,
    configure_jax,
    info,
    with_oracle,
)
from metadqn_jax.app.results import write_few_shot
from metadqn_jax.app.train import restore_meta_checkpoint
from metadqn_jax.checkpoint import Checkpointer, CheckpointError
from metadqn_jax.compare import compare, config_for, protocol_text
from metadqn_jax.core.errors import ConfigError
from metadqn_jax.core.tree import tree_where
from metadqn_jax.deploy import load_policy
from metadqn_jax.driver import EarlyStop, TrainResult
from metadqn_jax.fewshot import default_oracle_cache
from metadqn_jax.runs import folder, layout
from metadqn_jax.runs.configs import TrainConfig
from metadqn_jax.runs.record import read_run_config
from metadqn_jax.runs.yamlio import parse_overrides

__all__ = ["EVALUATE_MAY_CHANGE", "cmd_evaluate", "load_init"]

# the settings 'metadqn evaluate' may change ("section.*": the whole section)
EVALUATE_MAY_CHANGE = ("few_shot.*", "run.baselines")


def cmd_evaluate(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """``metadqn evaluate RUN_DIR`` (``flags``: the config layer of the options given); prints
    the table, then writes ``RUN_DIR/<tag>.md/.png/.json``, and returns 0.

    Raises:
      ConfigError, CheckpointError: a bad option, run folder (missing, in use by another
        process, not writable) or checkpoint; raised before any computation.
    """
    run_dir = Path(args.run_dir)
    apply_family_options(args, None)  # only registers: the run's config.yaml holds its family's definition
    stored = read_run_config(run_dir, TrainConfig)
    layers = [stored.as_layer(), flags, parse_overrides(args.set or [], TrainConfig)]
    cfg = with_oracle(TrainConfig.resolve(*layers), args)
    check_unchanged(stored, cfg, EVALUATE_MAY_CHANGE, "evaluate")
    missing = [a for a in cfg.run.trained if a not in stored.run.trained]
    if missing:
        raise ConfigError(f"run.baselines: {missing[0]} was not trained in {str(run_dir)!r}")
    if args.tag is None:  # never rewrite what train wrote unless asked (--tag few_shot)
        args.tag = "evaluate" if layout.output_path(run_dir, "few_shot", ".md").exists() else "few_shot"
    if "/" in args.tag or args.tag in ("", ".", ".."):
        raise ConfigError(f"--tag must be a plain file name stem, got {args.tag!r}")
    with folder.open_run_dir(run_dir, getattr(args, "argv", None)):
        with compiling(cfg.run.fast_compile):
            return _evaluate(args, cfg, run_dir)


def _evaluate(args: argparse.Namespace, cfg, run_dir: Path) -> int:
    """The body of :func:`cmd_evaluate` once the run folder is locked."""
    configure_jax(args)
    inits = {a: load_init(run_dir, cfg, config_for(cfg.meta, a)) for a in cfg.run.trained}  # check all first

    def restore(cfg_a, key, *, callback=None, position=None):  # compare's TrainHook: nothing to train
        params, target, note = inits[cfg_a.algorithm]
        if note:
            info(note)
        info(f"{cfg_a.algorithm}: evaluating on {protocol_text(cfg.few_shot)}")
        es = EarlyStop(jnp.float32(jnp.nan), jnp.int32(-1), jnp.int32(0), params, target)
        return TrainResult(None, es, [], False)

    comp = compare(cfg.meta, cfg.run.trained, cfg.few_shot, seed=cfg.run.seed, validation=cfg.validation,
                   scratch="scratch" in cfg.run.baselines, oracle="oracle" in cfg.run.baselines,
                   progress=False, log=info, train=restore, meta_seeds=cfg.run.meta_seeds,
                   oracle_cache=default_oracle_cache())
    comp = comp._replace(train_wall_s={})
    write_few_shot(run_dir, args.tag, cfg, comp, trained=(), show=lambda t: print(t, end="", flush=True))
    print(f"\nwrote {layout.output_path(run_dir, args.tag, '.md')}, .png and .json")
    sys.stdout.flush()
    return 0


def load_init(run_dir: Path, cfg, cfg_a) -> tuple[Any, Any, str]:
    """The meta-parameters of one trained algorithm.

    Returns:
      ``(meta_params, meta_target, note)``: from its exported policy (``note`` empty), else (an
      unfinished run) the best parameters of its newest readable checkpoint (the latest
      parameters if it was never validated), with a note saying so. A run of several
      meta-training seeds (``run.meta_seeds``) is read from its newest checkpoint (the policy
      holds one seed), every leaf with the seed axis in front.

    Raises:
      CheckpointError: neither an export nor a checkpoint, or one that does not match ``cfg_a``.
    """
    algo = cfg_a.algorithm
    seeds = cfg.run.meta_seeds
    if seeds == 1 and layout.policy_dir(run_dir, algo).exists():
        pol = load_policy(run_dir, algo)
        return pol.meta_params, pol.meta_target, ""
    ck = Checkpointer(layout.checkpoint_dir(run_dir, algo), keep=cfg.run.keep)
    if ck.latest_step() is None and not ck.broken_steps():
        raise CheckpointError(f"{algo} has neither an exported policy nor a checkpoint in {str(run_dir)!r}")
    broken: list = []
    r = restore_meta_checkpoint(ck, cfg_a, cfg.validation, broken=broken, meta_seeds=seeds)
    es, state = r.tree["early_stop"], r.tree["state"]
    validated = np.asarray(es.best_step) >= 0  # per seed: the best validated, else the latest parameters
    params = tree_where(validated, es.best_params, state.params)
    target = tree_where(validated, es.best_target, state.target_params)
    skipped = [s for s, _ in broken if s > r.step]
    also = f"; newer step(s) {', '.join(map(str, skipped))} cannot be read" if skipped else ""
    finished = bool((r.info.get("extra") or {}).get("finished")) and not skipped
    if seeds > 1 and finished and layout.policy_dir(run_dir, algo).exists():
        return params, target, ""  # the finished run's seeds (its policy/ holds the validation-best one)
    return params, target, (f"note: no exported policy for {algo} (unfinished run?); evaluating the best "
                            f"parameters of its latest checkpoint (meta-step {r.step}){also}")
